"""Multi-process training through torchrun: launch it, read rank 0's events, clean up.

DDP needs one process per device. PyTorch's own launcher (``python -m
torch.distributed.run``, i.e. torchrun) starts them, sets RANK / WORLD_SIZE /
MASTER_ADDR, and stops the survivors when one rank dies. Each rank runs
``python -m profiler.ddp_worker``; rank 0 gathers every rank's figures and
writes the event stream as JSONL on its stdout, which this module parses with
``read_events`` and yields — so the app, ``--json`` and recorded runs see the
same events as a single-process run.

Orphans are the classic failure of launchers: torchrun starts every worker in
a session of its own (``start_new_session=True``), so killing torchrun's
process group does not reach them. ``ProcessTree`` therefore remembers every
descendant while they are still linked to torchrun and kills them all by
identity; the worker also asks the kernel for SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``), so even a killed parent leaves nothing behind.

The failure text and command line are pure and tested without launching
anything; the summary rank 0 builds lives in ``profiler.ddp_summary``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Iterable, Iterator, Sequence

import psutil

from estimator.errors import ConfigError
from profiler.event_pump import EventPump
from profiler.events import Event, LogMessage, RunFailed, RunFinished, read_events
from profiler.run_config import RunConfig, config_to_json

WORKER_MODULE = "profiler.ddp_worker"
RUN_MARKER_PREFIX = "mfutop-ddp-"  # in every launched command line: how leftovers are found
FAULT_ENV = "MFUTOP_DDP_FAULT"  # "RANK:STEP": rank RANK SIGKILLs itself after its STEP-th step (tests)
STRATEGIES = ("ddp", "fsdp")
_RENDEZVOUS_FLAGS = ("--rdzv-endpoint", "--rdzv_endpoint", "--master-addr", "--master_addr")
_STDERR_KEEP = 400  # lines of torchrun/worker stderr kept for the failure message


# ----------------------------------------------------------------- failure text

_ROOT_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)(?:.*?traceback\s*:\s*([^\n]*))?",
                         re.DOTALL)


def _abort_reason(lines: Sequence[str]) -> str:
    """Why a rank aborted, when it said so: a C++ exception (gloo/NCCL ``what(): ...``) or a fatal Python error."""
    for line in reversed(lines):
        if "what():" in line:
            return f" ({line.split('what():', 1)[1].strip()[:200]})"
        if "Fatal Python error" in line:
            return f" ({line.strip()[:200]})"
    return ""


def describe_failure(stderr_lines: Iterable[str], returncode: int | None,
                     rank_errors: Sequence[RunFailed] = ()) -> str:
    """One line saying which rank failed first and how.

    torchrun's "Root Cause (first observed failure)" names the rank; a rank
    killed by a signal wrote nothing, so the signal is the message. A rank
    that raised wrote its own ``RunFailed`` ("rank N: ...") to stderr; the
    other ranks' errors ("connection reset by peer") are consequences and
    are used only when nothing better is known.
    """
    lines = list(stderr_lines)
    match = _ROOT_CAUSE.search("\n".join(lines))
    if match:
        rank, code = int(match.group(1)), int(match.group(2))
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (the kernel's OOM killer or a kill -9)" if -code == signal.SIGKILL else _abort_reason(lines)
            return f"rank {rank} died: killed by {name}{hint}; torchrun stopped the other ranks"
        own = [e.message for e in rank_errors if e.message.startswith(f"rank {rank}:")]
        if own:
            return own[0]
        return f"rank {rank} failed with exit code {code}; torchrun stopped the other ranks"
    if rank_errors:
        return rank_errors[0].message
    text = [ln.strip() for ln in lines if ln.strip()]
    errors = [ln for ln in text if "Error" in ln or "error:" in ln]
    tail = (errors or text or ["no output"])[-1]
    return f"distributed run failed (torchrun exit code {returncode}): {tail}"


# ----------------------------------------------------------------- processes

class ProcessTree:
    """torchrun and every process it started, remembered by identity so all can be killed."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.known: dict[int, psutil.Process] = {pid: self.root}

    def refresh(self) -> None:
        try:
            for child in self.root.children(recursive=True):
                self.known.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    def alive(self) -> list[psutil.Process]:
        out = []
        for proc in self.known.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(proc)
            except psutil.NoSuchProcess:
                pass
        return out

    def kill(self, grace_s: float = 3.0) -> None:
        """SIGTERM torchrun first (it forwards to its workers), then every survivor, then SIGKILL."""
        self.refresh()
        for proc in [self.root] + [p for p in self.known.values() if p is not self.root]:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _, survivors = psutil.wait_procs(self.alive(), timeout=grace_s)
        for proc in survivors:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(survivors, timeout=grace_s)


