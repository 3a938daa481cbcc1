"""Training memory per GPU, in bytes: model states, activations, logits.

Model states follow the ZeRO paper (Rajbhandari et al. 2020, §3.1): weights,
gradients and optimizer state per parameter come from the ``Precision``;
ZeRO stage 1/2/3 divides optimizer / +gradients / +weights by the
data-parallel size. Ψ is the parameter count on one model-parallel rank
(tensor-, pipeline- and expert-sharded), never the whole model.

Activations follow Korthikanti et al. 2022 (Table 2), term by term, so each
variant is the same code with a switch: tensor parallel, sequence parallel,
selective and full recompute, flash attention (no s² terms, a logsumexp
instead), and dropout. Our profiled GPT has no dropout, so by default its
masks and dropout outputs do not exist: 32·sbh + 2·a·s²·b per layer with
uniform 16-bit activations instead of 34·sbh + 5·a·s²·b. GQA and SwiGLU use
the LLaMA-style derived form (reference/formulas.md §3.2).

Peak, phase by phase (the default): the terms never all coexist. With
``zero_grad(set_to_none=True)`` no gradient exists during the forward; the
peak of a step is the largest of
  forward end:    weights + optimizer + casts + all saved activations + logit buffers;
  loss backward:  the same with cross-entropy's gradient buffers (our measured CPU peak);
  backward:       weights + optimizer + growing gradients + the activations not yet freed
                  (head's backward, top layer, and the end: all gradients + the embedding's);
  optimizer step: weights + optimizer + gradients + foreach AdamW's sqrt(v) temporary.
With grad_accum > 1 the gradients of earlier micro-batches exist in every phase.
``peak="sum"`` keeps the previous figure, every term co-resident; it is no bound
either way (it misses the optimizer's scratch and counts 10 B per logit under
autocast where the loss backward holds 12).

Implementation-dependent choices (the residual stream dtype under autocast,
the bytes the loss keeps, autocast's cached bf16 weight copies, CPU autocast
keeping softmax in bf16) are named here and reported by ``memory_assumptions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig
from estimator.params import count_params
from estimator.precision import Precision, get_precision
from estimator.setup import TrainSetup

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


# Per-logit bytes of the profiled GPT (it returns only the loss, so nobody keeps the logits):
# forward end: the head's output (+ autocast's fp32 copy for cross_entropy) + the log-softmax it saves;
# loss backward: the log-softmax + its incoming gradient + the outgoing one, all in the loss dtype.
LOGITS_RETURNED = False  # nanoGPT-style code that returns the logits keeps the head's output too
PEAK_MODELS = ("phases", "sum")
DEVICE_KINDS = ("gpu", "cpu")
OPTIMIZER_IMPLS = ("foreach", "fused", "for-loop")


def _cdiv(a: int, b: int) -> int:
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


def logit_phase_bytes(p: Precision) -> dict[str, int]:
    """Bytes per logit element alive at the end of the forward and at the start of the backward."""
    ce = loss_bytes(p)
    head_out = p.activation_bytes
    cast = 4 if ce > head_out else 0  # cross_entropy's upcast copy of 16-bit logits
    kept = head_out if LOGITS_RETURNED else 0
    return {"forward_end": head_out + cast + ce, "loss_backward": kept + 3 * ce}


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


def model_state_bytes(n_params: int, precision: Precision | str, dp: int = 1, zero: int = 0,
                      optimizer: str = "adamw") -> dict[str, int]:
    """Weights, gradients, optimizer state of ``n_params`` (Ψ on one model-parallel
    rank) under ZeRO ``zero`` over ``dp`` ranks; shards rounded up."""
    p = resolve_precision(precision)
    weights = n_params * p.weight_bytes
    grads = n_params * p.grad_bytes
    opt = n_params * optimizer_bytes_per_param(p, optimizer)
    return {
        "weights": _cdiv(weights, dp) if zero >= 3 else weights,
        "gradients": _cdiv(grads, dp) if zero >= 2 else grads,
        "optimizer": _cdiv(opt, dp) if zero >= 1 else opt,
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


def _layer_params(cfg: ModelConfig, tp: int, ep: int) -> tuple[int, int]:
    """(dense, expert) parameters of one block on one GPU: Megatron TP splits
    the matmuls, replicates norms and the row-parallel biases; KV heads are
    replicated when tp exceeds them (at least one per GPU)."""
    h, dh = cfg.d_model, cfg.dh
    bd = count_params(cfg).breakdown
    qkv_in = h + (1 if cfg.qkv_bias else 0)
    kv_per_gpu = _cdiv(cfg.kv_heads, tp)
    attn = _cdiv(qkv_in * cfg.q_width, tp) + 2 * qkv_in * kv_per_gpu * dh
    attn += _cdiv(cfg.q_width * h, tp) + (h if cfg.proj_bias else 0)
    per_expert = (bd["mlp/ffw"] + bd["mlp/proj"]) // cfg.n_experts
    mlp_bias_out = h if cfg.mlp_bias else 0
    expert_tp = _cdiv(per_expert - mlp_bias_out, tp) + mlp_bias_out
    norms = bd["attention/ln"] + bd["mlp/ln"]
    dense = attn + norms + bd["mlp/router"]
    if cfg.is_moe:
        return dense, _cdiv(cfg.n_experts, ep) * expert_tp
    return dense + expert_tp, 0


def stage_params(cfg: ModelConfig, tp: int = 1, pp: int = 1, ep: int = 1) -> dict[str, StageParams]:
    """Parameters per GPU on the first and last pipeline stage (the same stage when pp = 1).

    The first stage holds the embeddings, the last the final norm and the head;
    with pp > 1 a tied head keeps a copy of the token table on the last stage
    (Megatron). Layers per stage are rounded up: the busiest stage counts.
    """
    bd = count_params(cfg).breakdown
    layers = _cdiv(cfg.n_layers, pp)
    dense_layer, expert_layer = _layer_params(cfg, tp, ep)
    token = _cdiv(bd["embedding/token"], tp)
    embed = token + bd["embedding/position"]
    head = token if (not cfg.tied_embeddings or pp > 1) else 0
    tail = bd["ln_f"] + head
    largest = dense_layer + expert_layer
    first = StageParams(embed + layers * dense_layer + (tail if pp == 1 else 0),
                        layers * expert_layer, layers, largest)
    last = first if pp == 1 else StageParams(tail + layers * dense_layer, layers * expert_layer, layers, largest)
    return {"first": first, "last": last}


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
        return _cdiv(n, tp)

    def rest(n: int) -> int:
        return _cdiv(n, unsharded)

    if recompute == "full":
        return {"layer_input": rest(r * sbh), "total": rest(r * sbh)}

    out: dict[str, int] = {}
    kv_per_gpu = _cdiv(cfg.kv_heads, tp)
    heads_per_gpu = _cdiv(cfg.n_heads, tp)
    out["attention/norm_input"] = rest(r * sbh)
    out["attention/qkv_input"] = rest(a * sbh)
    out["attention/qkv"] = a * sb * cfg.dh * (heads_per_gpu + 2 * kv_per_gpu)
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
    out["attention/proj_input"] = a * sb * heads_per_gpu * cfg.dh
    out["attention/dropout_mask"] = rest(DROPOUT_MASK_BYTES * sbh) if dropout else 0

    k = cfg.top_k  # each token's hidden state is dispatched to k experts
    hidden_tensors = 4 if cfg.mlp == "swiglu" else 2  # swiglu: gate, up, silu(gate), product; gelu: in, out
    out["mlp/norm_input"] = rest(r * sbh)
    out["mlp/fc_input"] = rest(a * sbh) * k
    out["mlp/hidden"] = hidden_tensors * a * sb * split(f) * k
    out["mlp/router"] = 4 * sb * cfg.n_experts if cfg.is_moe else 0  # fp32 router probabilities
    out["mlp/dropout_mask"] = rest(DROPOUT_MASK_BYTES * sbh) if dropout else 0
    out["total"] = sum(out.values())
    return out


def head_activation_bytes(cfg: ModelConfig, batch_size: int, seq_len: int, precision: Precision | str,
                          tp: int = 1, sp: bool = False) -> int:
    """Final norm input and the LM head's input (the logits are counted apart)."""
    p = resolve_precision(precision)
    sbh = batch_size * seq_len * cfg.d_model
    return _cdiv((residual_bytes(p) + p.activation_bytes) * sbh, tp if sp else 1)


