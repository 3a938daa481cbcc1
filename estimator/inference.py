"""Inference: weights at 16/8/4 bits, the KV cache, prefill and decode latency.

Prefill (the whole prompt in one forward) is compute-bound; decode (one token
per sequence per step) is memory-bound until the batch is large: each step
reads every weight once and the whole KV cache once. Both use the same
per-layer roofline as training (``estimator.step_time.roofline``).

Weight-only quantisation: matmul weights of the blocks are stored at
``weight_bits`` (group scales ignored); embeddings, head, norms, biases and
the router stay 16-bit; matmuls still run at the precision's 16-bit peak
(dequantise-then-multiply), as in llm-analysis' w4a16/w8a16 regimes. The
dequantisation is work of its own: each quantised weight costs
``DEQUANT_OPS[bits]`` CUDA-core instructions per kernel call, at the chip's
non-tensor fp32 instruction rate, *added* to the weight read (published
weight-only decode does not hide it: gpt-fast's int8 / int4 Llama-2-7B
decode moves 1,069 / 863 GB/s where bf16 moves 1,397, README @0f925b5).

Tensor-parallel decode pays two all-reduces of b·h activations per layer,
timed by ``estimator.communication`` (NCCL's LL protocol for small messages).
"""

from __future__ import annotations

from estimator.errors import ConfigError
from estimator.flops import forward_breakdown
from estimator.hardware import HardwareSpec
from estimator.max_batch import largest_fitting
from estimator.memory_terms import activation_bytes_per_layer, is_autocast, residual_bytes, stage_params
from estimator.model_config import ModelConfig
from estimator.params import count_params
from estimator.precision import Precision, get_precision
from estimator.setup import TrainSetup
from estimator.communication import collective_seconds
from estimator.gpu_kernels import large_gemm_efficiency
from estimator.step_time import roofline

WEIGHT_BITS = (32, 16, 8, 4)
UNQUANTIZED_BYTES = 2  # embeddings, head, norms, biases, router
LOGITS_BYTES = 4  # fp32 logits of the last position only (logits_to_keep=1 / vLLM)
DEFAULT_PROMPT_LEN = 512
DEFAULT_GEN_LEN = 128
ACTIVATION_TRAFFIC = 2
# CUDA-core instructions to turn one quantised weight into a 16-bit operand inside the GEMM kernel:
# int8 (per-channel scale): convert + scale multiply; int4 (grouped scale and zero): unpack (shift/mask)
# + convert + one fused scale-and-zero multiply-add. Counted from the kernels' structure, not fitted.
DEQUANT_OPS = {8: 2, 4: 3}


def dequant_seconds(quantized_params: float, weight_bits: int, hardware: HardwareSpec) -> float:
    """CUDA-core time to dequantise ``quantized_params`` weights once: ops per weight over the chip's
    instruction rate (its fp32 non-tensor FLOP/s / 2: an FMA counts 2 FLOPs). Zero for 16/32-bit weights
    or a chip without an fp32 figure."""
    ops = DEQUANT_OPS.get(weight_bits, 0)
    fp32 = hardware.peak("fp32")
    if not ops or not fp32:
        return 0.0
    return quantized_params * ops / (fp32 / 2)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def kv_cache_bytes(cfg: ModelConfig, batch_size: int, context_len: int, kv_bytes: int = 2,
                   tp: int = 1, pp: int = 1) -> int:
    """2 (K and V) · layers · b · s · g · d_h · bytes on one GPU; KV heads split by TP
    (at least one per GPU), layers by PP."""
    layers = _cdiv(cfg.n_layers, pp)
    return layers * batch_size * context_len * cfg.kv_cache_width(tp) * kv_bytes


def kv_cache_bytes_per_token(cfg: ModelConfig, kv_bytes: int = 2) -> int:
    return kv_cache_bytes(cfg, 1, 1, kv_bytes)


def inference_weight_bytes(cfg: ModelConfig, weight_bits: int = 16, tp: int = 1, pp: int = 1) -> dict[str, int]:
    """Weight bytes on the busiest GPU: block matmuls at ``weight_bits``, the rest 16-bit."""
    if weight_bits not in WEIGHT_BITS:
        raise ConfigError(f"weight-bits must be one of {', '.join(map(str, WEIGHT_BITS))}, got {weight_bits!r}")
    bd = count_params(cfg).breakdown
    unq_per_layer = bd["attention/ln"] + bd["mlp/ln"] + bd["mlp/router"]
    best = None
    for params in stage_params(cfg, tp, pp).values():
        matmul = params.layers * (params.largest_layer - unq_per_layer)
        rest = params.total - matmul
        other_bytes = 4 if weight_bits == 32 else UNQUANTIZED_BYTES
        out = {"quantized_params": matmul, "other_params": rest,
               "quantized": _cdiv(matmul * weight_bits, 8), "other": rest * other_bytes}
        out["total"] = out["quantized"] + out["other"]
        if best is None or out["total"] > best["total"]:
            best = out
    return best