def leftover_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose command line carries ``marker`` (a run id): should be none after a run."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE and proc.pid != os.getpid():
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


# ----------------------------------------------------------------- launching

def has_rendezvous(torchrun_args: Sequence[str]) -> bool:
    """True when the caller names a rendezvous point (multi-node); else ``--standalone`` picks a free local port."""
    return any(str(a).split("=")[0] in _RENDEZVOUS_FLAGS for a in torchrun_args)


def torchrun_args(nnodes: str | int | None = None, node_rank: int | None = None, rdzv_endpoint: str | None = None,
                  rdzv_backend: str | None = None, rdzv_id: str | None = None) -> list[str]:
    """torchrun's multi-node options from CLI values; ConfigError for combinations torchrun would reject."""
    if nnodes is None and any(v is not None for v in (node_rank, rdzv_endpoint, rdzv_backend, rdzv_id)):
        raise ConfigError("--node-rank / --rdzv-* need --nnodes (the number of nodes, e.g. 2 or 1:4)")
    if nnodes is None:
        return []
    if not re.fullmatch(r"[1-9][0-9]{0,5}(:[1-9][0-9]{0,5})?", str(nnodes)):
        raise ConfigError(f"--nnodes must be N or MIN:MAX, got {nnodes!r}")
    low, _, high = str(nnodes).partition(":")
    if high and int(low) > int(high):
        raise ConfigError(f"--nnodes {nnodes}: the minimum {low} is over the maximum {high}")
    if str(nnodes) != "1" and rdzv_endpoint is None:
        raise ConfigError("more than one node needs --rdzv-endpoint HOST:PORT (the same on every node)")
    out = ["--nnodes", str(nnodes)]
    for flag, value in (("--node-rank", node_rank), ("--rdzv-endpoint", rdzv_endpoint),
                        ("--rdzv-backend", rdzv_backend or ("c10d" if rdzv_endpoint else None)),
                        ("--rdzv-id", rdzv_id)):
        if value is not None:
            out += [flag, str(value)]
    return out


def torchrun_command(nproc: int, torchrun_args: Sequence[str], worker_args: Sequence[str],
                     python: str = sys.executable) -> list[str]:
    """``python -m torch.distributed.run --nproc-per-node N [--standalone] ... -m profiler.ddp_worker ...``.

    ``--standalone`` (a private rendezvous on a free local port) unless the
    caller names a rendezvous endpoint (multi-node); their options go through untouched.
    """
    cmd = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if not has_rendezvous(torchrun_args):
        cmd.append("--standalone")
    cmd += [str(a) for a in torchrun_args]
    cmd += ["-m", WORKER_MODULE, *worker_args]
    return cmd


def _validate(config: RunConfig, nproc: int, strategy: str) -> None:
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"nproc must be a positive integer, got {nproc!r}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if config.device == "cuda" or config.device == "auto":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if config.device == "cuda" and count == 0:
            raise ConfigError("--device cuda but no CUDA device is visible")
        if count and nproc > count:
            raise ConfigError(f"--nproc {nproc} needs {nproc} GPUs on this node; {count} visible "
                              "(use --device cpu for gloo ranks)")


