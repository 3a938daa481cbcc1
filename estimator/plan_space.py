"""The planner's search space: parallel layouts and the knobs on each, with the exact divisibility rules.

A layout is (tp, pp, dp, ep) with tp·pp·dp = the GPU count; the knobs are ZeRO,
recompute, precision, flash attention, sequence parallel and the micro-batch
(gradient accumulation follows from the fixed global batch). Only what the
estimator models is enumerated; what it cannot model is named in ``gaps`` so
the output says so instead of faking it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product

from estimator.errors import ConfigError
from estimator.flops import RECOMPUTE_KINDS
from estimator.hardware import HardwareSpec
from estimator.model_config import ModelConfig
from estimator.communication import GPUS_PER_NODE

ZERO_STAGES = (0, 1, 2, 3)
# Megatron/DeepSpeed's mixed precision (fp32 master) and torch autocast; fp16 where there is no bf16 path.
PRECISIONS_BF16 = ("bf16-mixed", "bf16-master")
PRECISIONS_FP16 = ("fp16-mixed",)
MAX_GPUS = 2**24  # the search for the smallest fitting GPU count stops here


def divisors(n: int) -> list[int]:
    """Positive divisors of ``n``, ascending."""
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


@dataclass(frozen=True)
class Layout:
    """How the GPUs are split; ``batch`` is the global batch in sequences for this layout."""

    tp: int
    pp: int
    dp: int
    ep: int
    batch: int

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def per_replica(self) -> int:
        """Sequences each data-parallel replica processes per step (micro-batch x grad-accum)."""
        return self.batch // self.dp


@dataclass(frozen=True)
class Knobs:
    """Everything but the layout and the micro-batch."""

    zero: int
    recompute: str
    precision: str
    flash_attention: bool
    sp: bool


def tp_options(model: ModelConfig, gpus: int, gpus_per_node: int) -> list[int]:
    """TP sizes within a node that divide the query heads and the KV heads (Megatron's rule)."""
    return [t for t in divisors(gpus_per_node)
            if t <= gpus and gpus % t == 0 and model.n_heads % t == 0 and model.kv_heads % t == 0]


def pp_options(model: ModelConfig, room: int, uneven: bool) -> list[int]:
    """PP sizes dividing ``room`` (GPUs left after TP) and the layers; with ``uneven``, any size up to
    the layer count (stages of ceil(L/pp) or fewer layers; the busiest holds ceil(L/pp), as
    ``stage_params`` counts)."""
    layers = model.n_layers
    return [p for p in divisors(room) if p <= layers and (uneven or layers % p == 0)]


def ep_options(model: ModelConfig, dp: int) -> list[int]:
    """Expert-parallel sizes: divide the experts and dp (EP groups are carved out of DP)."""
    if not model.is_moe:
        return [1]
    return [e for e in divisors(model.n_experts) if dp % e == 0]


def layout_batch(dp: int, batch: int | None, batch_tokens: int | None, seq_len: int) -> int | None:
    """The global batch in sequences for ``dp`` replicas: exact when given in sequences (None when
    ``dp`` does not divide it), else the multiple of dp nearest to batch_tokens / seq_len."""
    if batch is not None:
        return batch if batch % dp == 0 and batch >= dp else None
    target = batch_tokens / seq_len
    if target < dp:
        return None
    return dp * max(1, round(target / dp))


def check_gpus(gpus: int, gpus_per_node: int) -> None:
    for name, value in (("gpus", gpus), ("gpus-per-node", gpus_per_node)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if gpus > gpus_per_node and gpus % gpus_per_node:
        raise ConfigError(f"--gpus {gpus} spans several nodes but is not a multiple of --gpus-per-node "
                          f"{gpus_per_node}: use whole nodes")


def layouts(model: ModelConfig, gpus: int, gpus_per_node: int, seq_len: int, batch: int | None,
            batch_tokens: int | None, uneven_pp: bool = False) -> Iterator[Layout]:
    """Every (tp, pp, dp, ep) on exactly ``gpus`` GPUs whose dp the global batch allows."""
    for tp in tp_options(model, gpus, gpus_per_node):
        for pp in pp_options(model, gpus // tp, uneven_pp):
            dp = gpus // (tp * pp)
            b = layout_batch(dp, batch, batch_tokens, seq_len)
            if b is None:
                continue
            for ep in ep_options(model, dp):
                yield Layout(tp, pp, dp, ep, b)


def smallest_dp(model: ModelConfig, gpus: int, gpus_per_node: int, uneven_pp: bool = False) -> tuple[int, int, int]:
    """(dp, tp, pp) of the layout with the fewest replicas: what the global batch must at least cover."""
    best = None
    for tp in tp_options(model, gpus, gpus_per_node):
        for pp in pp_options(model, gpus // tp, uneven_pp):
            cand = (gpus // (tp * pp), tp, pp)
            best = cand if best is None or cand < best else best
    if best is None:
        raise ConfigError(f"no TP size divides {model.name}'s {model.n_heads} heads and {model.kv_heads} KV heads "
                          f"within {gpus} GPUs")
    return best


def precision_options(hardware: HardwareSpec) -> tuple[str, ...]:
    """bf16 regimes where the GPU has a bf16 tensor path, else fp16 autocast."""
    return PRECISIONS_BF16 if hardware.peak("bf16") else PRECISIONS_FP16


def knob_options(layout: Layout, precisions: tuple[str, ...]) -> Iterator[Knobs]:
    """ZeRO only with dp > 1 (stage 0 otherwise: nothing to shard), sequence parallel only with tp > 1."""
    zeros = ZERO_STAGES if layout.dp > 1 else (0,)
    sps = (False, True) if layout.tp > 1 else (False,)
    for zero, rec, prec, flash, sp in product(zeros, RECOMPUTE_KINDS, precisions, (True, False), sps):
        yield Knobs(zero, rec, prec, flash, sp)


def micro_batches(layout: Layout) -> list[int]:
    """Micro-batch sizes (sequences per GPU per forward) that divide a replica's share exactly."""
    return divisors(layout.per_replica)


def gaps(model: ModelConfig, hardware: HardwareSpec, uneven_pp: bool,
         gpus_per_node: int = GPUS_PER_NODE) -> list[str]:
    """What the search leaves out because the estimator does not model it."""
    out = [
        "interleaved (virtual-stage) pipeline schedule: not modelled by the estimator, plain 1F1B only",
        "context parallelism (CP): not modelled by the estimator, not searched",
        "tensor parallelism across nodes: not searched (TP stays within --gpus-per-node)",
    ]
    if hardware.peak("fp8"):
        out.append(f"fp8 training: {hardware.name} has an fp8 peak but the estimator has no fp8 precision regime")
    if model.is_moe:
        out.append("expert parallelism: the all-to-all is not modelled, EP rows are optimistic")
    if gpus_per_node != GPUS_PER_NODE:
        out.append(f"--gpus-per-node {gpus_per_node} bounds TP only: the estimator's link model puts "
                   f"{GPUS_PER_NODE} GPUs on NVLink (estimator.communication.GPUS_PER_NODE)")
    if not uneven_pp and any(model.n_layers % p for p in (2, 4, 8, 16)):
        out.append(f"pipeline sizes that do not divide {model.n_layers} layers: not searched (--uneven-pp)")
    return out
