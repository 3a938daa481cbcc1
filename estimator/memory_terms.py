"""The memory terms of training, in bytes: model states, activations, logits, autocast copies.

Model states follow the ZeRO paper (Rajbhandari et al. 2020, §3.1): weights,
gradients and optimizer state per parameter come from the ``Precision``;
ZeRO stage 1/2/3 divides optimizer / +gradients / +weights by the
data-parallel size. Ψ is the parameter count on one model-parallel rank
(tensor-, pipeline- and expert-sharded), never the whole model.

Activations follow Korthikanti et al. 2022 (Table 2), term by term, so each
variant is the same code with a switch: tensor parallel, sequence parallel,
selective and full recompute, flash attention (no s² terms, a logsumexp
instead), and dropout (``TrainSetup.dropout > 0``). Our profiled GPT has no
dropout, so by default its masks and dropout outputs do not exist: 32·sbh +
2·a·s²·b per layer with uniform 16-bit activations instead of 34·sbh +
5·a·s²·b. SwiGLU uses the LLaMA-style derived form (reference/formulas.md §3.2);
Q, K and V are counted as the profiled GPT keeps them (``_saved_qkv_elements``:
RoPE's rotated copies, GQA's K and V expanded to the query heads, as HF's LLaMA
and torchtitan do), not at §3.2's KV-head size, which a kernel with native GQA
keeps; on a CPU an RMSNorm also keeps its normalised input
(``rmsnorm_copy_bytes``). Under fp8 (Transformer Engine) the inputs of the
GEMMs are saved in fp8 (``Precision.gemm_input_bytes``). ZeRO shards over dp·cp (``zero_group``).

Implementation-dependent choices (the residual stream dtype under autocast,
the bytes the loss keeps, autocast's cached bf16 weight copies, CPU autocast
keeping softmax in bf16) are named here. Which terms coexist, phase by phase,
is ``estimator.memory_phases``; the per-GPU total is ``estimator.memory``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig
from estimator.params import attention_linears, count_params
from estimator.precision import Precision, get_precision

LSE_BYTES = 4  # flash attention's logsumexp is fp32, one per query row and head
DROPOUT_MASK_BYTES = 1  # Korthikanti: one byte per element
# Bytes per logit element held around loss.backward(): logits as the head
# writes them + the log-softmax cross_entropy saves + the gradient of logits.
LOGIT_BYTES = {
    "fp32": 4 + 4 + 4,
    "tf32": 4 + 4 + 4,
    "bf16-mixed": 2 + 4 + 4,  # bf16 logits, fp32 log-softmax and grad (autocast runs CE in fp32)
    "fp16-mixed": 2 + 4 + 4,
    "bf16": 2 + 2 + 2,  # no autocast: everything stays bf16
    "bf16-master": 2 + 4 + 4,  # Megatron upcasts the logits to fp32 for its cross-entropy
}


DEVICE_KINDS = ("gpu", "cpu")
OPTIMIZER_IMPLS = ("foreach", "fused", "for-loop")


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def resolve_precision(precision: Precision | str) -> Precision:
    return precision if isinstance(precision, Precision) else get_precision(precision)


def is_autocast(p: Precision) -> bool:
    """fp32 weights with 16-bit activations: torch.autocast."""
    return p.weight_bytes > p.activation_bytes


def residual_bytes(p: Precision) -> int:
    """The residual stream (and so every norm input) has the dtype of the weights:
    fp32 under autocast, where norms also run in fp32."""
    return p.weight_bytes


def logit_bytes_per_element(p: Precision) -> int:
    """``LOGIT_BYTES``: the ``logits`` term (logits + log-softmax + gradient), as the sum counts it."""
    if p.name in LOGIT_BYTES:
        return LOGIT_BYTES[p.name]
    return p.activation_bytes + 2 * loss_bytes(p)


def loss_bytes(p: Precision) -> int:
    """Bytes of cross-entropy's log-softmax: fp32 under autocast and with an fp32 master copy
    (Megatron upcasts the logits), else the activations' dtype (fp32, or pure bf16)."""
    pure = p.weight_bytes == p.activation_bytes and p.optimizer_bytes < 12
    return p.activation_bytes if pure else 4


# --------------------------------------------------------------- model states

def optimizer_bytes_per_param(p: Precision, optimizer: str = "adamw") -> int:
    """AdamW: ``p.optimizer_bytes`` (two moments, plus an fp32 master copy where the
    weights are 16-bit and the regime keeps one). SGD: the master copy and one moment."""
    if optimizer == "adamw":
        return p.optimizer_bytes
    if optimizer == "sgd":
        master = 4 if p.weight_bytes < 4 and p.optimizer_bytes >= 12 else 0
        return master + (p.optimizer_bytes - master) // 2
    raise ConfigError(f"optimizer must be adamw or sgd, got {optimizer!r}")