def _cpu_threads_per_rank(nproc: int) -> int:
    return max(1, (os.cpu_count() or 1) // nproc)


_ORPHAN_GRACE_S = 5.0


def run_distributed(config: RunConfig, nproc: int, torchrun_args: Sequence[str] = (),
                    cancel: threading.Event | None = None, *, strategy: str = "ddp",
                    baseline_tokens_per_s: float | None = None, fault: str | None = None,
                    timeout_s: float | None = None, run_id: str | None = None) -> Iterator[Event]:
    """Run ``config`` on ``nproc`` ranks per node under torchrun; yield rank 0's events.

    Ends with RunFinished (summary has ``distributed``), RunFinished(cancelled=True)
    when ``cancel`` is set, or RunFailed with one line naming the rank that died.
    Without ``baseline_tokens_per_s`` rank 0 first measures one process alone
    (the other ranks wait) so scaling efficiency has a denominator.
    Every process started is gone when the generator finishes or is closed.
    """
    _validate(config, nproc, strategy)  # here, not at the first next(): bad input fails at the call
    return _stream(config, nproc, torchrun_args, cancel, strategy, baseline_tokens_per_s, fault, timeout_s,
                   run_id or f"{RUN_MARKER_PREFIX}{uuid.uuid4().hex[:12]}")


def _stream(config: RunConfig, nproc: int, torchrun_args: Sequence[str], cancel: threading.Event | None,
            strategy: str, baseline_tokens_per_s: float | None, fault: str | None, timeout_s: float | None,
            run_id: str) -> Iterator[Event]:
    spec = {"config": config_to_json(config), "strategy": strategy,
            "baseline_tokens_per_s": baseline_tokens_per_s, "threads": _cpu_threads_per_rank(nproc)}
    cmd = torchrun_command(nproc, torchrun_args, ["--run-id", run_id, "--spec", json.dumps(spec)])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if config.device != "cuda":
        env.setdefault("OMP_NUM_THREADS", str(spec["threads"]))
    if fault:
        env[FAULT_ENV] = fault
    else:
        env.pop(FAULT_ENV, None)

    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, bufsize=1, env=env, start_new_session=True)
    tree = ProcessTree(proc.pid)
    pump = EventPump(proc, stderr_keep=_STDERR_KEEP, drain_s=_ORPHAN_GRACE_S)
    rank_errors: list[RunFailed] = []
    finished: RunFinished | None = None
    started = time.monotonic()
    try:
        yield LogMessage("info", f"torchrun: {nproc} rank(s) per node, {strategy.upper()}, run id {run_id}")
        while True:
            if cancel is not None and cancel.is_set():
                tree.kill()
                yield RunFinished(summary={"distributed": {"nproc": nproc, "run_id": run_id}}, cancelled=True)
                return
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                tree.kill()
                yield RunFailed(f"distributed run timed out after {timeout_s:.0f} s; all ranks stopped", "Timeout")
                return
            item = pump.get(timeout=0.2)
            tree.refresh()
            if item is None:
                continue
            kind, payload = item
            if kind == "end":
                break  # torchrun is gone (a leftover still holding the pipes is killed below)
            if kind == "stderr":
                rank_errors.extend(e for e in read_events([payload]) if isinstance(e, RunFailed))
            elif isinstance(payload, RunFinished):
                finished = payload
            elif isinstance(payload, RunFailed):
                rank_errors.append(payload)
            else:
                yield payload
        returncode = proc.wait()
        if finished is not None and returncode != 0:
            # Rank 0's summary arrived whole: a rank that then died in the teardown (gloo can abort a
            # peer whose group closes first) costs nothing measured. Said, not hidden.
            late = describe_failure(pump.stderr_tail, returncode, rank_errors)
            summary = dict(finished.summary)
            summary["warnings"] = [*summary.get("warnings", []), f"after rank 0's summary was complete: {late}"]
            finished = RunFinished(summary=summary, cancelled=finished.cancelled)
        if finished is not None:
            yield finished
        else:
            yield RunFailed(describe_failure(pump.stderr_tail, returncode, rank_errors), "RankFailed")
    finally:
        tree.kill()
        for stream in (proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
