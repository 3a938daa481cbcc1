"""One rank of a distributed run: ``python -m profiler.ddp_worker --run-id ID --spec JSON`` under torchrun.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; this process joins
the group (NCCL on a GPU, gloo on the CPU), runs the profiler's ``TrainingStep``
wrapped in DDP (or sharded with FSDP2 ``fully_shard``) on its own synthetic
shard (seed + rank), and sends its figures to rank 0 with ``gather_object``.
Only rank 0 writes to stdout: the JSONL event stream ``profiler.ddp`` parses.
Any rank that fails writes one ``RunFailed`` line to stderr and exits 1, so
the parent can name the rank and the reason in one line.

Order on rank 0: (1) one process alone — the scaling baseline — while the
other ranks wait at a barrier; (2) every rank together; (3) one memory step
under the CPU tensor tracker; (4) a bare all-reduce of the gradient size, to
put a measured collective beside the predicted one.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import statistics
import sys
import time
from datetime import timedelta
from typing import Any, Callable

import torch
import torch.distributed as dist

from estimator.errors import ConfigError
from estimator.mfu import mfu
from estimator.params import count_params
from estimator.predict import predict
from estimator.setup import TrainSetup
from profiler.ddp import FAULT_ENV
from profiler.run_config import config_from_json
from profiler.ddp_summary import allreduce_block, distributed_summary
from profiler.events import JsonlWriter, LogMessage, PredictionReady, RunFailed, RunFinished, StepSample
from profiler.memory_meter import LiveStorageTracker, MemoryMeter, process_rss, training_state_tensors
from profiler.run_config import RunConfig
from profiler.search import cap_cuda_memory
from profiler.resolve import ResolvedRun, resolve_on, resolve_run
from profiler.step import StepOptions, TrainingStep, effective_precision
from profiler.compare import steady_state
from profiler.step_timer import StepTimer

DEFAULT_CPU_BATCH = 4  # --batch-size auto under DDP on a CPU (a search per rank is not run there)
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this rank when torchrun (its parent) dies: no orphan survives a killed launcher."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def parse_fault(text: str | None) -> tuple[int, int] | None:
    """``"RANK:STEP"`` -> (rank, step); the seam tests use to kill a rank mid-run."""
    if not text:
        return None
    rank, _, step = text.partition(":")
    return int(rank), int(step or 1)


class Rank:
    """This process's place in the group and its device."""

    def __init__(self, config: RunConfig, threads: int):
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        use_cuda = config.device != "cpu" and torch.cuda.is_available()
        if config.device == "cuda" and not use_cuda:
            raise ConfigError("--device cuda but this rank sees no CUDA device")
        if use_cuda:
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            torch.set_num_threads(threads)
            self.device = torch.device("cpu")
        self.backend = "nccl" if use_cuda else "gloo"
        self.threads = torch.get_num_threads()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def make_wrap(strategy: str, rank: Rank) -> Callable[[torch.nn.Module], torch.nn.Module]:
    """DDP (grads all-reduced in buckets during backward) or FSDP2 (each block sharded, ZeRO-3 style)."""
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        def wrap(model: torch.nn.Module) -> torch.nn.Module:
            ids = [rank.local_rank] if rank.device.type == "cuda" else None
            return DDP(model, device_ids=ids)
        return wrap

    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    def shard(model: torch.nn.Module) -> torch.nn.Module:
        for p in model.parameters():  # ranks were seeded differently (their data): start from rank 0's weights
            dist.broadcast(p.data, src=0)
        mesh = init_device_mesh(rank.device.type, (rank.world,))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    return shard


def timed_steps(trainer: TrainingStep, batch: int, seq_len: int, warmup: int, steps: int,
                on_step: Callable[[int, float, float, bool], None] | None = None,
                fault_after: int | None = None) -> list[float]:
    """Warm-up then timed full steps; returns the timed step times (seconds)."""
    timer = StepTimer(trainer.device)
    data = trainer.batches(batch, seq_len)
    times = []
    for index in range(warmup + steps):
        x, y = next(data)
        timer.start()
        loss = trainer.step(x, y)
        seconds = timer.stop()
        if index >= warmup:
            times.append(seconds)
        if on_step is not None:
            on_step(index, seconds, float(loss), index < warmup)
        if fault_after is not None and index + 1 >= fault_after:
            os.kill(os.getpid(), signal.SIGKILL)
    return times


def memory_step(trainer: TrainingStep, batch: int, seq_len: int) -> tuple[int, int]:
    """(peak tensor bytes, RSS) of one more step: torch.cuda stats, or the CPU tracker around it."""
    x, y = trainer.make_batch(batch, seq_len)
    if trainer.device.type == "cuda":
        meter = MemoryMeter(trainer.device)
        meter.reset_peak()
        trainer.step(x, y)
        torch.cuda.synchronize(trainer.device)
        return meter.sample().peak, process_rss()
    tracker = LiveStorageTracker("cpu")
    tracker.track(training_state_tensors(trainer.raw_model, trainer.optimizer))
    with tracker:
        trainer.step(x, y)
    return tracker.peak_bytes, process_rss()


