"""The training-speed ladder: each optimisation measured on top of the previous ones.

The seed (LLMs-from-scratch, chapter 5, "training speed") goes from 12,525 to
142,156 tokens/s on one A100 by stacking switches: TF32, fused AdamW, pinned
memory, bf16, flash attention, torch.compile, a vocabulary padded to a
multiple of 64, a larger batch — and to 419,259 on four with DDP. Here every
rung is one ``run_profile`` of the profiler's own GPT with that rung's switch
added, so a rung's figures are exactly what ``mfutop profile`` says for the
same switches (median steady-state tokens/s, peak memory, MFU against the
dense peak of the rung's matmul dtype, and the estimator's prediction).

A rung that does not apply on the device is reported "n/a" with the reason
and its switch is not carried forward; nothing is faked. Applicability comes
from facts probed on the device (``device_facts``), not from its name.

Events: ``LogMessage`` for progress, one ``LadderRung`` per rung, and a final
``RunFinished`` whose summary is the ``mfutop ladder --json`` object
``{rungs, device, model, ...}``. torch is imported lazily: the app and replay
can read ladder events without it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig
from profiler.events import DeviceDetected, Event, LadderRung, LogMessage, RunFailed, RunFinished
from profiler.run_config import RunConfig

VOCAB_MULTIPLE = 64
DEFAULT_BATCH = {"cpu": 4, "cuda": 8}  # the ladder's fixed batch before the max-batch rung
SEED_SOURCE = ("A100 figures of the seed (LLMs-from-scratch ch. 5 training-speed README); its flash-attention "
               "figure also includes the switch to PyTorch's own LayerNorm/GELU (55,256 tok/s on its own)")


@dataclass(frozen=True)
class Rung:
    name: str
    title: str
    changes: dict[str, Any]  # RunConfig fields this rung sets on top of the previous rungs
    seed_a100_tokens_per_s: int | None = None


RUNGS: tuple[Rung, ...] = (
    Rung("baseline", "fp32, explicit attention, for-loop AdamW", {}, 12525),
    Rung("tf32", "TF32 matmuls", {"precision": "tf32"}, 27648),
    Rung("fused-adamw", "fused AdamW", {"fused_adamw": True}, 28399),
    Rung("pinned-memory", "pinned host memory", {"pin_memory": True}, 28402),
    Rung("bf16", "bf16 autocast", {"precision": "bf16-mixed"}, 45486),
    Rung("flash-attention", "flash attention (SDPA)", {"flash_attention": True}, 91901),
    Rung("compile", "torch.compile", {"compile": True}, 112046),
    Rung("vocab-pad", f"vocabulary padded to x{VOCAB_MULTIPLE}", {"vocab_pad_multiple": VOCAB_MULTIPLE}, 127345),
    Rung("max-batch", "searched max batch", {"batch_size": None, "search": True}, 142156),
)
RUNG_NAMES = tuple(r.name for r in RUNGS)
DDP_SEED_A100X4 = 419259


def parse_rungs(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """'baseline,bf16' -> names, ConfigError naming the unknown ones and the known set."""
    if text is None:
        return ()
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    unknown = [t for t in items if t not in RUNG_NAMES]
    if unknown:
        raise ConfigError(f"unknown rung(s) {', '.join(unknown)}; choose from: {', '.join(RUNG_NAMES)}")
    return tuple(items)


# ----------------------------------------------------------------- what applies where

@dataclass(frozen=True)
class DeviceFacts:
    """What the device can really do, probed once; ``applicability`` reads only this."""

    kind: str  # "cuda" | "cpu"
    name: str
    tf32: tuple[bool, str]
    fused_adamw: tuple[bool, str]
    pinned_memory: tuple[bool, str]
    bf16: tuple[bool, str]
    sdpa: tuple[bool, str]
    compile: tuple[bool, str]


def _try(probe: Callable[[], str]) -> tuple[bool, str]:
    try:
        return True, probe()
    except Exception as exc:  # noqa: BLE001 - a failed probe is the fact we report
        text = str(exc).strip().splitlines()
        return False, f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def device_facts(device: str = "auto") -> DeviceFacts:
    """Probe each rung's prerequisite on ``device`` ("auto": CUDA if available)."""
    import shutil

    import torch

    cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ConfigError("--device cuda requested but CUDA is not available")
    dev = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")

    def fused() -> str:
        p = torch.nn.Parameter(torch.ones(4, device=dev))
        opt = torch.optim.AdamW([p], fused=True)
        p.grad = torch.ones_like(p)
        opt.step()
        return f"torch.optim.AdamW(fused=True) runs on {dev.type} (torch {torch.__version__})"

    def sdpa() -> str:
        q = torch.randn(1, 2, 16, 8, device=dev)
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        try:
            from torch.nn.attention import SDPBackend

            backend = SDPBackend(torch._fused_sdp_choice(q, q, q, is_causal=True)).name.lower()
            return f"scaled_dot_product_attention picks the {backend} kernel on {dev.type}"
        except Exception:  # noqa: BLE001 - the backend name is a detail, SDPA itself ran
            return f"scaled_dot_product_attention runs on {dev.type}"

    if cuda:
        major, minor = torch.cuda.get_device_capability(dev)
        name = torch.cuda.get_device_name(dev)
        tf32 = (major >= 8, f"TF32 tensor cores need compute capability 8.0+ (Ampere); {name} is {major}.{minor}")
        pinned = (True, "page-locked host batches, copied with non_blocking=True")
        bf16_ok = torch.cuda.is_bf16_supported()
        bf16 = (bf16_ok, "bf16 autocast" if bf16_ok else f"{name} has no bf16 support")
        try:
            import triton  # noqa: F401

            comp = (True, "inductor with Triton kernels")
        except ImportError:
            comp = (False, "torch.compile on CUDA needs Triton, which is not installed")
    else:
        from profiler.step import cpu_autocast_bf16_works

        name = "CPU"
        amx_fp16 = bool(getattr(torch.cpu, "_is_amx_fp16_supported", lambda: False)())
        tf32 = (False, "TF32 is an NVIDIA tensor-core format; the step enables it for CUDA matmuls only "
                       f"(oneDNN emulates it on CPUs with AMX-FP16 alone; this CPU: amx_fp16={'yes' if amx_fp16 else 'no'})")
        pinned = (False, "pinned (page-locked) memory only speeds host-to-GPU copies; on the CPU the batch "
                         "never leaves host memory (torch: 'Cannot access accelerator device')")
        ok, why = cpu_autocast_bf16_works()
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
        bf16 = (ok, ("autocast(cpu, bfloat16); " + ("native bf16 (avx512_bf16/AMX)" if native else
                                                     "no native bf16 instructions: emulated, may be slower"))
                if ok else f"autocast(cpu, bfloat16) fails here: {why}")
        compiler = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
        comp = ((True, f"inductor C++ kernels via {compiler}; compiling takes tens of seconds on a small CPU")
                if compiler else (False, "torch.compile on the CPU needs a C++ compiler (g++/clang++), none on PATH"))
    fused_ok = _try(fused)
    sdpa_ok = _try(sdpa)
    return DeviceFacts(kind="cuda" if cuda else "cpu", name=name, tf32=tf32, fused_adamw=fused_ok,
                       pinned_memory=pinned, bf16=bf16, sdpa=sdpa_ok, compile=comp)