def inference_activation_bytes(cfg: ModelConfig, batch_size: int, tokens: int, context_len: int,
                               p: Precision, tp: int = 1, flash_attention: bool = True) -> int:
    """Transient working set of one block (buffers reused layer to layer):
    residual, norm output, and the wider of attention and MLP."""
    a = p.activation_bytes
    bt = batch_size * tokens
    heads = _cdiv(cfg.n_heads, tp)
    kv = _cdiv(cfg.kv_heads, tp)
    attn = a * bt * cfg.dh * (2 * heads + 2 * kv)  # q, k, v, output
    if not flash_attention:
        attn += (a + (4 if is_autocast(p) else 0)) * batch_size * heads * tokens * context_len
    hidden = 3 if cfg.gated else 2
    mlp = a * bt * _cdiv(cfg.ffn, tp) * hidden * cfg.top_k
    stream = (residual_bytes(p) + a) * bt * cfg.d_model
    return stream + max(attn, mlp)


def inference_logits_bytes(cfg: ModelConfig, batch_size: int, tp: int = 1) -> int:
    """fp32 logits of the last position of each sequence (vocab-parallel under TP)."""
    return LOGITS_BYTES * batch_size * _cdiv(cfg.vocab_size, tp)


def _decode_block_flops(cfg: ModelConfig, context_len: int) -> int:
    """Forward FLOPs of one block for one new token attending to ``context_len`` keys."""
    one = forward_breakdown(cfg, 1)
    return one["block"] - one["attention/scores"] - one["attention/reduce"] + 4 * context_len * cfg.q_width


