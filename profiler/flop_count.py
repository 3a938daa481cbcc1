"""Three FLOP counts of one training step, side by side, with the gaps explained.

1. analytic — ``estimator.flops.step_flops``: matmul FLOPs (2·m·n·k), full
   T x T attention, backward = 2 x forward (nanoGPT / PaLM convention).
2. FlopCounterMode — ``torch.utils.flop_counter``: counts aten mm / addmm /
   bmm (and the SDPA kernels it has formulas for) as 2·m·n·k, forward and
   backward as they really dispatch. On the CPU, SDPA dispatches to
   ``_scaled_dot_product_flash_attention_for_cpu``, which has no formula: it
   counts 0 and the attention core vanishes. We therefore count on the
   ``meta`` device (no memory, no compute, instant even for GPT-2 XL), where
   the model is built with explicit attention matmuls; there it equals the
   analytic total exactly for GPT-2-style models (verified in
   tests/test_flop_count.py): every matmul's backward is exactly two matmuls
   of the same size (grad-input and grad-weight; q and k, att and v all need
   gradients), embeddings/norms/softmax/GELU are not counted by either.
3. thop — ``thop.profile`` on a copy (it leaves buffers in the model): forward
   MACs of hooked ``nn.Module`` types, x2 for FLOPs, x3 for forward+backward.
   It sees ``nn.Linear`` exactly (2·in·out per token: the analytic
   qkv/proj/MLP/head terms) but not functional ops: ``q @ kᵀ`` and
   ``att @ v`` (the attention scores / reduce terms) are missing, embedding
   look-ups and GELU count 0, and it *adds* 4 "MACs" per element of each
   affine ``nn.LayerNorm`` (2L+1 of them), which no matmul convention counts:
   2·thop_MACs = analytic_forward - B·L·(scores + reduce) + 8·B·T·d·(2L+1).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass, field

import torch

from estimator.flops import step_flops
from estimator.model_config import ModelConfig
from profiler.model import build_model


@dataclass(frozen=True)
class FlopCounts:
    batch_size: int
    seq_len: int
    analytic: int  # forward + backward
    analytic_forward: int
    analytic_causal: int  # attention halved for the causal mask (llm.c / Megatron convention)
    attention_core_forward: int  # B·L·(scores + reduce): what thop cannot see
    thop_forward: int | None  # 2 x thop MACs
    thop: int | None  # 3 x thop_forward
    counter: int | None  # FlopCounterMode, forward + backward, meta device, explicit attention
    counter_by_op: dict[str, int] = field(default_factory=dict)
    layernorm_thop_forward: int = 0  # what thop adds for affine LayerNorms (in FLOPs = 2 x its MACs)
    note: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["thop_gap"] = None if self.thop is None else self.analytic - self.thop
        out["counter_gap"] = None if self.counter is None else self.analytic - self.counter
        return out


def attention_core_forward(cfg: ModelConfig, batch_size: int, seq_len: int) -> int:
    bd = step_flops(cfg, batch_size, seq_len).breakdown
    return batch_size * cfg.n_layers * (bd["attention/scores"] + bd["attention/reduce"])


def thop_layernorm_forward(cfg: ModelConfig, batch_size: int, seq_len: int) -> int:
    """FLOPs (2 x MACs) thop adds for affine nn.LayerNorm: 4 MACs per element, 2L+1 norms."""
    if cfg.norm != "layernorm":
        return 0
    return 8 * batch_size * seq_len * cfg.d_model * (2 * cfg.n_layers + 1)


def thop_forward_flops(model: torch.nn.Module, idx: torch.Tensor) -> int:
    """2 x thop MACs of ``model(idx)``, counted on a deep copy (thop leaves buffers behind)."""
    counted = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # thop imports distutils (deprecated) and warns about versions
        from thop import profile

        macs, _ = profile(counted, inputs=(idx,), verbose=False)
    return int(round(2 * macs))


def counter_step_flops(model: torch.nn.Module, idx: torch.Tensor) -> tuple[int, dict[str, int]]:
    """FlopCounterMode total and per-op counts for forward + backward of the loss."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss = model(idx, idx)
        loss.backward()
    by_op = {str(op).replace("aten.", ""): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), by_op


def cpu_sdpa_formulas() -> dict:
    """FlopCounterMode formulas for the CPU SDPA kernels it has none for (it would count them as 0).

    Forward: q·kᵀ and att·v, 2 matmuls of b·h·s_q·s_k·d each (4·b·h·s_q·s_k·d FLOPs), full TxT as the
    estimator counts; backward: twice that (4 matmuls, no recompute on the CPU kernel).
    """
    aten = torch.ops.aten

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        b, h, s_q, d = query
        return 4 * b * h * s_q * key[-2] * d

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return 2 * forward(query, key, value)

    ops = {}
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", forward),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", backward)):
        if hasattr(aten, name):
            ops[getattr(aten, name)] = formula
    return ops


def count_flops(cfg: ModelConfig, batch_size: int, seq_len: int, use_thop: bool = True,
                use_counter: bool = True) -> FlopCounts:
    """All three counts for ``cfg`` (already padded if padding is on) at ``batch_size`` x ``seq_len``.

    Runs on the ``meta`` device: shapes only, no memory, no device time.
    """
    sf = step_flops(cfg, batch_size, seq_len)
    core = attention_core_forward(cfg, batch_size, seq_len)
    model = idx = None
    if use_thop or use_counter:  # the analytic count needs no model: the first steps wait for none
        model = build_model(cfg, "meta", attention="explicit")
        idx = torch.zeros((batch_size, seq_len), dtype=torch.long, device="meta")
    thop_fwd = thop_forward_flops(model, idx) if use_thop else None
    counter, by_op = counter_step_flops(model, idx) if use_counter else (None, {})
    ln = thop_layernorm_forward(cfg, batch_size, seq_len)
    note = (
        "analytic: matmul FLOPs, full TxT attention, backward = 2 x forward. "
        "FlopCounterMode: aten mm/addmm/bmm, forward+backward, counted on the meta device with explicit "
        "attention (on the CPU it counts SDPA as 0, which drops the attention core "
        f"{3 * core:,} FLOPs). thop: 3 x 2 x forward MACs of nn.Module hooks; misses q@kT and att@v "
        f"({3 * core:,} FLOPs over a step), embeddings and GELU, and adds "
        f"{3 * ln:,} for LayerNorm elementwise work."
    )
    return FlopCounts(
        batch_size=batch_size, seq_len=seq_len, analytic=sf.total, analytic_forward=sf.forward,
        analytic_causal=sf.causal_total,
        attention_core_forward=core, thop_forward=thop_fwd, thop=None if thop_fwd is None else 3 * thop_fwd,
        counter=counter, counter_by_op=by_op, layernorm_thop_forward=ln, note=note,
    )