def applicability(rung: Rung, facts: DeviceFacts, model: ModelConfig, *, skip: Sequence[str] = (),
                  selected: Sequence[str] = ()) -> tuple[bool, str, str]:
    """(applies, status if not, reason). Status: "n/a" (the device/model cannot), "skipped" (asked)."""
    if selected and rung.name not in selected:
        return False, "skipped", "not selected (--rungs)"
    if rung.name in skip:
        return False, "skipped", f"skipped (--skip {rung.name})"
    on = f"n/a on {facts.kind}"
    fact = {"tf32": facts.tf32, "fused-adamw": facts.fused_adamw, "pinned-memory": facts.pinned_memory,
            "bf16": facts.bf16, "flash-attention": facts.sdpa, "compile": facts.compile}.get(rung.name)
    if fact is not None:
        ok, why = fact
        return (True, "", why) if ok else (False, "n/a", f"{on}: {why}")
    if rung.name == "vocab-pad" and model.vocab_size % VOCAB_MULTIPLE == 0:
        return False, "n/a", f"n/a for {model.name}: vocabulary {model.vocab_size} is already a multiple of {VOCAB_MULTIPLE}"
    if rung.name == "vocab-pad":
        padded = model.with_vocab_padded(VOCAB_MULTIPLE).vocab_size
        return True, "", f"vocabulary {model.vocab_size} -> {padded}"
    return True, "", ""


# ----------------------------------------------------------------- configs