def copy_bandwidth(nbytes: int = 64 << 20, repeats: int = 5) -> float:
    """Best-of memcpy bytes/s on this rank's threads (the gloo bandwidth assumption on a CPU)."""
    src = torch.empty(nbytes, dtype=torch.uint8)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return nbytes / best


def measured_allreduce(nbytes: int, device: torch.device, repeats: int = 5) -> float:
    """Median seconds of one all-reduce of ``nbytes`` (fp32) on every rank: the collective DDP runs."""
    flat = torch.ones(max(1, nbytes // 4), dtype=torch.float32, device=device)
    dist.all_reduce(flat)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(flat)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Worker:
    def __init__(self, spec: dict[str, Any], run_id: str):
        self.config = config_from_json(spec["config"])
        self.strategy = spec.get("strategy", "ddp")
        self.given_baseline = spec.get("baseline_tokens_per_s")
        self.run_id = run_id
        self.rank = Rank(self.config, int(spec.get("threads") or 1))
        self.out = JsonlWriter(sys.stdout) if self.rank.is_main else None
        self.fault = parse_fault(os.environ.get(FAULT_ENV))
        self.warnings: list[str] = []

    def emit(self, event) -> None:
        if self.out is not None:
            self.out.write(event)

    def log(self, text: str, level: str = "info") -> None:
        if level == "warning":
            self.warnings.append(text)
        self.emit(LogMessage(level, text))

    # ------------------------------------------------------------------ phases
    def run(self) -> None:
        r, cfg = self.rank, self.config
        dist.init_process_group(r.backend, timeout=timedelta(minutes=10),
                                device_id=r.device if r.device.type == "cuda" else None)
        batch = cfg.batch_size or (DEFAULT_CPU_BATCH if r.device.type == "cpu" else 8)
        warmup = cfg.warmup_steps
        # every rank resolves what runs the same way (rank 0 also measures the peak and reports it)
        run_cfg = cfg.with_(device=r.device.type)
        if r.is_main:
            detected, resolved = resolve_run(run_cfg)
            device_event = resolved.device_event(detected.event)
            self.emit(device_event)
            for text in filter(None, [resolved.precision_note, *detected.warnings]):
                self.log(text, "warning")
            if cfg.batch_size is None:
                self.log(f"batch-size auto under {self.strategy.upper()}: {batch} sequences per rank "
                         "(the search runs single-process: mfutop search)", "warning")
        else:
            detected = None
            resolved = resolve_on(run_cfg, r.device.type, str(r.device),
                                  *effective_precision(cfg.precision, r.device.type))
        options = resolved.step_options()
        model, seq_len, precision = resolved.model, resolved.seq_len, resolved.precision
        if r.device.type == "cuda":
            cap_cuda_memory(r.device, cfg.memory_limit_bytes)  # --memory-limit holds per rank
        baseline = self._baseline(options, model, batch, seq_len, warmup)

        trainer = TrainingStep(model, r.device, options.with_(seed=cfg.seed + r.rank),
                               wrap=make_wrap(self.strategy, r))
        params = count_params(resolved.padded).total
        grad_bytes = params * (2 if precision == "bf16" else 4)  # what DDP all-reduces (fp32 grads unless pure bf16)
        tokens_per_step = batch * seq_len
        peak = resolved.peak_flops if r.is_main else None
        prediction, flops_step, losses = None, None, []
        if r.is_main:
            prediction = self._predict(resolved, detected, batch)
            self.emit(PredictionReady(prediction))
            flops_step = prediction["flops"]["total"]

        def on_step(index: int, seconds: float, loss: float, warm: bool) -> None:
            if not r.is_main:
                return
            losses.append(loss)
            mem = MemoryMeter(r.device).sample()
            self.emit(StepSample(step=index, batch_size=batch, step_time_s=seconds,
                                 tokens_per_s=tokens_per_step * r.world / seconds, loss=loss,
                                 memory_allocated_bytes=mem.allocated, memory_reserved_bytes=mem.reserved,
                                 memory_peak_bytes=mem.peak, nvml_used_bytes=None,
                                 mfu=mfu(flops_step, seconds, peak), warmup=warm))

        fault_after = self.fault[1] if self.fault and self.fault[0] == r.rank else None
        times = timed_steps(trainer, batch, seq_len, warmup, cfg.steps, on_step, fault_after)
        peak_bytes, rss = memory_step(trainer, batch, seq_len)
        steady = steady_state(times)
        mine = {
            "rank": r.rank, "local_rank": r.local_rank, "host": socket.gethostname(), "device": str(r.device),
            "threads": r.threads, "steps": len(times), "tokens": tokens_per_step * len(times),
            "seconds": steady.median * len(times), "wall_seconds": sum(times),
            "step_time_s": steady.median, "step_time_relative_spread": steady.relative_spread,
            "tokens_per_s": tokens_per_step / steady.median, "peak_memory_bytes": peak_bytes, "rss_bytes": rss,
        }
        gathered: list | None = [None] * r.world if r.is_main else None
        dist.gather_object(mine, gathered, dst=0)
        copy_bw = copy_bandwidth() if r.device.type == "cpu" else None
        allreduce_s = measured_allreduce(grad_bytes, r.device)
        trainer.close()
        if not r.is_main:
            return
        step = prediction.get("step") or {}
        agg_step = max(x["step_time_s"] for x in gathered)
        allreduce = allreduce_block(
            device=r.device.type, strategy=self.strategy, nranks=r.world, grad_bytes=grad_bytes,
            link_bandwidth=detected.spec.intra_node_bandwidth, link_kind=detected.spec.link_kind,
            interconnect_efficiency=TrainSetup().efficiency.interconnect, copy_bandwidth=copy_bw,
            measured_s=allreduce_s, step_time_s=agg_step,
            single_step_time_s=(baseline or {}).get("step_time_s"),
            estimator_dp_comm_s=(step.get("breakdown") or {}).get("dp_comm_s"))
        rank0 = {
            "params": params, "batch_size": batch, "seq_len": seq_len, "steps": len(times), "warmup_steps": warmup,
            "step_time_relative_spread": steady.relative_spread, "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None, "peak_flops": peak,
            "peak_dtype": resolved.peak_dtype, "memory_method": _memory_method(r.device.type),
        }
        config = {**cfg.to_dict(), **resolved.config_fields(), "torch_device": f"{r.device.type} x {r.world}",
                  "nproc": r.world, "strategy": self.strategy}
        summary = distributed_summary(config=config, device=device_event.to_dict(),
                                      prediction=prediction, per_rank=gathered, baseline=baseline, rank0=rank0,
                                      allreduce=allreduce, strategy=self.strategy, backend=r.backend,
                                      run_id=self.run_id, threads_per_rank=r.threads if r.device.type == "cpu" else None,
                                      warnings=self.warnings)
        self.emit(RunFinished(summary=summary))

    def _baseline(self, options: StepOptions, model, batch: int, seq_len: int, warmup: int) -> dict | None:
        """Rank 0 alone, no wrapper, same threads per process: the denominator of scaling efficiency."""
        r = self.rank
        if self.given_baseline:
            dist.barrier()
            return {"tokens_per_s": float(self.given_baseline), "step_time_s": batch * seq_len / self.given_baseline,
                    "source": "given (--baseline-tokens-per-s)"}
        result = None
        if r.is_main:
            self.log(f"baseline: one process alone ({r.threads} thread(s)), the other ranks wait")
            single = TrainingStep(model, r.device, options)
            times = timed_steps(single, batch, seq_len, warmup, self.config.steps)
            single.close()
            median = steady_state(times).median
            result = {"tokens_per_s": batch * seq_len / median, "step_time_s": median,
                      "source": f"measured: rank 0 alone, {r.threads} thread(s), no {self.strategy.upper()}"}
            self.log(f"baseline: {result['tokens_per_s']:,.0f} tok/s, step {median * 1e3:.2f} ms")
        dist.barrier()
        return result

    def _predict(self, resolved: ResolvedRun, detected, batch: int) -> dict:
        setup = resolved.setup(batch, dp=self.rank.world, zero=3 if self.strategy == "fsdp" else 0)
        return predict(resolved.padded, detected.spec, setup, memory_limit_bytes=self.config.memory_limit_bytes,
                       check_fit=False)


def _memory_method(device_type: str) -> str:
    if device_type == "cuda":
        return "torch.cuda.max_memory_allocated of one extra step per rank"
    return ("live tensor bytes of one extra tracked step per rank (TorchDispatchMode storage tracker; "
            "not kernel scratch, not DDP's C++ gradient buckets); reserved = max process RSS")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    die_with_parent()
    parser = argparse.ArgumentParser(prog="profiler.ddp_worker")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--spec", required=True, help="JSON: config, strategy, baseline_tokens_per_s, threads")
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    try:
        Worker(json.loads(args.spec), args.run_id).run()
        if dist.is_initialized():
            # Leave together: a rank that tears its process group down while rank 0 is still
            # writing the summary can make gloo abort the other one (seen as SIGABRT).
            dist.barrier()
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line for the parent
        failed = RunFailed(f"rank {rank}: {_one_line(exc)}", type(exc).__name__)
        sys.stderr.write(json.dumps(failed.to_dict()) + "\n")
        sys.stderr.flush()
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
