"""The planner's search space: parallel layouts and the knobs on each, with the exact divisibility rules.

A layout is (tp, cp, pp, dp, ep) with tp·cp·pp·dp = the GPU count; the knobs are
ZeRO, recompute, precision, the pipeline's virtual stages and the micro-batch
(gradient accumulation follows from the fixed global batch). Knobs that can only
lose are not enumerated: on a GPU, flash attention (the explicit kernel moves the
T x T scores and keeps them: more time and more memory) and sequence parallelism
with TP (the same communication volume, less activation memory, a smaller pipeline
message); ZeRO-0 and -1 against ZeRO-2 (the same reduce volume, a sharded optimizer step, less
memory); torch autocast (bf16-mixed) against bf16 weights with an fp32 master copy (the same
16 bytes per parameter of model state, the same optimizer traffic, no per-step weight casts).
Only what the estimator models is enumerated; what it cannot model is
named in ``gaps`` so the output says so instead of faking it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import product

from estimator.errors import ConfigError
from estimator.flops import RECOMPUTE_KINDS
from estimator.hardware import HardwareSpec
from estimator.model_config import ModelConfig
from estimator.precision import PRECISIONS
from estimator.communication import GPUS_PER_NODE

ZERO_STAGES = (0, 1, 2, 3)
# Megatron/DeepSpeed's mixed precision (fp32 master) and torch autocast; fp16 where there is no bf16 path;
# fp8 (Transformer Engine's recipe) where the GPU has an fp8 tensor path.
PRECISIONS_BF16 = ("bf16-master",)
PRECISIONS_FP16 = ("fp16-mixed",)
PRECISION_FP8 = "fp8"
MAX_VPP = 8  # virtual stages per GPU searched (Megatron's interleaved schedule; more only adds sends)
# Context parallelism is searched only while each rank keeps at least this many tokens of a sequence: the
# ring's K/V exchange hides behind attention only for long blocks (Llama 3 ran CP16 at 131,072 tokens:
# 8,192 per rank; Dubey et al. 2024, Table 4).
MIN_CP_TOKENS = 8192
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
    cp: int = 1

    @property
    def world(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

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
    vpp: int = 1


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


def cp_options(seq_len: int, room: int) -> list[int]:
    """CP sizes dividing ``room`` (GPUs left after TP) whose ranks keep >= ``MIN_CP_TOKENS`` tokens each,
    with the sequence split into 2·cp equal chunks (Megatron's load-balanced causal ring)."""
    return [c for c in divisors(room) if c == 1 or (seq_len % (2 * c) == 0 and seq_len // c >= MIN_CP_TOKENS)]


def layouts(model: ModelConfig, gpus: int, gpus_per_node: int, seq_len: int, batch: int | None,
            batch_tokens: int | None, uneven_pp: bool = False) -> Iterator[Layout]:
    """Every (tp, cp, pp, dp, ep) on exactly ``gpus`` GPUs whose dp the global batch allows."""
    for tp in tp_options(model, gpus, gpus_per_node):
        for cp in cp_options(seq_len, gpus // tp):
            for pp in pp_options(model, gpus // (tp * cp), uneven_pp):
                dp = gpus // (tp * cp * pp)
                b = layout_batch(dp, batch, batch_tokens, seq_len)
                if b is None:
                    continue
                for ep in ep_options(model, dp):
                    yield Layout(tp, pp, dp, ep, b, cp)


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
    """bf16 regimes where the GPU has a bf16 tensor path, else fp16 autocast; fp8 where it has an fp8 one."""
    base = PRECISIONS_BF16 if hardware.peak("bf16") else PRECISIONS_FP16
    return base + ((PRECISION_FP8,) if hardware.peak("fp8") and PRECISION_FP8 in PRECISIONS else ())


def vpp_options(model: ModelConfig, pp: int) -> list[int]:
    """Virtual stages per GPU: 1, or (pp > 1) up to ``MAX_VPP`` dividing the layers of each stage."""
    if pp == 1 or model.n_layers % pp:
        return [1]
    return [v for v in divisors(model.n_layers // pp) if v <= MAX_VPP]


# What a published run could use, to ask "is the paper's layout among the best with the paper's tools":
# "all" is every knob mfutop models; "megatron-2021" is Megatron-LM in Narayanan et al. 2021 (SC21):
# no ZeRO, full recomputation, no flash attention (2021), mixed precision with fp32 master weights,
# plain 1F1B (the table's layouts; the interleaved schedule was an option the table does not use).
TOOLSETS = ("all", "megatron-2021")


def check_toolset(toolset: str) -> None:
    if toolset not in TOOLSETS:
        raise ConfigError(f"toolset must be one of {', '.join(TOOLSETS)}, got {toolset!r}")


def knob_options(model: ModelConfig, layout: Layout, precisions: tuple[str, ...],
                 gpu: bool = True, toolset: str = "all") -> Iterator[Knobs]:
    """ZeRO only with dp > 1 (stage 0 otherwise: nothing to shard); on a GPU ZeRO-2 or -3, sequence
    parallel whenever tp > 1 and flash attention (the alternatives only lose, see the module's note);
    every ZeRO stage, explicit attention and SP off are still searched on a CPU, where the kernels differ."""
    if toolset == "megatron-2021":
        yield from (Knobs(0, "full", prec, False, False, 1) for prec in precisions)
        return
    zeros = (2, 3) if layout.dp > 1 and gpu else ZERO_STAGES if layout.dp > 1 else (0,)
    sps = (True,) if layout.tp > 1 else (False,)
    flashes = (True,) if gpu else (True, False)
    if not gpu and layout.tp > 1:
        sps = (False, True)
    for zero, rec, prec, flash, sp, vpp in product(zeros, RECOMPUTE_KINDS, precisions, flashes, sps,
                                                   vpp_options(model, layout.pp)):
        yield Knobs(zero, rec, prec, flash, sp, vpp)


def micro_batches(layout: Layout) -> list[int]:
    """Micro-batch sizes (sequences per GPU per forward) that divide a replica's share exactly."""
    return divisors(layout.per_replica)


def gaps(model: ModelConfig, hardware: HardwareSpec, uneven_pp: bool,
         gpus_per_node: int = GPUS_PER_NODE) -> list[str]:
    """What the search leaves out because the estimator does not model it."""
    out = [
        "tensor parallelism across nodes: not searched (TP stays within --gpus-per-node)",
        f"context parallelism: searched only with >= {MIN_CP_TOKENS:,} tokens per rank",
    ]
    if hardware.peak("fp8") and PRECISION_FP8 not in PRECISIONS:
        out.append(f"fp8 training: {hardware.name} has an fp8 peak but the estimator has no fp8 precision regime")
    if gpus_per_node != GPUS_PER_NODE:
        out.append(f"--gpus-per-node {gpus_per_node} bounds TP only: the estimator's link model puts "
                   f"{GPUS_PER_NODE} GPUs on NVLink (estimator.communication.GPUS_PER_NODE)")
    if not uneven_pp and any(model.n_layers % p for p in (2, 4, 8, 16)):
        out.append(f"pipeline sizes that do not divide {model.n_layers} layers: not searched (--uneven-pp)")
    return out
