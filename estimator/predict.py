"""`predict()`: model + hardware + setup -> the `mfutop estimate --json` object.

One JSON-able dict, the same key names as the profiler's measurements so that
every row can show predicted, measured and their error. Counts come from
``estimator.params`` and ``estimator.flops`` (never recounted here); memory,
time and inference from their modules. Every assumption is in the output.

Scope of the figures: ``flops.*`` are the whole model's FLOPs for one
micro-batch (batch_size x seq_len), with per-token, per-GPU-per-step and
global-per-step figures beside; ``memory.*`` are bytes on the busiest GPU;
``step.tokens_per_s`` is global (all data-parallel replicas).
"""

from __future__ import annotations

from dataclasses import replace

from estimator.cost_model import DatasheetCost, MeasuredCost
from estimator.step_compose import predict_step
from estimator.device_profile import DeviceProfile
from estimator.errors import ConfigError
from estimator.flops import step_flops
from estimator.hardware import HardwareSpec
from estimator.inference import DEFAULT_GEN_LEN, DEFAULT_PROMPT_LEN, infer_estimate, inference_assumptions
from estimator.max_batch import INFER_HINT, default_memory_limit, does_not_fit, largest_fitting, limit_assumptions
from estimator.memory import PEAK_MODELS, check_parallel, memory_assumptions, training_memory
from estimator.mfu import hfu, mfu
from estimator.model_config import ModelConfig
from estimator.params import count_params
from estimator.communication import communication_assumptions
from estimator.precision import check_precision_on, get_precision
from estimator.setup import MODES, TrainSetup
from estimator.step_overheads import StepOverheads, default_overheads
from estimator.step_time import timing_assumptions
from estimator.units import MAX_COUNT, MAX_GPU_HOUR_COST, check_finite, check_finite_positive, fmt_bytes

MFU_NA = "MFU n/a (unknown peak; --peak-tflops)"


def _validate(model: ModelConfig, hardware: HardwareSpec, setup: TrainSetup, mode: str, seq_len: int,
              tokens: int | None, gpu_hour_cost: float | None, memory_limit_bytes: int | None) -> None:
    check_precision_on(setup.precision, hardware)
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if seq_len > model.context_length:
        raise ConfigError(f"seq-len {seq_len} exceeds {model.name}'s context length {model.context_length}")
    if tokens is not None:
        check_finite_positive(tokens, "tokens", low=1, high=MAX_COUNT, integer=True)
    if gpu_hour_cost is not None:
        check_finite(gpu_hour_cost, "gpu-hour-cost", low=0.0, high=MAX_GPU_HOUR_COST)
    if memory_limit_bytes is not None and memory_limit_bytes <= 0:
        raise ConfigError(f"memory limit must be positive, got {memory_limit_bytes!r} bytes")
    check_parallel(model, setup)


def _peaks(hardware: HardwareSpec, matmul_dtype: str, warnings: list[str]) -> tuple[float | None, float | None, str | None]:
    """(MFU denominator, peak the time model uses, dtype of the latter)."""
    mfu_peak = hardware.peak(matmul_dtype)
    if mfu_peak is not None:
        return mfu_peak, mfu_peak, matmul_dtype
    unknown = matmul_dtype in getattr(hardware, "peak_unknown", ())
    warnings.append(f"{MFU_NA}: {hardware.name} has no {'sourced ' if unknown else ''}{matmul_dtype} peak")
    for fallback in ("fp32", "tf32", "bf16", "fp16"):
        peak = hardware.peak(fallback)
        if peak is not None:
            warnings.append(f"time uses the {fallback} peak ({peak / 1e12:.4g} TFLOP/s): "
                            f"{'no sourced ' + matmul_dtype + ' peak' if unknown else 'no ' + matmul_dtype + ' path'}"
                            f" on {hardware.name}")
            return None, peak, fallback
    warnings.append("no peak FLOP/s for any dtype: step time n/a")
    return None, None, None


def _hardware_block(hardware: HardwareSpec, mfu_peak: float | None, matmul_dtype: str,
                    time_peak: float | None, time_dtype: str | None) -> dict:
    return {
        "key": hardware.key, "name": hardware.name, "vendor": hardware.vendor,
        "peak_flops": mfu_peak, "peak_dtype": matmul_dtype,
        "time_peak_flops": time_peak, "time_peak_dtype": time_dtype,
        "memory_bytes": hardware.memory_bytes, "memory_bandwidth": hardware.memory_bandwidth,
        "intra_node_bandwidth": hardware.intra_node_bandwidth,
        "inter_node_bandwidth": hardware.inter_node_bandwidth,
        "source": hardware.source, "derived": hardware.derived,
    }


def _flops_block(model: ModelConfig, setup: TrainSetup, b: int, s: int) -> dict:
    f = step_flops(model, b, s, setup.recompute)
    out = f.to_dict()
    per_gpu = f.total * setup.grad_accum / (setup.tp * setup.pp)
    out.update(
        scope="forward/backward/total/palm_total: whole model, one micro-batch of batch_size x seq_len",
        per_gpu_per_step=per_gpu,
        hardware_per_gpu_per_step=f.hardware_total * setup.grad_accum / (setup.tp * setup.pp),
        global_per_step=f.total * setup.grad_accum * setup.dp,
    )
    return out