def baseline_config(config: RunConfig, device_kind: str) -> RunConfig:
    """The bottom rung, as the seed's: fp32, explicit attention, the single-tensor for-loop AdamW,
    no pinning, no compile, no padding."""
    return config.with_(precision="fp32", flash_attention=False, fused_adamw=False, adamw_foreach=False,
                        pin_memory=False, compile=False, vocab_pad_multiple=1, search=False,
                        batch_size=config.batch_size or DEFAULT_BATCH[device_kind])


BASELINE_OPTIMIZER = "for-loop AdamW (foreach=False)"


# ----------------------------------------------------------------- results

def rung_row(rung: Rung, cfg: RunConfig | None, *, applies: bool, status: str, reason: str,
             summary: dict | None = None) -> dict[str, Any]:
    """The JSON row of one rung; figures None unless measured."""
    measured = (summary or {}).get("measured") or {}
    step = ((summary or {}).get("prediction") or {}).get("step") or {}
    return {
        "name": rung.name, "title": rung.title, "applies": applies, "status": status, "reason": reason,
        "tokens_per_s": measured.get("tokens_per_s"),
        "step_time_s": measured.get("step_time_s"),
        "peak_memory_bytes": measured.get("peak_memory_bytes"),
        "mfu": measured.get("mfu"),
        "peak_dtype": measured.get("peak_dtype"),
        "speedup_prev": None, "speedup_base": None,
        "predicted_tokens_per_s": step.get("tokens_per_s"),
        "batch_size": measured.get("batch_size") if summary else (cfg.batch_size if cfg else None),
        "precision": ((summary or {}).get("config") or {}).get("precision_effective")
        or (cfg.precision if cfg else None),
        "steady": measured.get("steady"),
        "seed_a100_tokens_per_s": rung.seed_a100_tokens_per_s,
        "switches": _switches(cfg) if cfg else None,
    }


def _switches(cfg: RunConfig) -> dict[str, Any]:
    keys = ("precision", "flash_attention", "fused_adamw", "pin_memory", "compile", "vocab_pad_multiple",
            "batch_size", "adamw_foreach")
    return {k: getattr(cfg, k) for k in keys}


def add_speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """speedup_prev: over the last measured rung before it; speedup_base: over the baseline.
    Rungs cut short (timeout, cancelled) keep their partial tokens/s but get no speed-up."""
    base = next((r["tokens_per_s"] for r in rows if r["name"] == "baseline" and r["status"] == "measured"), None)
    prev = None
    for row in rows:
        tps = row["tokens_per_s"]
        if not tps or row["status"] != "measured":
            continue
        row["speedup_prev"] = tps / prev if prev else None
        row["speedup_base"] = tps / base if base else None
        prev = tps
    return rows


# ----------------------------------------------------------------- running

class _Deadline(threading.Event):
    """Set by the caller's cancel or when the rung's time is up (checked between steps and probes)."""

    def __init__(self, outer: threading.Event | None, timeout_s: float | None):
        super().__init__()
        self.outer = outer
        self.deadline = time.monotonic() + timeout_s if timeout_s else None

    @property
    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def is_set(self) -> bool:
        return super().is_set() or bool(self.outer and self.outer.is_set()) or self.timed_out


Measure = Callable[[RunConfig, threading.Event], Iterator[Event]]


def _default_measure(config: RunConfig, cancel: threading.Event) -> Iterator[Event]:
    from profiler.run import run_profile

    return run_profile(config, cancel)