def infer_estimate(cfg: ModelConfig, hardware: HardwareSpec, setup: TrainSetup, peak_flops: float | None,
                   weight_bits: int = 16, prompt_len: int = DEFAULT_PROMPT_LEN, gen_len: int = DEFAULT_GEN_LEN,
                   memory_limit: int | None = None, gpu_hour_cost: float | None = None) -> dict:
    """Memory, prefill and decode for ``setup.batch_size`` sequences per model replica."""
    p = get_precision(setup.precision)
    b, tp, pp = setup.batch_size, setup.tp, setup.pp
    if setup.cp > 1:
        raise ConfigError(f"--cp {setup.cp}: context parallel is a training layout; inference here uses --tp/--pp")
    if setup.vpp > 1:
        raise ConfigError(f"--vpp {setup.vpp}: interleaved pipeline stages are a training schedule; drop --vpp")
    kv_bytes = p.activation_bytes
    ctx = prompt_len + gen_len
    weights = inference_weight_bytes(cfg, weight_bits, tp, pp)

    def total_at(batch: int) -> int:
        return (weights["total"] + kv_cache_bytes(cfg, batch, ctx, kv_bytes, tp, pp)
                + inference_activation_bytes(cfg, batch, prompt_len, ctx, p, tp, setup.flash_attention)
                + inference_logits_bytes(cfg, batch, tp))

    kv = kv_cache_bytes(cfg, b, ctx, kv_bytes, tp, pp)
    acts = inference_activation_bytes(cfg, b, prompt_len, ctx, p, tp, setup.flash_attention)
    logits = inference_logits_bytes(cfg, b, tp)
    out: dict = {
        "memory": {"weights": weights["total"], "gradients": 0, "optimizer": 0, "activations": acts,
                   "logits": logits, "kv_cache": kv, "total": weights["total"] + kv + acts + logits,
                   "kv_cache_per_token": kv_cache_bytes_per_token(cfg, kv_bytes),  # whole model
                   "weights_breakdown": weights},
        "max_batch_size": largest_fitting(total_at, memory_limit) if memory_limit is not None else None,
        "prompt_len": prompt_len, "gen_len": gen_len,
        "flops": {  # whole model, per replica; LM head on the last position only
            "prefill": b * (cfg.n_layers * forward_breakdown(cfg, prompt_len)["block"]
                            + 2 * cfg.d_model * cfg.vocab_size),
            "decode_per_step": b * (cfg.n_layers * _decode_block_flops(cfg, round(prompt_len + gen_len / 2))
                                    + 2 * cfg.d_model * cfg.vocab_size),
        },
    }
    if peak_flops is None:
        out["prefill"] = {"time_s": None, "tokens_per_s": None, "bound": None}
        out["decode"] = {"time_s": None, "tokens_per_s": None, "bound": None}
        return out

    eff = setup.efficiency
    peak = peak_flops * large_gemm_efficiency(hardware, eff.flops)
    bw = hardware.memory_bandwidth * eff.memory
    layer_weight_bytes = weights["quantized"] / _cdiv(cfg.n_layers, pp)
    dequant = dequant_seconds(weights["quantized_params"] / _cdiv(cfg.n_layers, pp), weight_bits, hardware)
    head_bytes = _cdiv(cfg.vocab_size * cfg.d_model, tp) * (4 if weight_bits == 32 else UNQUANTIZED_BYTES)
    head_flops = 2 * b * cfg.d_model * cfg.vocab_size / tp
    a = p.activation_bytes

    def hops(tokens: int) -> float:  # activations handed from stage to stage (neighbours span 2·tp GPUs)
        return (pp - 1) * collective_seconds("p2p", b * tokens * cfg.d_model * a, 2, hardware, 2 * tp,
                                             eff.interconnect)

    def tp_all_reduce(tokens: int) -> float:  # one of the two per layer (attention out, MLP down)
        return collective_seconds("all_reduce", b * tokens * cfg.d_model * a, tp, hardware, tp, eff.interconnect)

    # Prefill: every layer of every stage in turn (latency, not pipelined throughput).
    fwd = forward_breakdown(cfg, prompt_len)
    acts_layer = activation_bytes_per_layer(cfg, b, prompt_len, p, tp=tp, flash_attention=setup.flash_attention)
    kv_write = b * prompt_len * cfg.kv_cache_width(tp) * kv_bytes  # one layer's K and V
    layer_t, prefill_bound = roofline(b * fwd["block"] / tp,
                                      layer_weight_bytes + ACTIVATION_TRAFFIC * acts_layer["total"] + kv_write,
                                      peak, bw)
    head_t, _ = roofline(head_flops, head_bytes, peak, bw)  # last position only, prefill and decode alike
    prefill = cfg.n_layers * (layer_t + dequant + 2 * tp_all_reduce(prompt_len)) + head_t + hops(prompt_len)

    # Decode at the mean context over the generation.
    mean_ctx = prompt_len + gen_len / 2
    kv_read = b * mean_ctx * cfg.kv_cache_width(tp) * kv_bytes
    layer_d, decode_bound = roofline(b * _decode_block_flops(cfg, round(mean_ctx)) / tp,
                                     layer_weight_bytes + kv_read, peak, bw)
    tp_comm_d = 2 * tp_all_reduce(1)
    decode = cfg.n_layers * (layer_d + dequant + tp_comm_d) + head_t + hops(1)

    gpus = tp * pp
    out["prefill"] = {"time_s": prefill, "tokens_per_s": b * prompt_len / prefill, "bound": prefill_bound}
    out["decode"] = {"time_s": decode, "tokens_per_s": b / decode, "total_time_s": gen_len * decode,
                     "mean_context": mean_ctx, "bound": decode_bound,
                     "dequant_s": cfg.n_layers * dequant, "tp_comm_s": cfg.n_layers * tp_comm_d}
    out["latency_s"] = prefill + gen_len * decode
    if gpu_hour_cost is not None:
        def per_1k(tokens_per_s: float) -> float:
            return 1000 * gpu_hour_cost * gpus / 3600 / tokens_per_s
        out["cost"] = {"gpu_hour_cost": gpu_hour_cost, "gpus": gpus,
                       "prefill_per_1k_tokens": per_1k(out["prefill"]["tokens_per_s"]),
                       "decode_per_1k_tokens": per_1k(out["decode"]["tokens_per_s"])}
    return out


def inference_assumptions(weight_bits: int, prompt_len: int, gen_len: int, p: Precision) -> dict[str, object]:
    return {
        "infer.weight_bits": weight_bits,
        "infer.quantization": "block matmul weights at weight_bits, group scales ignored; embeddings, head, "
                              "norms, biases and router 16-bit; matmuls at the 16-bit peak"
                              + (f"; dequantisation {DEQUANT_OPS[weight_bits]} CUDA-core ops per weight per "
                                 "kernel at the fp32 instruction rate, added to the weight read"
                                 if weight_bits in DEQUANT_OPS else ""),
        "infer.tp_all_reduce": "2 per layer of b·h activations, NCCL cost model (estimator.communication)",
        "infer.kv_cache_bytes_per_element": p.activation_bytes,
        "infer.prompt_len": prompt_len,
        "infer.gen_len": gen_len,
        "infer.kv_cache": "2 · layers · b · (prompt_len + gen_len) · kv_heads · head_dim · bytes, preallocated",
        "infer.logits": f"last position only, fp32 ({LOGITS_BYTES} B per vocab entry)",
        "infer.decode": "latency at the mean context prompt_len + gen_len/2: reads all weights and the KV "
                        "cache once per step, roofline against compute",
        "infer.prefill": "one forward over the prompt, per-layer roofline, LM head on the last position",
        "infer.activations": "one block's transient working set (buffers reused across layers)",
    }
