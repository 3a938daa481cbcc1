"""Matmul FLOPs of a training step, in the nanoGPT sizing convention.

Convention (DESIGN.md): one FLOP is a multiply or an add, a matmul (MxK)(KxN)
costs 2·M·K·N; attention is counted over the full T x T score matrix (no
halving for the causal mask); norms, softmax, biases and activations are left
out; backward = 2 x forward. PaLM's 6N + 12·L·H·Q·T and Megatron's closed form
are computed beside it as cross-checks, and the causal-halved count (llm.c,
Megatron's newer code) for readers who compare with those tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from estimator.model_config import ModelConfig
from estimator.params import attention_linears, count_params

RECOMPUTE_KINDS = ("none", "selective", "full")


def forward_breakdown(cfg: ModelConfig, seq_len: int) -> dict[str, int]:
    """Forward FLOPs of one sequence of ``seq_len`` tokens, per component (notebook keys).

    "block" is a layer of the common kind (an MoE layer of an MoE model), "dense_block" one of
    DeepSeek's dense first layers; "transformer" sums each kind times its layer count.
    """
    t, h = seq_len, cfg.d_model
    out: dict[str, int] = {}
    linears = attention_linears(cfg)
    out["attention/kqv"] = sum(2 * t * d_in * d_out for _, d_in, d_out, _ in linears[:-1])
    out["attention/scores"] = 2 * t * t * cfg.q_width
    out["attention/reduce"] = 2 * cfg.n_heads * (t * t * cfg.vdh)
    out["attention/proj"] = sum(2 * t * d_in * d_out for _, d_in, d_out, _ in linears[-1:])
    out["attention"] = sum(out[f"attention/{k}"] for k in ("kqv", "scores", "reduce", "proj"))

    up_mats = 2 if cfg.gated else 1
    out["mlp/ffw1"] = cfg.top_k * up_mats * 2 * t * h * cfg.ffn
    out["mlp/ffw2"] = cfg.top_k * 2 * t * cfg.ffn * h
    out["mlp/router"] = 2 * t * h * cfg.n_experts if cfg.is_moe else 0
    shared = cfg.shared_expert_d_ff or 0
    out["mlp/shared"] = (up_mats + 1) * 2 * t * h * shared + (2 * t * h if cfg.shared_expert_gate else 0)
    out["mlp"] = out["mlp/ffw1"] + out["mlp/ffw2"] + out["mlp/router"] + out["mlp/shared"]

    out["block"] = out["attention"] + out["mlp"]
    out["dense_block"] = out["attention"] + (up_mats + 1) * 2 * t * h * cfg.dense_ffn if cfg.dense_layers else 0
    out["transformer"] = (cfg.n_layers - cfg.dense_layers) * out["block"] + cfg.dense_layers * out["dense_block"]
    e = cfg.embed_width
    out["projections"] = 2 * 2 * t * e * h if e != h else 0  # OPT-350m project_in + project_out
    out["dense"] = 2 * t * e * cfg.vocab_size
    out["forward_total"] = out["transformer"] + out["projections"] + out["dense"]
    return out


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one training step on ``batch_size`` sequences of ``seq_len`` tokens."""

    batch_size: int
    seq_len: int
    forward: int
    backward: int
    total: int  # model FLOPs: what MFU divides
    recompute: int  # extra forward work from activation recomputation
    hardware_total: int  # total + recompute: what HFU divides
    palm_total: int
    megatron_total: int
    causal_total: int  # attention halved for the causal mask (llm.c / newer Megatron)
    breakdown: dict[str, int] = field(default_factory=dict)  # forward, per sequence

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def per_token(self) -> float:
        return self.total / self.tokens

    def to_dict(self) -> dict:
        return {
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "forward": self.forward,
            "backward": self.backward,
            "total": self.total,
            "per_token": self.per_token,
            "recompute": self.recompute,
            "hardware_total": self.hardware_total,
            "palm_total": self.palm_total,
            "megatron_total": self.megatron_total,
            "causal_total": self.causal_total,
            "convention": "matmul FLOPs, full TxT attention (nanoGPT/PaLM); backward = 2 x forward",
            "breakdown_per_sequence": dict(self.breakdown),
        }


def palm_flops_per_token(cfg: ModelConfig, seq_len: int) -> int:
    """PaLM App. B: 6N + 12·L·H·Q·T, N = parameters in matmuls (position table excluded); with a value
    head width apart from the query's (MLA) the attention term is 6·L·H·(Q + Q_v)·T."""
    n = count_params(cfg).matmul if not cfg.is_moe else _active_matmul_params(cfg)
    return 6 * n + 6 * cfg.n_layers * cfg.n_heads * (cfg.dh + cfg.vdh) * seq_len


def _active_matmul_params(cfg: ModelConfig) -> int:
    p = count_params(cfg)
    return p.matmul - (p.total - p.active)


def megatron_flops(cfg: ModelConfig, batch_size: int, seq_len: int) -> int:
    """Megatron-LM ``num_floating_point_operations`` (fwd + bwd, no recompute), as an exact integer.

    12·B·s·L·h²·[(1 + g/a + s/h)·q + (f/h)·k·(3/2 if SwiGLU) + V/(2Lh)], expanded so
    that no division happens: every term is a whole number of FLOPs. It is Megatron's GPT formula: a
    cross-check for the families that are that GPT, not for MLA, shared experts or dense first layers.
    """
    b, s, L, h = batch_size, seq_len, cfg.n_layers, cfg.d_model
    q = cfg.q_width  # q_ratio·h
    attn = 12 * b * s * L * h * (q + q * cfg.kv_heads // cfg.n_heads + s * q // h)
    mlp_mats = 3 if cfg.gated else 2
    mlp = 6 * b * s * L * h * cfg.ffn * cfg.top_k * mlp_mats
    logits = 6 * b * s * h * cfg.vocab_size
    return attn + mlp + logits


def step_flops(cfg: ModelConfig, batch_size: int, seq_len: int, recompute: str = "none") -> StepFlops:
    """FLOPs of a training step; ``recompute`` adds the HFU-only forward work."""
    per_seq = forward_breakdown(cfg, seq_len)
    forward = batch_size * per_seq["forward_total"]
    backward = 2 * forward
    total = forward + backward
    attention_core = cfg.n_layers * (per_seq["attention/scores"] + per_seq["attention/reduce"])
    if recompute == "full":
        extra = batch_size * per_seq["transformer"]
    elif recompute == "selective":
        extra = batch_size * attention_core
    else:
        extra = 0
    causal = total - 3 * batch_size * attention_core // 2
    return StepFlops(
        batch_size=batch_size,
        seq_len=seq_len,
        forward=forward,
        backward=backward,
        total=total,
        recompute=extra,
        hardware_total=total + extra,
        palm_total=batch_size * seq_len * palm_flops_per_token(cfg, seq_len),
        megatron_total=megatron_flops(cfg, batch_size, seq_len),
        causal_total=causal,
        breakdown=per_seq,
    )