def logits_bytes(cfg: ModelConfig, batch_size: int, seq_len: int, precision: Precision | str, tp: int = 1) -> int:
    """Logits + what cross-entropy keeps + their gradient; vocab-parallel under TP."""
    p = resolve_precision(precision)
    return _cdiv(logit_bytes_per_element(p) * batch_size * seq_len * cfg.vocab_size, tp)


def weight_cast_bytes(precision: Precision | str, params_on_gpu: int) -> int:
    """torch.autocast caches a 16-bit copy of each matmul weight for the forward and
    backward of a step (formulas.md §3.1: ≤ 2 B/param). Zero without autocast."""
    p = resolve_precision(precision)
    return params_on_gpu * p.activation_bytes if is_autocast(p) else 0


# --------------------------------------------------------------- totals

@dataclass(frozen=True)
class TrainingMemory:
    """Bytes on the busiest GPU (the larger of the first and last pipeline stage)."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    weight_casts: int
    zero3_buffers: int
    stage: str
    breakdown: dict[str, int] = field(default_factory=dict)
    phase_terms: dict[str, dict[str, int]] = field(default_factory=dict)  # alive at each phase's high point
    peak_model: str = "phases"  # "phases": the largest phase; "sum": every term co-resident

    @property
    def phases(self) -> dict[str, int]:
        """Bytes alive at each phase's high point."""
        return {name: sum(terms.values()) for name, terms in self.phase_terms.items()}

    @property
    def sum_of_terms(self) -> int:
        """The previous figure: every term at once (gradients beside all activations)."""
        return (self.weights + self.gradients + self.optimizer + self.activations + self.logits
                + self.weight_casts + self.zero3_buffers)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phases.get) if self.phases else "sum"

    @property
    def total(self) -> int:
        if self.peak_model == "sum" or not self.phases:
            return self.sum_of_terms
        return max(self.phases.values())

    def to_dict(self) -> dict:
        return {
            "weights": self.weights, "gradients": self.gradients, "optimizer": self.optimizer,
            "activations": self.activations, "logits": self.logits, "weight_casts": self.weight_casts,
            "zero3_buffers": self.zero3_buffers, "total": self.total, "stage": self.stage,
            "peak_model": self.peak_model, "peak_phase": self.peak_phase if self.peak_model == "phases" else "sum",
            "at_peak": dict(self.phase_terms.get(self.peak_phase, {})) if self.peak_model == "phases" else None,
            "phases": self.phases, "sum_of_terms": self.sum_of_terms,
            "breakdown": dict(self.breakdown),
        }