def zero_group(setup) -> int:
    """Ranks holding replicas of the same weights, over which ZeRO shards: dp x cp (Megatron reduces the
    gradients and shards its distributed optimizer over the data-parallel group *with* context parallel)."""
    return setup.dp * setup.cp


def model_state_bytes(n_params: int, precision: Precision | str, dp: int = 1, zero: int = 0,
                      optimizer: str = "adamw") -> dict[str, int]:
    """Weights, gradients, optimizer state of ``n_params`` (Ψ on one model-parallel
    rank) under ZeRO ``zero`` over ``dp`` ranks; shards rounded up."""
    p = resolve_precision(precision)
    weights = n_params * p.weight_bytes
    grads = n_params * p.grad_bytes
    opt = n_params * optimizer_bytes_per_param(p, optimizer)
    return {
        "weights": ceil_div(weights, dp) if zero >= 3 else weights,
        "gradients": ceil_div(grads, dp) if zero >= 2 else grads,
        "optimizer": ceil_div(opt, dp) if zero >= 1 else opt,
    }


@dataclass(frozen=True)
class StageParams:
    """Parameters one GPU holds on a pipeline stage after tensor/expert sharding."""

    dense: int  # sharded by ZeRO over dp
    expert: int  # expert MLPs: sharded by ZeRO over dp / ep (EP groups are carved out of DP)
    layers: int  # transformer blocks on this stage
    largest_layer: int  # one block on this GPU (ZeRO-3 gathers a whole block at a time)

    @property
    def total(self) -> int:
        return self.dense + self.expert


REPLICATED = ("attn.q_down", "attn.kv_down")


def _attention_params(cfg: ModelConfig, tp: int) -> int:
    """One block's attention matrices on one GPU: column-parallel outputs / tp (KV heads replicated when
    tp exceeds them), the output projection row-parallel (its bias replicated), MLA's down-projections whole."""
    if not cfg.is_mla:
        qkv_in = cfg.d_model + (1 if cfg.qkv_bias else 0)
        kv_per_gpu = ceil_div(cfg.kv_heads, tp)
        attn = ceil_div(qkv_in * cfg.q_width, tp) + qkv_in * kv_per_gpu * (cfg.dh + cfg.vdh)
        return attn + ceil_div(cfg.n_heads * cfg.vdh * cfg.d_model, tp) + (cfg.d_model if cfg.proj_bias else 0)
    out = 0
    for name, d_in, d_out, bias in attention_linears(cfg):
        if name in REPLICATED:
            out += d_in * d_out + (d_out if bias else 0)
        elif name == "attn.proj":
            out += ceil_div(d_in * d_out, tp) + (d_out if bias else 0)
        else:
            out += ceil_div((d_in + (1 if bias else 0)) * d_out, tp)
    return out


def _mlp_params(cfg: ModelConfig, width: int, tp: int) -> int:
    """One MLP of ``width`` on one GPU: gate/up column-parallel, down row-parallel (its bias replicated)."""
    mats = 3 if cfg.gated else 2
    bias_out = cfg.d_model if cfg.mlp_bias else 0
    per = mats * cfg.d_model * width + (mats - 1) * (width if cfg.mlp_bias else 0)
    return ceil_div(per, tp) + bias_out


def _layer_params(cfg: ModelConfig, tp: int, ep: int, dense: bool = False) -> tuple[int, int]:
    """(dense, expert) parameters of one block on one GPU; ``dense``: a DeepSeek dense first layer."""
    bd = count_params(cfg).breakdown
    base = _attention_params(cfg, tp) + bd["attention/ln"] + bd["mlp/ln"]  # norms (MLA latent norms too) replicated
    if not cfg.is_moe or dense:
        return base + _mlp_params(cfg, cfg.dense_ffn if cfg.is_moe else cfg.ffn, tp), 0
    shared = _mlp_params(cfg, cfg.shared_expert_d_ff, tp) if cfg.shared_expert_d_ff else 0
    shared += cfg.d_model if cfg.shared_expert_gate else 0
    return base + bd["mlp/router"] + shared, ceil_div(cfg.n_experts, ep) * _mlp_params(cfg, cfg.ffn, tp)


def stage_params(cfg: ModelConfig, tp: int = 1, pp: int = 1, ep: int = 1) -> dict[str, StageParams]:
    """Parameters per GPU on the first and last pipeline stage (the same stage when pp = 1); a fresh dict of
    the (frozen) counts, computed once per shape (the planner asks for the same shapes thousands of times)."""
    return dict(_stage_params(cfg, tp, pp, ep))


