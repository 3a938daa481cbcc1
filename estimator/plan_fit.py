"""`cheapest_fitting_change`: the smallest edit that makes a setup fit, for `estimate`'s "does not fit"
verdict and the app's setup form. It searches the planner's space on the setup's own GPUs at its own
global batch, so the suggestion is one `mfutop plan` would also rank.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import gcd

from estimator.hardware import HardwareSpec
from estimator.model_config import ModelConfig
from estimator.plan_report import SETUP_FIELDS
from estimator.plan_space import MAX_GPUS, precision_options
from estimator.planner import (
    PlanRequest,
    SearchContext,
    fitting_candidates,
    search_groups,
    smallest_fitting_gpus,
    validate_request,
)
from estimator.predict import predict
from estimator.setup import TrainSetup


@dataclass(frozen=True)
class FitChange:
    """The smallest edit to a setup that fits (``setup``/``prediction`` None when nothing fits on its GPUs)."""

    setup: TrainSetup | None
    prediction: dict | None
    changed: dict[str, tuple[object, object]]  # field -> (given, suggested)
    flags: tuple[str, ...]  # the `mfutop estimate` flags to change, e.g. ("--zero", "3")
    smallest_gpus: int | None  # when nothing fits on these GPUs: the smallest count that would
    summary: str

    def to_dict(self) -> dict:
        return {"setup": self.setup.to_dict() if self.setup else None, "changed": {k: list(v) for k, v in
                self.changed.items()}, "flags": list(self.flags), "smallest_gpus": self.smallest_gpus,
                "summary": self.summary,
                "step_time_s": self.prediction["step"]["time_s"] if self.prediction and self.prediction["step"]
                else None,
                "memory_bytes": self.prediction["memory"]["total"] if self.prediction else None}


_FIELD_FLAGS = {"tp": "--tp", "pp": "--pp", "dp": "--dp", "ep": "--ep", "zero": "--zero", "recompute": "--recompute",
                "precision": "--precision", "batch_size": "--batch-size", "grad_accum": "--grad-accum"}


def _change_flags(changed: dict[str, tuple[object, object]]) -> tuple[str, ...]:
    out: list[str] = []
    for key, (_old, new) in changed.items():
        if key == "sp":
            out.append("--sp" if new else "--no-sp")
        elif key == "flash_attention":
            out.append("--flash-attention" if new else "--no-flash-attention")
        else:
            out += [_FIELD_FLAGS[key], str(new)]
    return tuple(out)


def cheapest_fitting_change(model: ModelConfig, hardware: HardwareSpec, setup: TrainSetup,
                            memory_limit_bytes: int | None = None, gpus_per_node: int = 8,
                            precisions: tuple[str, ...] | None = None) -> FitChange:
    """The fitting setup on the same GPUs (dp·tp·pp) at the same global batch (micro-batch x grad-accum x
    dp sequences) that changes the fewest fields of ``setup``, the fastest predicted among those; when
    none fits there, the smallest GPU count that would. What `estimate`'s "does not fit" shows."""
    world = setup.world_size
    node = gpus_per_node if world <= gpus_per_node or world % gpus_per_node == 0 else gcd(world, gpus_per_node)
    precs = tuple(dict.fromkeys((setup.precision,) + (precisions or precision_options(hardware))))
    req = PlanRequest(model, hardware, world, node, seq_len=setup.seq_len,
                      global_batch=setup.batch_size * setup.grad_accum * setup.dp,
                      memory_limit_bytes=memory_limit_bytes, top=1, precisions=precs)
    validate_request(req)
    ctx = SearchContext(req)
    given = setup.to_dict()
    counts = {"enumerated": 0, "memory_checked": 0}
    best: tuple[int, float, TrainSetup, dict] | None = None
    for lay, knobs in search_groups(req, ctx, world):
        for cand in fitting_candidates(ctx, lay, knobs, counts):
            s = replace(cand.setup(ctx.seq), seq_len=setup.seq_len, optimizer=setup.optimizer,
                        compile=setup.compile, efficiency=setup.efficiency)
            changed = {k: (given[k], getattr(s, k)) for k in SETUP_FIELDS if given[k] != getattr(s, k)}
            if best is not None and len(changed) > best[0]:
                continue
            t = ctx.step_time(s)
            if best is None or (len(changed), t) < best[:2]:
                best = (len(changed), t, s, changed)
    if best is None:
        n = smallest_fitting_gpus(req)
        where = f"on {world} GPUs at a global batch of {req.global_batch} sequences"
        summary = (f"nothing fits {where}; the smallest GPU count that fits is {n}" if n
                   else f"nothing fits {where}, nor on up to {MAX_GPUS} GPUs")
        return FitChange(None, None, {}, (), n, summary)
    _, _, s, changed = best
    pred = predict(model, hardware, s, memory_limit_bytes=memory_limit_bytes)
    flags = _change_flags(changed)
    summary = (f"{' '.join(flags) or 'no change'}: fits in {pred['memory']['total'] / 2**30:,.2f} GiB per GPU, "
               f"{pred['step']['time_s']:.4g} s per step" if pred["step"] else f"{' '.join(flags)}: fits")
    return FitChange(s, pred, changed, flags, None, summary)
