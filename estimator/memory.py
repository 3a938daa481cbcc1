"""Training memory per GPU, in bytes: the busiest pipeline stage's peak over a step.

Combines the terms (``estimator.memory_terms``: model states under ZeRO,
Korthikanti activations, logits, autocast copies) into a ``TrainingMemory``
whose total is, by default, the largest phase of the step
(``estimator.memory_phases``). Pipeline stages hold the micro-batches (or,
interleaved, the model chunks) in flight of their 1F1B schedule
(``chunks_in_flight``); context parallel keeps s/cp tokens per rank.
``peak="sum"`` keeps the previous figure, every term co-resident; it is no
bound either way (it misses the optimizer's scratch and counts 10 B per logit
under autocast where the loss backward holds 12).
``memory_assumptions`` names every implementation-dependent choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from estimator.errors import ConfigError
from estimator.memory_phases import logit_phase_bytes, optimizer_transient_bytes, phase_terms
from estimator.memory_terms import (
    DEVICE_KINDS,
    OPTIMIZER_IMPLS,
    StageParams,
    activation_bytes_per_layer,
    ceil_div,
    head_activation_bytes,
    is_autocast,
    logit_bytes_per_element,
    logits_bytes,
    model_state_bytes,
    optimizer_bytes_per_param,
    residual_bytes,
    stage_params,
    weight_cast_bytes,
    zero_group,
)
from estimator.model_config import ModelConfig
from estimator.precision import Precision, get_precision
from estimator.setup import TrainSetup


PEAK_MODELS = ("phases", "sum")


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


def check_parallel(cfg: ModelConfig, setup: TrainSetup, seq_len: int | None = None) -> None:
    """Parallel layouts that cannot exist raise ConfigError (``seq_len``: default the setup's, else the
    model's context)."""
    if cfg.n_heads % setup.tp:
        raise ConfigError(f"tp ({setup.tp}) must divide the attention heads ({cfg.n_heads})")
    if setup.pp > cfg.n_layers:
        raise ConfigError(f"pp ({setup.pp}) cannot exceed the layers ({cfg.n_layers})")
    if setup.vpp > 1:
        if setup.pp == 1:
            raise ConfigError(f"--vpp {setup.vpp} (interleaved 1F1B) needs pipeline parallel: set --pp > 1")
        if cfg.n_layers % (setup.pp * setup.vpp):
            raise ConfigError(f"vpp ({setup.vpp}) must divide the layers per pipeline stage: {cfg.n_layers} layers / "
                              f"pp {setup.pp} = {cfg.n_layers / setup.pp:g} per stage do not split into pp x vpp = "
                              f"{setup.pp * setup.vpp} equal model chunks")
    if setup.cp > 1:
        s = seq_len or setup.seq_len or cfg.context_length
        if s % (2 * setup.cp):
            # Megatron's load-balanced causal ring cuts the sequence into 2·cp chunks and gives rank i
            # chunks i and 2cp-1-i, so every rank holds the same share of the causal mask.
            raise ConfigError(f"cp ({setup.cp}) needs a sequence divisible by 2 x cp = {2 * setup.cp} "
                              f"(load-balanced ring attention); seq-len {s} is not")
        if not setup.flash_attention:
            raise ConfigError(f"--cp {setup.cp} needs flash attention: ring attention runs on the fused kernel "
                              "(Megatron/Transformer Engine)")
    if setup.sp and setup.tp == 1:
        raise ConfigError("sequence parallel (--sp) needs tensor parallel: set --tp > 1")
    if setup.ep > 1:
        if not cfg.is_moe:
            raise ConfigError(f"expert parallel (--ep {setup.ep}) needs an MoE model; {cfg.name} is dense")
        if cfg.n_experts % setup.ep:
            raise ConfigError(f"ep ({setup.ep}) must divide the experts ({cfg.n_experts})")
        if setup.dp % setup.ep:
            raise ConfigError(f"ep ({setup.ep}) must divide dp ({setup.dp}): expert groups are carved out of DP")


def chunks_in_flight(setup: TrainSetup, first: bool = True) -> int:
    """Model chunks (``layers / (pp·vpp)`` layers each) whose activations the first (or last) pipeline
    stage holds at its peak, capped by the ``grad_accum · vpp`` chunks of a step.

    1F1B (vpp = 1): stage i holds ``pp − i`` micro-batches (Narayanan et al. 2021 §2.2.1). Interleaved
    1F1B: rank r runs ``2(pp−r−1) + (vpp−1)·pp`` warm-up forwards of model chunks before its first
    backward (Megatron-LM's interleaved schedule, Narayanan et al. 2021 §2.2.2), plus the one in steady
    state. The first stage thus holds ``pp·vpp + pp − 1`` chunks = ``L·(1 + (pp−1)/(pp·vpp))`` layers'
    activations, the factor of Korthikanti et al. 2022 §4.2.3, against ``L`` for plain 1F1B."""
    pp, v, m = setup.pp, setup.vpp, setup.grad_accum
    rank = 0 if first else pp - 1
    if v == 1:
        return min(pp - rank, m)
    return min(2 * (pp - rank - 1) + (v - 1) * pp + 1, m * v)


def _stage_memory(cfg: ModelConfig, setup: TrainSetup, p: Precision, batch_size: int, seq_len: int,
                  params: StageParams, first: bool, last: bool, peak: str, device_kind: str,
                  optimizer_impl: str) -> TrainingMemory:
    dp, zero = zero_group(setup), setup.zero
    dense = model_state_bytes(params.dense, p, dp, zero, setup.optimizer)
    expert = model_state_bytes(params.expert, p, max(dp // setup.ep, 1), zero, setup.optimizer)
    states = {k: dense[k] + expert[k] for k in dense}

    kw = dict(tp=setup.tp, sp=setup.sp, flash_attention=setup.flash_attention, dropout=setup.dropout > 0,
              device_kind=device_kind)
    per_layer = activation_bytes_per_layer(cfg, batch_size, seq_len, p, recompute=setup.recompute, **kw)["total"]
    chunks = chunks_in_flight(setup, first)
    in_flight = ceil_div(chunks, setup.vpp)  # in micro-batches of the whole stage (rounded up)
    layers = params.layers // setup.vpp * per_layer * chunks
    buffer = 0
    if setup.recompute != "none":  # backward re-materialises one layer at a time
        full = activation_bytes_per_layer(cfg, batch_size, seq_len, p, recompute="none", **kw)["total"]
        buffer = full - per_layer
    head = head_activation_bytes(cfg, batch_size, seq_len, p, setup.tp, setup.sp, device_kind) if last else 0
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
        "model_chunks_in_flight": chunks,
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
        phase_terms=phase_terms(cfg, setup, p, batch_size, seq_len, params, first, last, parts, optimizer_impl),
    )


def training_memory(cfg: ModelConfig, setup: TrainSetup, batch_size: int | None = None,
                    seq_len: int | None = None, *, peak: str = "phases", device_kind: str = "gpu",
                    optimizer_impl: str = "foreach") -> TrainingMemory:
    """Per-GPU training memory of the busiest pipeline stage at micro-batch ``batch_size``.

    ``peak``: "phases" (the largest phase of the step) or "sum" (every term at once, the
    previous figure). ``device_kind``: "cpu" for CPU autocast's bf16 softmax. ``optimizer_impl``:
    foreach (torch's default on GPU; the profiler's on CPU), fused or for-loop AdamW.
    """
    s = seq_len or setup.seq_len or cfg.context_length
    check_parallel(cfg, setup, s)
    for name, value, allowed in (("peak", peak, PEAK_MODELS), ("device_kind", device_kind, DEVICE_KINDS),
                                 ("optimizer_impl", optimizer_impl, OPTIMIZER_IMPLS)):
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    p = get_precision(setup.precision)
    b = setup.batch_size if batch_size is None else batch_size
    s //= setup.cp  # context parallel: a rank keeps the activations of its s/cp tokens
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
            "Korthikanti et al. 2022 per-layer terms, "
            + (f"dropout {setup.dropout:g}: 1-byte masks after attention and MLP"
               + ("" if setup.flash_attention else " and on the softmax, plus its output")
               + (" (flash attention regenerates its mask)" if setup.flash_attention else "")
               if setup.dropout > 0 else "no dropout (the profiled GPT has none)")
            + ", "
            f"{p.activation_bytes}-byte activations, norm inputs in the residual dtype ({residual_bytes(p)} B); "
            + ("flash attention: logsumexp (fp32) instead of s² probabilities" if setup.flash_attention
               else "eager attention: softmax probabilities kept"
               + (" in bf16 (CPU autocast leaves softmax in bf16)" if cpu_softmax
                  else " in fp32 plus a 16-bit copy" if is_autocast(p) else ""))
        ),
        "memory.logits_bytes_per_element": logit_bytes_per_element(p),
        "memory.logits": "logits + log-softmax kept by cross_entropy + their gradient, all positions (the term "
                         "as the sum counts it; memory.at_peak has the buffers alive at the peak)",
        "memory.weight_casts": (f"{p.weight_copy_bytes} B/param of cached fp8 weight copies (weight + transpose)"
                                if p.weight_copy_bytes is not None else
                                "autocast keeps a 16-bit copy of every weight for the step" if is_autocast(p)
                                else "none (no autocast)"),
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
        "memory.pipeline": ("1F1B: the first stage holds min(pp, grad_accum) micro-batches of its layers in flight"
                            if setup.vpp == 1 else
                            f"interleaved 1F1B (vpp {setup.vpp}): the first stage holds min(pp·vpp + pp − 1, "
                            "grad_accum·vpp) model chunks of layers/(pp·vpp) layers, L·(1 + (pp−1)/(pp·vpp)) "
                            "layers' activations (Narayanan et al. 2021 §2.2.2, Korthikanti et al. 2022 §4.2.3)"),
        "memory.context_parallel": (f"cp {setup.cp}: activations, head and logits of s/cp tokens per rank; ZeRO "
                                    "shards over dp·cp (Megatron's data-parallel group with context parallel)"
                                    if setup.cp > 1 else "none"),
        "memory.recompute_buffer": "with recompute, backward re-materialises one layer's activations",
        "memory.ddp": "DDP gradient buckets assumed to be views of the gradients (gradient_as_bucket_view)",
        "memory.zero3": "ZeRO-3 gathers two blocks (current + prefetch) in the compute dtype; no autocast copies",
    }