@lru_cache(maxsize=4096)
def _stage_params(cfg: ModelConfig, tp: int, pp: int, ep: int) -> tuple[tuple[str, StageParams], ...]:
    """``stage_params``' counts.

    The first stage holds the embeddings, the last the final norm and the head;
    with pp > 1 a tied head keeps a copy of the token table on the last stage
    (Megatron). Layers per stage are rounded up: the busiest stage counts. DeepSeek's
    dense first layers sit on the first stage(s), each counted with its own MLP.
    """
    bd = count_params(cfg).breakdown
    layers = ceil_div(cfg.n_layers, pp)
    moe_dense, moe_expert = _layer_params(cfg, tp, ep)
    dense_block = _layer_params(cfg, tp, ep, dense=True)[0] if cfg.dense_layers else 0
    token = ceil_div(bd["embedding/token"], tp)
    project = bd["embedding/project"] // 2  # OPT-350m: project_in on the first stage, project_out on the last
    embed = token + bd["embedding/position"] + project
    head = token if (not cfg.tied_embeddings or pp > 1) else 0
    tail = bd["ln_f"] + project + head

    def blocks(n_dense: int, extra: int) -> StageParams:
        n_moe = layers - n_dense
        return StageParams(extra + n_dense * dense_block + n_moe * moe_dense, n_moe * moe_expert, layers,
                           max(dense_block, moe_dense + moe_expert))

    first_dense = min(cfg.dense_layers, layers)
    last_dense = max(0, cfg.dense_layers - (cfg.n_layers - layers))
    first = blocks(first_dense, embed + (tail if pp == 1 else 0))
    last = first if pp == 1 else blocks(last_dense, tail)
    return (("first", first), ("last", last))


# --------------------------------------------------------------- activations

def activation_bytes_per_layer(cfg: ModelConfig, batch_size: int, seq_len: int, precision: Precision | str, *,
                               tp: int = 1, sp: bool = False, recompute: str = "none",
                               flash_attention: bool = True, dropout: bool = False,
                               device_kind: str = "gpu") -> dict[str, int]:
    """Bytes one transformer block keeps for backward, by tensor, plus ``total``.

    With uniform 16-bit activations, MHA, GELU, f = 4h and ``dropout=True`` this is
    Korthikanti's s·b·h·(34 + 5as/h) (TP: 10 + 24/t + 5as/(ht); +SP: all ÷t;
    selective: no s² terms; full: the layer input only). Sharding by t rounds up.
    ``device_kind="cpu"``: CPU autocast keeps softmax in bf16 (CUDA autocast runs it in fp32).
    """
    p = resolve_precision(precision)
    a, r = p.activation_bytes, residual_bytes(p)
    b, s, h, f = batch_size, seq_len, cfg.d_model, cfg.ffn
    sb = s * b
    sbh = sb * h
    unsharded = tp if sp else 1  # what Megatron TP alone cannot split, SP does

    def split(n: int) -> int:
        return ceil_div(n, tp)

    def rest(n: int) -> int:
        return ceil_div(n, unsharded)

    if recompute == "full":
        return {"layer_input": rest(r * sbh), "total": rest(r * sbh)}

    out: dict[str, int] = {}
    kv_per_gpu = ceil_div(cfg.kv_heads, tp)
    heads_per_gpu = ceil_div(cfg.n_heads, tp)
    normed = rmsnorm_copy_bytes(cfg, p, device_kind)
    out["attention/norm_input"] = rest((r + normed) * sbh)
    g = p.saved_gemm_input_bytes  # fp8: Transformer Engine saves its GEMM inputs in fp8
    out["attention/qkv_input"] = rest(g * sbh)
    out["attention/qkv"] = a * sb * _saved_qkv_elements(cfg, heads_per_gpu, kv_per_gpu)
    if recompute == "selective":
        out["attention/core"] = 0  # recomputed from Q, K, V in backward
    elif flash_attention:
        out["attention/core"] = LSE_BYTES * heads_per_gpu * sb  # logsumexp; the output is proj_input
    else:
        # softmax probabilities: CUDA autocast runs softmax in fp32, then a 16-bit copy feeds att @ v;
        # CPU autocast leaves softmax in bf16, so the one 16-bit tensor serves both
        probs = a + (4 if is_autocast(p) and device_kind != "cpu" else 0)
        out["attention/core"] = probs * heads_per_gpu * s * sb
        if dropout:
            out["attention/core"] += (DROPOUT_MASK_BYTES + a) * heads_per_gpu * s * sb
    out["attention/proj_input"] = g * sb * heads_per_gpu * cfg.dh
    out["attention/dropout_mask"] = rest(DROPOUT_MASK_BYTES * sbh) if dropout else 0

    k = cfg.top_k  # each token's hidden state is dispatched to k experts
    hidden_tensors = 4 if cfg.gated else 2  # swiglu: gate, up, silu(gate), product; gelu: in, out
    out["mlp/norm_input"] = rest((r + normed) * sbh)
    out["mlp/fc_input"] = rest(g * sbh) * k
    # the last hidden tensor (GELU output / SwiGLU product) is the down projection's GEMM input
    out["mlp/hidden"] = ((hidden_tensors - 1) * a + g) * sb * split(f) * k
    out["mlp/router"] = 4 * sb * cfg.n_experts if cfg.is_moe else 0  # fp32 router probabilities
    out["mlp/dropout_mask"] = rest(DROPOUT_MASK_BYTES * sbh) if dropout else 0
    out["total"] = sum(out.values())
    return out