def _train(model: ModelConfig, hardware: HardwareSpec, setup: TrainSetup, b: int, s: int, limit: int,
           flops: dict, mfu_peak: float | None, time_peak: float | None, tokens: int | None,
           gpu_hour_cost: float | None, check_fit: bool, overlap_dp: bool, warnings: list[str],
           overheads: StepOverheads, memory_peak: str, device_profile: DeviceProfile | None = None) -> dict:
    kw = dict(peak=memory_peak, device_kind=overheads.device_kind, optimizer_impl=overheads.optimizer_impl)
    mem = training_memory(model, setup, b, s, **kw)
    fit = largest_fitting(lambda n: training_memory(model, setup, n, s, **kw).total, limit)
    if fit == 0 and check_fit:
        one = training_memory(model, setup, 1, s, **kw)
        raise does_not_fit(f"{model.name} training ({setup.precision}, seq-len {s}) on {hardware.name}",
                           one.total, limit)
    if mem.total > limit:
        warnings.append(f"batch {b} does not fit: needs {fmt_bytes(mem.total)}, limit {fmt_bytes(limit)} "
                        f"(largest that fits: {fit})")
    memory = mem.to_dict()
    memory.update(limit=limit, fits=mem.total <= limit)

    tokens_per_step = b * s * setup.grad_accum * setup.dp
    out: dict = {"memory": memory, "max_batch_size": fit, "step": None, "train": None}
    step = None
    if time_peak is not None:
        datasheet = DatasheetCost(hardware, setup, overheads)
        step = predict_step(model, setup, datasheet, b, s, overlap_dp)
        step.update(_rates(step["time_s"], tokens_per_step, flops, setup, mfu_peak))
        if device_profile is not None:
            measured = predict_step(model, setup, MeasuredCost(device_profile, hardware, setup, overheads.optimizer_impl),
                                    b, s, overlap_dp)
            spec = {k: step[k] for k in ("time_s", "tokens_per_s", "mfu", "hfu", "categories", "breakdown")}
            step = dict(measured, **_rates(measured["time_s"], tokens_per_step, flops, setup, mfu_peak),
                        spec=dict(spec, source="datasheet"),
                        device_profile={"device": device_profile.device_name,
                                        "measured_at": device_profile.measured_at,
                                        "threads": device_profile.threads,
                                        "torch_version": device_profile.torch_version})
            if measured["extrapolated"]:
                warnings.append("device profile extrapolated outside its grid for: "
                                + ", ".join(measured["extrapolated"]))
        out["step"] = step
    if tokens is not None:
        n = count_params(model).active
        steps = -(-tokens // tokens_per_step)
        time_s = steps * step["time_s"] if step else None
        gpu_hours = time_s * setup.world_size / 3600 if time_s is not None else None
        six_nd = 6 * n * tokens
        out["train"] = {
            "tokens": tokens, "steps": steps, "time_s": time_s, "gpu_hours": gpu_hours,
            "gpu_hour_cost": gpu_hour_cost,
            "cost": gpu_hours * gpu_hour_cost if gpu_hours is not None and gpu_hour_cost is not None else None,
            "six_nd_flops": six_nd,
            "six_nd_time_s": (six_nd / (setup.world_size * step["achieved_flops_per_gpu"]) if step else None),
        }
    return out


def _rates(t: float, tokens_per_step: int, flops: dict, setup: TrainSetup, mfu_peak: float | None) -> dict:
    """Throughput and utilisation of a step of ``t`` seconds (MFU/HFU via estimator.mfu)."""
    return dict(
        tokens_per_step=tokens_per_step,
        tokens_per_s=tokens_per_step / t,
        tokens_per_s_per_gpu=tokens_per_step / t / setup.world_size,
        achieved_flops_per_gpu=flops["per_gpu_per_step"] / t,
        mfu=mfu(flops["per_gpu_per_step"], t, mfu_peak),
        hfu=hfu(flops["hardware_per_gpu_per_step"], t, mfu_peak),
        mfu_causal=mfu(flops["causal_total"] * setup.grad_accum / (setup.tp * setup.pp), t, mfu_peak),
    )


def predict(model: ModelConfig, hardware: HardwareSpec, setup: TrainSetup, mode: str = "train",
            tokens: int | None = None, gpu_hour_cost: float | None = None, memory_limit_bytes: int | None = None,
            weight_bits: int = 16, prompt_len: int | None = None, gen_len: int | None = None,
            check_fit: bool = True, overlap_dp: bool = True, overheads: StepOverheads | None = None,
            memory_peak: str = "phases", device_profile: DeviceProfile | None = None) -> dict:
    """The prediction for ``setup`` on ``hardware``. ConfigError for impossible input,
    and (``check_fit``) for a setup that does not fit at batch 1. ``overlap_dp``: the
    gradient all-reduce hides behind the last backward (DDP) rather than following it.
    ``overheads``: per-op host cost, its overlap, the AdamW implementation and CPU kernel
    rates (default ``default_overheads(hardware)``: by ``hardware.vendor == "cpu"``).
    ``memory_peak``: "phases" (the step's largest phase) or "sum" (every term co-resident).
    ``device_profile``: a measured profile of this device; the step time then comes from the op graph
    timed by it (``step.source`` "measured"), the datasheet figures kept under ``step.spec``."""
    s = setup.seq_len or model.context_length
    _validate(model, hardware, setup, mode, s, tokens, gpu_hour_cost, memory_limit_bytes)
    if memory_peak not in PEAK_MODELS:
        raise ConfigError(f"memory peak must be one of {', '.join(PEAK_MODELS)}, got {memory_peak!r}")
    overheads = overheads or default_overheads(hardware)
    p = get_precision(setup.precision)
    warnings: list[str] = []
    if hardware.derived and hardware.vendor == "cpu":
        warnings.append(f"{hardware.name}: CPU peak from {hardware.source}")
    elif hardware.derived:
        warnings.append(f"{hardware.name}: peak derived from SM count x clock ({hardware.source}); an upper bound")
    if hardware.memory_bandwidth <= 0:
        warnings.append("memory bandwidth unknown: the roofline's memory term is left out")
    if setup.zero and setup.dp == 1:
        warnings.append(f"ZeRO-{setup.zero} shards over data-parallel ranks: with dp 1 it changes nothing")
    if mode == "infer" and (setup.zero or setup.grad_accum > 1 or setup.recompute != "none"):
        warnings.append("training options (--zero, --grad-accum, --recompute) do not apply in inference mode")
    mfu_peak, time_peak, time_dtype = _peaks(hardware, p.matmul_dtype, warnings)
    limit = default_memory_limit(hardware) if memory_limit_bytes is None else memory_limit_bytes
    b = setup.batch_size
    flops = _flops_block(model, setup, b, s)

    result: dict = {
        "mode": mode,
        "model": model.to_dict(),
        "hardware": _hardware_block(hardware, mfu_peak, p.matmul_dtype, time_peak, time_dtype),
        "setup": {**setup.to_dict(), "seq_len": s, "world_size": setup.world_size},
        "params": count_params(model).to_dict(),
        "flops": flops,
    }
    assumptions: dict = {"precision": p.to_dict(), **limit_assumptions(hardware, memory_limit_bytes),
                         **communication_assumptions(setup),
                         **timing_assumptions(setup, hardware, overlap_dp, overheads, model, s,
                                                 DatasheetCost(hardware, setup, overheads).assumptions())}

    if mode == "train":
        result.update(_train(model, hardware, setup, b, s, limit, flops, mfu_peak, time_peak, tokens,
                             gpu_hour_cost, check_fit, overlap_dp, warnings, overheads, memory_peak,
                             device_profile))
        assumptions.update(memory_assumptions(setup, overheads.device_kind, memory_peak, overheads.optimizer_impl))
        assumptions["train.six_nd"] = "6 x active params x tokens / (GPUs x the step's achieved FLOP/s per GPU)"
    else:
        gen = DEFAULT_GEN_LEN if gen_len is None else gen_len
        prompt = prompt_len if prompt_len is not None else min(setup.seq_len or DEFAULT_PROMPT_LEN,
                                                               max(model.context_length - gen, 1))
        if prompt < 1 or gen < 1:
            raise ConfigError(f"prompt-len and gen-len must be positive, got {prompt} and {gen}")
        if prompt + gen > model.context_length:
            raise ConfigError(f"prompt-len {prompt} + gen-len {gen} exceeds {model.name}'s context length "
                              f"{model.context_length}")
        inf = infer_estimate(model, hardware, setup, time_peak, weight_bits, prompt, gen, limit, gpu_hour_cost)
        if inf["max_batch_size"] == 0 and check_fit:
            one = infer_estimate(model, hardware, replace(setup, batch_size=1), None, weight_bits, prompt, gen)
            raise does_not_fit(f"{model.name} inference ({weight_bits}-bit weights, {prompt}+{gen} tokens) "
                               f"on {hardware.name}", one["memory"]["total"], limit, INFER_HINT)
        inf["memory"].update(limit=limit, fits=inf["memory"]["total"] <= limit)
        if not inf["memory"]["fits"]:
            warnings.append(f"batch {b} does not fit: needs {fmt_bytes(inf['memory']['total'])}, "
                            f"limit {fmt_bytes(limit)} (largest that fits: {inf['max_batch_size']})")
        result["flops"].update({f"infer_{k}": v for k, v in inf.pop("flops").items()})
        result.update(inf)
        assumptions.update(inference_assumptions(weight_bits, prompt, gen, p))

    if p.matmul_dtype == "fp8":
        assumptions["mfu.peak"] = f"MFU relative to the fp8 dense peak of {hardware.name}"
    result["assumptions"] = assumptions
    result["warnings"] = warnings
    return result
