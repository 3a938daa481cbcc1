"""Phase-aware peak: which memory terms are alive at the high point of each phase of a step.

The terms never all coexist. With ``zero_grad(set_to_none=True)`` no gradient
exists during the forward; the peak of a step is the largest of
  forward end:    weights + optimizer + casts + all saved activations + logit buffers;
  loss backward:  the same with cross-entropy's gradient buffers (our measured CPU peak);
  backward:       weights + optimizer + growing gradients + the activations not yet freed
                  (head's backward, top layer, and the end: all gradients + the embedding's);
  optimizer step: weights + optimizer + gradients + foreach AdamW's sqrt(v) temporary.
With grad_accum > 1 the gradients of earlier micro-batches exist in every phase.
The sizes of the terms come from ``estimator.memory_terms``.
"""

from __future__ import annotations

from estimator.memory_terms import StageParams, ceil_div, loss_bytes, optimizer_bytes_per_param, zero_group
from estimator.model_config import ModelConfig
from estimator.precision import Precision
from estimator.setup import TrainSetup

# Per-logit bytes of the profiled GPT (it returns only the loss, so nobody keeps the logits):
# forward end: the head's output (+ autocast's fp32 copy for cross_entropy) + the log-softmax it saves;
# loss backward: the log-softmax + its incoming gradient + the outgoing one, all in the loss dtype.
LOGITS_RETURNED = False  # nanoGPT-style code that returns the logits keeps the head's output too


def logit_phase_bytes(p: Precision) -> dict[str, int]:
    """Bytes per logit element alive at the end of the forward and at the start of the backward."""
    ce = loss_bytes(p)
    head_out = p.activation_bytes
    cast = 4 if ce > head_out else 0  # cross_entropy's upcast copy of 16-bit logits
    kept = head_out if LOGITS_RETURNED else 0
    return {"forward_end": head_out + cast + ce, "loss_backward": kept + 3 * ce}


def optimizer_transient_bytes(cfg: ModelConfig, p: Precision, params: StageParams, setup: TrainSetup,
                              optimizer_impl: str) -> int:
    """Scratch the optimizer step allocates beside the model states.

    torch's foreach AdamW (``_multi_tensor_adamw``) computes ``sqrt(v)`` for a whole
    parameter group into new tensors (one moment's bytes per parameter); the for-loop
    version does it one tensor at a time (the largest matrix); fused AdamW and SGD
    update in place. Sharded like the optimizer state under ZeRO ≥ 1.
    """
    if setup.optimizer != "adamw" or optimizer_impl == "fused":
        return 0
    moment = min(4, optimizer_bytes_per_param(p, "adamw") // 2)  # fp32 moments, or bf16 ones (pure bf16)
    if optimizer_impl == "for-loop":
        tp = setup.tp
        largest = max(ceil_div(cfg.vocab_size * cfg.d_model, tp), ceil_div(cfg.d_model * cfg.ffn, tp),
                      ceil_div(cfg.d_model * (cfg.q_width + 2 * cfg.kv_width), tp))
        return moment * largest
    n = params.total
    return moment * (ceil_div(n, zero_group(setup)) if setup.zero >= 1 else n)


def phase_terms(cfg: ModelConfig, setup: TrainSetup, p: Precision, b: int, s: int, params: StageParams,
            first: bool, last: bool, m: dict, optimizer_impl: str) -> dict[str, dict[str, int]]:
    """What is alive at the high point of each phase of a step, by term (see the module docstring)."""
    g = m["gradients"]
    grad_share = g / (params.total * p.grad_bytes) if params.total else 0.0  # < 1 under ZeRO-2/3
    token_grad = int(ceil_div(cfg.vocab_size * cfg.d_model, setup.tp) * p.grad_bytes * grad_share)
    layer_grad = int(params.largest_layer * p.grad_bytes * grad_share)
    early = g if setup.grad_accum > 1 else 0  # earlier micro-batches' gradients accumulate
    acts = m["layers"] + m["buffer"]
    logits = b * s * cfg.vocab_size
    per_logit = logit_phase_bytes(p)
    ce = loss_bytes(p)
    logit_grad = ce + (p.activation_bytes if ce > p.activation_bytes else 0)  # + its 16-bit cast

    def phase(grads: int, activations: int, logit_buffers: int = 0, transient: int = 0,
              casts: bool = True) -> dict[str, int]:
        return {"weights": m["weights"], "optimizer": m["optimizer"], "gradients": grads,
                "weight_casts": m["casts"] if casts else 0, "zero3_buffers": m["zero3"] if casts else 0,
                "activations": activations, "logit_buffers": logit_buffers, "transient": transient}

    out: dict[str, dict[str, int]] = {}
    if last:
        head = m["head"]
        out["forward_end"] = phase(early, acts + head, ceil_div(per_logit["forward_end"] * logits, setup.tp))
        out["loss_backward"] = phase(early, acts + head, ceil_div(per_logit["loss_backward"] * logits, setup.tp))
        out["head_backward"] = phase(max(early, token_grad), acts + head, ceil_div(logit_grad * logits, setup.tp))
    else:
        out["forward_end"] = phase(early, acts)
    out["backward_top"] = phase(max(early, (token_grad if last else 0) + layer_grad), acts)
    # End of backward: all gradients; the other in-flight micro-batches' activations; the first layer's
    # own activations, or a tied embedding's dense gradient + the sum it is accumulated into.
    others = m["layers"] - params.layers * m["per_layer"]
    tied = 2 * token_grad if first and last and cfg.tied_embeddings else 0
    own = m["per_layer"] + m["buffer"]
    out["backward_end"] = phase(g, others + (own if own >= tied else 0), transient=tied if tied > own else 0,
                                casts=False)
    out["optimizer_step"] = phase(g, 0, transient=optimizer_transient_bytes(cfg, p, params, setup, optimizer_impl),
                                  casts=False)
    return out