def head_activation_bytes(cfg: ModelConfig, batch_size: int, seq_len: int, precision: Precision | str,
                          tp: int = 1, sp: bool = False, device_kind: str = "gpu") -> int:
    """Final norm input (and RMSNorm's normalised copy on a CPU: ``rmsnorm_copy_bytes``) and the LM
    head's input (the logits are counted apart)."""
    p = resolve_precision(precision)
    sbh = batch_size * seq_len * cfg.d_model
    normed = rmsnorm_copy_bytes(cfg, p, device_kind) if cfg.final_norm else 0
    return ceil_div((residual_bytes(p) + normed + p.activation_bytes) * sbh, tp if sp else 1)


def rmsnorm_copy_bytes(cfg: ModelConfig, p: Precision, device_kind: str) -> int:
    """Bytes per element an RMSNorm saves beyond its input: on a CPU torch's ``_fused_rms_norm`` has no
    kernel and decomposes (x·rsqrt(mean(x²) + eps)·w), so autograd keeps the normalised x·rstd (in the
    residual's dtype) beside x and rstd; a CUDA build's kernel keeps x and rstd only, as layer_norm does
    (``rms_norm_symint``, aten/src/ATen/native/layer_norm.cpp). Measured on the CPU with
    ``saved_tensors_hooks`` (torch 2.13) and by ``benchmarks/bench_memory_prediction.py``."""
    return residual_bytes(p) if cfg.norm == "rmsnorm" and device_kind == "cpu" else 0


def _saved_qkv_elements(cfg: ModelConfig, heads: int, kv_heads: int) -> int:
    """Elements per token of Q, K and V that the attention core saves for backward (SDPA and the
    explicit matmuls keep their inputs), in the profiled GPT's implementation (``profiler.model``):
    Q, K, V are views of the one fused projection output, which stays alive whole while any view of it
    is saved; RoPE makes Q and K new tensors (rotated copies); GQA's ``repeat_interleave`` makes K and
    V new tensors of the query heads' size. So MHA + RoPE keeps the projection (Q, K, V) *and* the
    rotated Q and K; GQA + RoPE only the three new tensors, the projection freed. Measured to 0.1 MiB
    by ``benchmarks/bench_memory_prediction.py`` (llama-tiny and its variants)."""
    if cfg.is_mla:  # MLA's own projections: the fused-output form
        return cfg.dh * (heads + 2 * kv_heads)
    rope, gqa = cfg.position == "rope", kv_heads != heads
    new_q = heads if rope else 0
    new_k = heads if gqa else (kv_heads if rope else 0)
    new_v = heads if gqa else 0
    fused = heads + 2 * kv_heads if not (new_q and new_k and new_v) else 0  # a saved view keeps it alive
    return cfg.dh * (fused + new_q + new_k) + cfg.vdh * new_v


def logits_bytes(cfg: ModelConfig, batch_size: int, seq_len: int, precision: Precision | str, tp: int = 1) -> int:
    """Logits + what cross-entropy keeps + their gradient; vocab-parallel under TP."""
    p = resolve_precision(precision)
    return ceil_div(logit_bytes_per_element(p) * batch_size * seq_len * cfg.vocab_size, tp)


def weight_cast_bytes(precision: Precision | str, params_on_gpu: int) -> int:
    """torch.autocast caches a 16-bit copy of each matmul weight for the forward and
    backward of a step (formulas.md §3.1: ≤ 2 B/param). Zero without autocast."""
    p = resolve_precision(precision)
    if p.weight_copy_bytes is not None:
        return params_on_gpu * p.weight_copy_bytes
    return params_on_gpu * p.activation_bytes if is_autocast(p) else 0