def check_parallel(cfg: ModelConfig, setup: TrainSetup) -> None:
    """Parallel layouts that cannot exist raise ConfigError."""
    if cfg.n_heads % setup.tp:
        raise ConfigError(f"tp ({setup.tp}) must divide the attention heads ({cfg.n_heads})")
    if setup.pp > cfg.n_layers:
        raise ConfigError(f"pp ({setup.pp}) cannot exceed the layers ({cfg.n_layers})")
    if setup.sp and setup.tp == 1:
        raise ConfigError("sequence parallel (--sp) needs tensor parallel: set --tp > 1")
    if setup.ep > 1:
        if not cfg.is_moe:
            raise ConfigError(f"expert parallel (--ep {setup.ep}) needs an MoE model; {cfg.name} is dense")
        if cfg.n_experts % setup.ep:
            raise ConfigError(f"ep ({setup.ep}) must divide the experts ({cfg.n_experts})")
        if setup.dp % setup.ep:
            raise ConfigError(f"ep ({setup.ep}) must divide dp ({setup.dp}): expert groups are carved out of DP")


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
        largest = max(_cdiv(cfg.vocab_size * cfg.d_model, tp), _cdiv(cfg.d_model * cfg.ffn, tp),
                      _cdiv(cfg.d_model * (cfg.q_width + 2 * cfg.kv_width), tp))
        return moment * largest
    n = params.total
    return moment * (_cdiv(n, setup.dp) if setup.zero >= 1 else n)