def run_ladder(config: RunConfig, cancel: threading.Event | None = None, *, rungs: Sequence[str] = (),
               skip: Sequence[str] = (), rung_timeout_s: float | None = None, nproc: int | None = None,
               torchrun_args: Sequence[str] = (), measure: Measure | None = None,
               facts: DeviceFacts | None = None) -> Iterator[Event]:
    """Measure the rungs in order; each applicable one keeps the switches of those before it.

    ``rungs`` selects (the rest are reported skipped), ``skip`` leaves some out,
    ``rung_timeout_s`` stops a rung between steps once exceeded (status
    "timeout"), ``nproc`` adds a final DDP rung on that many ranks.
    ``measure`` replaces ``run_profile`` and ``facts`` the device probe (tests).
    """
    from profiler.resolve import default_model

    parse_rungs(list(rungs))
    parse_rungs(list(skip))
    if rung_timeout_s is not None and rung_timeout_s <= 0:
        raise ConfigError(f"rung timeout must be positive, got {rung_timeout_s!r}")
    facts = facts or device_facts(config.device)
    model = config.model or default_model(facts.kind)
    config = config.with_(model=model, device=facts.kind)
    measure = measure or _default_measure
    current = baseline_config(config, facts.kind)
    total = len(RUNGS) + (1 if nproc else 0)
    rows: list[dict[str, Any]] = []
    device_event: DeviceDetected | None = None
    started = time.monotonic()
    yield LogMessage("info", f"ladder: {model.name} on {facts.name} ({facts.kind}), batch {current.batch_size}, "
                             f"seq-len {config.seq_len or model.context_length}; baseline optimizer: "
                             f"{BASELINE_OPTIMIZER}")
    for index, rung in enumerate(RUNGS, 1):
        if cancel is not None and cancel.is_set():
            break
        applies, status, reason = applicability(rung, facts, model, skip=skip, selected=rungs)
        if not applies:
            row = rung_row(rung, None, applies=False, status=status, reason=reason)
            rows.append(row)
            yield LadderRung(index=index, total=total, rung=row)
            continue
        cfg = current.with_(**rung.changes)
        yield LogMessage("info", f"rung {index}/{total} {rung.name}: {rung.title}")
        deadline = _Deadline(cancel, rung_timeout_s)
        summary, failure, cancelled = None, None, False
        for event in measure(cfg, deadline):
            if isinstance(event, DeviceDetected) and device_event is None:
                device_event = event
            elif isinstance(event, LogMessage) and event.level != "info":
                yield LogMessage(event.level, f"[{rung.name}] {event.text}")
            elif isinstance(event, RunFinished):
                summary, cancelled = event.summary, event.cancelled
            elif isinstance(event, RunFailed):
                failure = event
        if failure is not None:
            row = rung_row(rung, cfg, applies=True, status="failed", reason=failure.message)
        elif cancelled and deadline.timed_out and not (cancel and cancel.is_set()):
            row = rung_row(rung, cfg, applies=True, status="timeout",
                           reason=f"stopped after {rung_timeout_s:g} s (--rung-timeout); partial figures",
                           summary=summary)
        elif cancelled:
            row = rung_row(rung, cfg, applies=True, status="cancelled", reason="cancelled", summary=summary)
        else:
            row = rung_row(rung, cfg, applies=True, status="measured", reason=reason, summary=summary)
            current = cfg.with_(batch_size=row["batch_size"], search=False)  # carried forward
        rows.append(row)
        add_speedups(rows)
        yield LadderRung(index=index, total=total, rung=row)
        if row["status"] == "cancelled":
            break
    if nproc and not (cancel is not None and cancel.is_set()):
        row = yield from _ddp_rung(current, nproc, torchrun_args, cancel, total)
        rows.append(row)
        add_speedups(rows)
        yield LadderRung(index=total, total=total, rung=row)
    add_speedups(rows)
    summary = {
        "rungs": rows,
        "device": device_event.to_dict() if device_event else {"device": facts.kind, "name": facts.name},
        "model": model.to_dict(),
        "seq_len": config.seq_len or model.context_length,
        "seed_reference": SEED_SOURCE,
        "seconds": time.monotonic() - started,
    }
    yield RunFinished(summary=summary, cancelled=bool(cancel is not None and cancel.is_set()))


def _ddp_rung(config: RunConfig, nproc: int, torchrun_args: Sequence[str], cancel: threading.Event | None,
              index: int) -> Iterator[Event]:
    """The seed's last step: the final single-process setup, data-parallel on ``nproc`` ranks."""
    from profiler.ddp import run_distributed

    rung = Rung(f"ddp-x{nproc}", f"DDP on {nproc} ranks", {}, DDP_SEED_A100X4 if nproc == 4 else None)
    yield LogMessage("info", f"rung {index}/{index} {rung.name}: {rung.title}")
    summary, failure = None, None
    for event in run_distributed(config, nproc, torchrun_args, cancel):
        if isinstance(event, RunFinished):
            summary = None if event.cancelled else event.summary
        elif isinstance(event, RunFailed):
            failure = event
        elif isinstance(event, LogMessage) and event.level != "info":
            yield LogMessage(event.level, f"[{rung.name}] {event.text}")
    if failure is not None or summary is None:
        return rung_row(rung, config, applies=True, status="failed" if failure else "cancelled",
                        reason=failure.message if failure else "cancelled")
    row = rung_row(rung, config, applies=True, status="measured", summary=summary,
                   reason=f"aggregate of {nproc} ranks; scaling efficiency "
                          f"{(summary['distributed'].get('scaling_efficiency') or 0):.0%} vs one process")
    row["distributed"] = {k: summary["distributed"].get(k) for k in ("nproc", "backend", "scaling_efficiency",
                                                                      "per_rank", "allreduce")}
    return row