def _phases(cfg: ModelConfig, setup: TrainSetup, p: Precision, b: int, s: int, params: StageParams,
            first: bool, last: bool, m: dict, optimizer_impl: str) -> dict[str, dict[str, int]]:
    """What is alive at the high point of each phase of a step, by term (see the module docstring)."""
    g = m["gradients"]
    grad_share = g / (params.total * p.grad_bytes) if params.total else 0.0  # < 1 under ZeRO-2/3
    token_grad = int(_cdiv(cfg.vocab_size * cfg.d_model, setup.tp) * p.grad_bytes * grad_share)
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
        out["forward_end"] = phase(early, acts + head, _cdiv(per_logit["forward_end"] * logits, setup.tp))
        out["loss_backward"] = phase(early, acts + head, _cdiv(per_logit["loss_backward"] * logits, setup.tp))
        out["head_backward"] = phase(max(early, token_grad), acts + head, _cdiv(logit_grad * logits, setup.tp))
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


def _stage_memory(cfg: ModelConfig, setup: TrainSetup, p: Precision, batch_size: int, seq_len: int,
                  params: StageParams, first: bool, last: bool, peak: str, device_kind: str,
                  optimizer_impl: str) -> TrainingMemory:
    dp, zero = setup.dp, setup.zero
    dense = model_state_bytes(params.dense, p, dp, zero, setup.optimizer)
    expert = model_state_bytes(params.expert, p, max(dp // setup.ep, 1), zero, setup.optimizer)
    states = {k: dense[k] + expert[k] for k in dense}

    kw = dict(tp=setup.tp, sp=setup.sp, flash_attention=setup.flash_attention, device_kind=device_kind)
    per_layer = activation_bytes_per_layer(cfg, batch_size, seq_len, p, recompute=setup.recompute, **kw)["total"]
    # 1F1B: stage i holds (pp - i) micro-batches in flight; the first holds min(pp, m).
    in_flight = min(setup.pp, setup.grad_accum) if first else 1
    layers = params.layers * per_layer * in_flight
    buffer = 0
    if setup.recompute != "none":  # backward re-materialises one layer at a time
        full = activation_bytes_per_layer(cfg, batch_size, seq_len, p, recompute="none", **kw)["total"]
        buffer = full - per_layer
    head = head_activation_bytes(cfg, batch_size, seq_len, p, setup.tp, setup.sp) if last else 0
    logits = logits_bytes(cfg, batch_size, seq_len, p, setup.tp) if last else 0
    sharded = zero == 3 and dp > 1
    # ZeRO-3/FSDP gathers one block at a time in the compute dtype (current + prefetched); autocast's
    # cached copies are then of gathered blocks only, which that buffer already counts.
    zero3 = 2 * params.largest_layer * p.activation_bytes if sharded else 0
    casts = 0 if sharded else weight_cast_bytes(p, params.total)
    breakdown = {
        "params_on_gpu": params.total,
        "layers_on_gpu": params.layers,
        "micro_batches_in_flight": in_flight,
        "activations/per_layer": per_layer,
        "activations/layers": layers,
        "activations/recompute_buffer": buffer,
        "activations/head": head,
        "optimizer_transient": optimizer_transient_bytes(cfg, p, params, setup, optimizer_impl),
    }
    parts = dict(states, casts=casts, zero3=zero3, layers=layers, buffer=buffer, head=head, per_layer=per_layer)
    return TrainingMemory(
        weights=states["weights"], gradients=states["gradients"], optimizer=states["optimizer"],
        activations=layers + buffer + head, logits=logits, weight_casts=casts, zero3_buffers=zero3,
        stage="first" if first and not last else ("last" if last and not first else "only"),
        breakdown=breakdown, peak_model=peak,
        phase_terms=_phases(cfg, setup, p, batch_size, seq_len, params, first, last, parts, optimizer_impl),
    )


def training_memory(cfg: ModelConfig, setup: TrainSetup, batch_size: int | None = None,
                    seq_len: int | None = None, *, peak: str = "phases", device_kind: str = "gpu",
                    optimizer_impl: str = "foreach") -> TrainingMemory:
    """Per-GPU training memory of the busiest pipeline stage at micro-batch ``batch_size``.

    ``peak``: "phases" (the largest phase of the step) or "sum" (every term at once, the
    previous figure). ``device_kind``: "cpu" for CPU autocast's bf16 softmax. ``optimizer_impl``:
    foreach (torch's default on GPU; the profiler's on CPU), fused or for-loop AdamW.
    """
    check_parallel(cfg, setup)
    for name, value, allowed in (("peak", peak, PEAK_MODELS), ("device_kind", device_kind, DEVICE_KINDS),
                                 ("optimizer_impl", optimizer_impl, OPTIMIZER_IMPLS)):
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    p = get_precision(setup.precision)
    b = setup.batch_size if batch_size is None else batch_size
    s = seq_len or setup.seq_len or cfg.context_length
    stages = stage_params(cfg, setup.tp, setup.pp, setup.ep)
    kw = dict(peak=peak, device_kind=device_kind, optimizer_impl=optimizer_impl)
    if setup.pp == 1:
        return _stage_memory(cfg, setup, p, b, s, stages["first"], True, True, **kw)
    first = _stage_memory(cfg, setup, p, b, s, stages["first"], True, False, **kw)
    last = _stage_memory(cfg, setup, p, b, s, stages["last"], False, True, **kw)
    return first if first.total >= last.total else last


def memory_assumptions(setup: TrainSetup, device_kind: str = "gpu", peak: str = "phases",
                       optimizer_impl: str = "foreach") -> dict[str, object]:
    p = get_precision(setup.precision)
    cpu_softmax = device_kind == "cpu" and is_autocast(p)
    return {
        "memory.bytes_per_param": {
            "weights": p.weight_bytes, "gradients": p.grad_bytes,
            "optimizer": optimizer_bytes_per_param(p, setup.optimizer),
            "regime": f"{p.name}: {p.description}; optimizer {setup.optimizer}",
        },
        "memory.activations": (
            "Korthikanti et al. 2022 per-layer terms, no dropout (the profiled GPT has none), "
            f"{p.activation_bytes}-byte activations, norm inputs in the residual dtype ({residual_bytes(p)} B); "
            + ("flash attention: logsumexp (fp32) instead of s² probabilities" if setup.flash_attention
               else "eager attention: softmax probabilities kept"
               + (" in bf16 (CPU autocast leaves softmax in bf16)" if cpu_softmax
                  else " in fp32 plus a 16-bit copy" if is_autocast(p) else ""))
        ),
        "memory.logits_bytes_per_element": logit_bytes_per_element(p),
        "memory.logits": "logits + log-softmax kept by cross_entropy + their gradient, all positions (the term "
                         "as the sum counts it; memory.at_peak has the buffers alive at the peak)",
        "memory.weight_casts": "autocast keeps a 16-bit copy of every weight for the step" if is_autocast(p)
        else "none (no autocast)",
        "memory.total": (
            "peak of the step's phases (zero_grad(set_to_none=True): no gradients during the first forward): "
            "forward end, loss backward (log-softmax + its gradient in and out: "
            f"{logit_phase_bytes(p)['loss_backward']} B/logit), head backward, top of backward (head + one layer's "
            "gradients beside all activations), end of backward (all gradients; a tied embedding's dense gradient "
            f"and its sum), optimizer step ({optimizer_impl} AdamW"
            + (": its sqrt(v) scratch)" if optimizer_impl != "fused" else ", in place)") + "; memory.phases lists each"
            if peak == "phases" else
            "sum of all terms: gradients counted as co-resident with all activations (the previous figure)")
            + "; norm statistics, RoPE tables, kernel workspaces and allocator fragmentation not included",
        "memory.peak_model": peak,
        "memory.pipeline": "1F1B: the first stage holds min(pp, grad_accum) micro-batches of its layers in flight",
        "memory.recompute_buffer": "with recompute, backward re-materialises one layer's activations",
        "memory.ddp": "DDP gradient buckets assumed to be views of the gradients (gradient_as_bucket_view)",
        "memory.zero3": "ZeRO-3 gathers two blocks (current + prefetch) in the compute dtype; no autocast copies",
    }
