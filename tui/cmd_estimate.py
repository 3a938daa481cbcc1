"""`mfutop estimate`: the analytic prediction, as rich tables or ``--json``.

Option names are ours, kebab-cased; where llm-analysis' ``train()``/``infer()``
have an argument with the same meaning its kebab-cased name is accepted too
(``--tp-size`` for ``--tp``, ``--batch-size-per-gpu`` for ``--batch-size``,
``--total-num-tokens`` for ``--tokens``, ``--cost-per-gpu-hour`` for
``--gpu-hour-cost``, ``--num-tokens-to-generate`` for ``--gen-len``,
``--ds-zero`` for ``--zero``, ``--activation-recomputation`` (0/1/2 or a name)
for ``--recompute``, ``--flash-attn`` for ``--flash-attention``,
``--hbm-memory-efficiency`` for ``--hbm-efficiency``,
``--intra-node-memory-efficiency`` for ``--interconnect-efficiency``).
llm-analysis' ``sp_size`` is a size that must equal ``tp_size``; here
``--sp`` is a switch. Imports no torch: the estimator is pure Python and is
imported inside the command so ``mfutop --help`` stays fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from estimator.errors import ConfigError

from estimator.units import PEAK_TFLOPS_RANGE, check_finite_positive, parse_count
from profiler.run_config import parse_batch, parse_memory
from tui.cli_support import emit_json, user_errors

DEFAULT_GPU = "h100-sxm"
DEFAULT_MODEL = "gpt2"
_RECOMPUTE_CODES = {"0": "none", "1": "selective", "2": "full"}


def _recompute(text: str) -> str:
    key = text.strip().lower()
    return _RECOMPUTE_CODES.get(key, key)


def _largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` not above ``at_most`` (at least 1), in O(sqrt n)."""
    pairs = ((d, n // d) for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return max((x for pair in pairs for x in pair if x <= at_most), default=1)


def _load_profile(path: Path | None):
    """The validated profile of ``--device-profile`` (ConfigError naming the file when corrupt)."""
    if path is None:
        return None
    from estimator.device_profile import load

    return load(path)


def _add_verdict(result: dict, cfg, spec, setup, memory_limit: int | None, does_not_fit) -> None:
    """``fits`` and, when the setup cannot run even at batch 1, the verdict with the smallest change
    that fits: a setup that does not fit is an answer (the full estimate beside it), not an error."""
    memory = result["memory"]
    result["fits"] = bool(result.get("max_batch_size"))
    if result["fits"]:
        return
    from estimator.max_batch import INFER_HINT, TRAIN_HINT

    train = result.get("mode", "train") == "train"
    verdict = str(does_not_fit(cfg.name, memory["total"], memory["limit"], TRAIN_HINT if train else INFER_HINT))
    if train:
        from estimator.plan_fit import cheapest_fitting_change

        change = cheapest_fitting_change(cfg, spec, setup, memory_limit_bytes=memory_limit)
        result["fit_change"] = change.to_dict()
        verdict = verdict.split("; try")[0] + f"; {change.summary}"
    result["verdict"] = verdict


def estimate(
    model: Optional[str] = typer.Option(None, "--model", "-m", "--model-name",
                                        help=f"Preset name (default {DEFAULT_MODEL})."),
    gpu: Optional[str] = typer.Option(None, "--gpu", "--gpu-name", help=f"GPU name (default {DEFAULT_GPU})."),
    batch_size: str = typer.Option("1", "--batch-size", "-b", "--batch-size-per-gpu",
                                   help="Micro-batch per GPU, or 'auto' for the largest that fits."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", "-T", help="Tokens per sequence (default: context)."),
    precision: str = typer.Option("bf16-mixed", "--precision",
                                  help="fp32, tf32, bf16-mixed, fp16-mixed, bf16, bf16-master, bf16-fp32-grads "
                                       "(Megatron, 18 B/param) or fp8 (Transformer Engine; MFU vs the fp8 peak)."),
    mode: str = typer.Option("train", "--mode", help="train or infer."),
    tokens: Optional[str] = typer.Option(None, "--tokens", "--total-num-tokens",
                                         help="Training tokens for time and cost (e.g. 300B)."),
    gpu_hour_cost: Optional[float] = typer.Option(None, "--gpu-hour-cost", "--cost-per-gpu-hour",
                                                  help="USD per GPU-hour."),
    memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="Usable memory per GPU, e.g. 40GiB."),
    dp: int = typer.Option(1, "--dp", "--dp-size", help="Data-parallel size."),
    tp: int = typer.Option(1, "--tp", "--tp-size", help="Tensor-parallel size."),
    pp: int = typer.Option(1, "--pp", "--pp-size", help="Pipeline-parallel size."),
    sp: bool = typer.Option(False, "--sp/--no-sp", help="Sequence parallel (with --tp)."),
    ep: int = typer.Option(1, "--ep", "--ep-size", help="Expert-parallel size (MoE)."),
    zero: int = typer.Option(0, "--zero", "--ds-zero", help="ZeRO stage 0-3 over dp."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", "--gradient-accumulation-steps",
                                             help="Micro-batches per step (default 1, or from the global batch)."),
    global_batch_size: Optional[int] = typer.Option(None, "--global-batch-size",
                                                    help="Sequences per optimizer step over all replicas: "
                                                         "grad-accum = it / (batch-size x dp)."),
    global_batch_tokens: Optional[str] = typer.Option(None, "--global-batch-tokens",
                                                      help="Tokens per optimizer step (e.g. 4M): the nearest "
                                                           "multiple of batch-size x dp sequences."),
    vpp: int = typer.Option(1, "--vpp", help="Virtual pipeline stages per GPU (interleaved 1F1B; with --pp)."),
    cp: int = typer.Option(1, "--cp", "--cp-size", help="Context-parallel size: the sequence split over cp GPUs."),
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout probability (0: none, as in the profiled GPT)."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd."),
    recompute: str = typer.Option("none", "--recompute", "--activation-recomputation",
                                  help="none|selective|full (or 0|1|2)."),
    overlap_dp: bool = typer.Option(True, "--overlap-dp/--no-overlap-dp",
                                    help="Hide the DP gradient all-reduce behind backward."),
    flash_attention: bool = typer.Option(True, "--flash-attention/--no-flash-attention",
                                         "--flash-attn/--no-flash-attn", help="Flash attention (SDPA)."),
    flops_efficiency: Optional[float] = typer.Option(
        None, "--flops-efficiency", help="Override: achieved / peak FLOP/s of every GEMM (default: by shape)."),
    hbm_efficiency: float = typer.Option(0.8, "--hbm-efficiency", "--hbm-memory-efficiency",
                                         help="Achieved / peak HBM bandwidth."),
    interconnect_efficiency: Optional[float] = typer.Option(
        None, "--interconnect-efficiency", "--intra-node-memory-efficiency",
        help="Achieved bus bandwidth / link line rate (default: measured per link, NVLink 0.80, PCIe 0.44, IB 0.94)."),
    layers: Optional[int] = typer.Option(None, "--layers", help="Override: transformer layers."),
    d_model: Optional[int] = typer.Option(None, "--d-model", help="Override: width."),
    heads: Optional[int] = typer.Option(None, "--heads", help="Override: attention heads."),
    kv_heads: Optional[int] = typer.Option(None, "--kv-heads", help="Override: KV heads (GQA)."),
    d_ff: Optional[int] = typer.Option(None, "--d-ff", help="Override: FFN width."),
    head_dim: Optional[int] = typer.Option(None, "--head-dim", help="Override: head dimension."),
    vocab: Optional[int] = typer.Option(None, "--vocab", help="Override: vocabulary size."),
    context: Optional[int] = typer.Option(None, "--context", help="Override: context length."),
    hf_config: Optional[Path] = typer.Option(None, "--hf-config", help="A local Hugging Face config.json."),
    weight_bits: int = typer.Option(16, "--weight-bits", help="Inference weights: 16, 8 or 4 bits."),
    prompt_len: Optional[int] = typer.Option(None, "--prompt-len", help="Inference prompt tokens (default 512)."),
    gen_len: Optional[int] = typer.Option(None, "--gen-len", "--num-tokens-to-generate",
                                          help="Inference tokens generated (default 128)."),
    peak_tflops: Optional[float] = typer.Option(None, "--peak-tflops",
                                                help="Dense peak TFLOP/s for the precision's matmul dtype."),
    device_profile: Optional[Path] = typer.Option(None, "--device-profile",
                                                  help="A measured device profile (mfutop calibrate --out FILE): "
                                                       "step time from its kernels, the datasheet beside it."),
    as_json: bool = typer.Option(False, "--json", help="Print the prediction as JSON."),
    explain: bool = typer.Option(False, "--explain",
                                 help="Add the assumptions behind every figure (--json always has them)."),
) -> None:
    """Predict params, FLOPs, memory, step time, MFU and max batch (no GPU needed)."""
    with user_errors():
        from estimator.hardware import get_gpu
        from estimator.device_specs import with_peak_override
        from estimator.max_batch import does_not_fit
        from dataclasses import replace

        from estimator.precision import check_precision_on, get_precision
        from estimator.predict import predict
        from estimator.setup import Efficiency, TrainSetup, check_global_batch, grad_accum_for

        from estimator.model_choice import choose_model

        cfg = choose_model(model, hf_config, DEFAULT_MODEL, buildable=False, layers=layers, d_model=d_model, heads=heads,
                           kv_heads=kv_heads, d_ff=d_ff, head_dim=head_dim, vocab=vocab, context=context)
        if gpu is not None and not gpu.strip():
            raise ConfigError("--gpu is empty: give a GPU name such as h100-sxm (mfutop gpus --list)")
        spec = get_gpu(gpu or DEFAULT_GPU)
        from tui.gpu_choice import gpu_note, print_gpu_note

        note = gpu_note(gpu) if gpu is not None else None
        if not as_json:
            print_gpu_note(note)
        p = get_precision(precision)
        if peak_tflops is not None:
            check_finite_positive(peak_tflops, "peak-tflops", low=PEAK_TFLOPS_RANGE[0], high=PEAK_TFLOPS_RANGE[1])
            spec = with_peak_override(spec, p.matmul_dtype, peak_tflops * 1e12, label="--peak-tflops")
        check_precision_on(p, spec)
        batch = parse_batch(batch_size)
        batch_tokens = parse_count(global_batch_tokens, "global batch token count")
        check_global_batch(global_batch_size, batch_tokens)
        wants_global = global_batch_size is not None or batch_tokens is not None
        s_len = seq_len or cfg.context_length

        def with_global_batch(setup):  # grad-accum from the global batch at this micro-batch
            total, accum = grad_accum_for(setup.batch_size, setup.dp, s_len, global_batch_size, batch_tokens)
            return replace(setup, grad_accum=accum), total

        if wants_global and grad_accum is not None:
            raise ConfigError("give --grad-accum or a global batch (--global-batch-size/--global-batch-tokens), "
                              "not both: the global batch sets grad-accum")
        setup = TrainSetup(
            batch_size=batch or 1, seq_len=seq_len, precision=p.name, optimizer=optimizer.lower(),
            recompute=_recompute(recompute), flash_attention=flash_attention, grad_accum=grad_accum or 1,
            dp=dp, tp=tp, pp=pp, sp=sp, ep=ep, zero=zero, vpp=vpp, cp=cp, dropout=dropout,
            efficiency=Efficiency(flops=flops_efficiency, memory=hbm_efficiency,
                                  interconnect=interconnect_efficiency),
        )
        global_batch = None
        if wants_global:
            setup, global_batch = with_global_batch(setup)
        kwargs = dict(mode=mode.lower(), tokens=parse_count(tokens, "token count"), gpu_hour_cost=gpu_hour_cost,
                      memory_limit_bytes=parse_memory(memory_limit), weight_bits=weight_bits,
                      prompt_len=prompt_len, gen_len=gen_len, overlap_dp=overlap_dp,
                      device_profile=_load_profile(device_profile))
        result = predict(cfg, spec, setup, check_fit=False, **kwargs)
        if batch is None and result["max_batch_size"]:  # 'auto': predict again at the largest batch that fits
            fitting = result["max_batch_size"]
            if global_batch_size is not None:  # ... that also divides the global batch per replica
                fitting = _largest_divisor(max(global_batch_size // setup.dp, 1), fitting)
            setup = replace(setup, batch_size=fitting)
            if wants_global:
                setup, global_batch = with_global_batch(setup)
            result = predict(cfg, spec, setup, check_fit=False, **kwargs)
        if global_batch is not None:
            result["assumptions"]["train.global_batch"] = (
                f"{global_batch:,} sequences = micro-batch {setup.batch_size} x dp {setup.dp} x grad-accum "
                f"{setup.grad_accum}" + (f" (the multiple of micro-batch x dp nearest to {batch_tokens:,} tokens "
                                         f"/ seq-len {s_len})" if batch_tokens is not None else ""))
        _add_verdict(result, cfg, spec, setup, kwargs["memory_limit_bytes"], does_not_fit)
        if gpu is None:
            result["warnings"].insert(0, f"no --gpu given: assuming {DEFAULT_GPU} ({spec.name})")
        if kwargs["device_profile"] is not None and kwargs["device_profile"].device_kind == "cpu":
            result["warnings"].append(f"a CPU device profile with the {spec.name} spec: step time from the CPU's "
                                      f"kernels, MFU against {spec.name}'s peak")
        result["assumptions"]["gpu"] = spec.key + ("" if gpu else " (default: no --gpu given)")
        result["gpu_note"] = note
        if model is None and hf_config is None:
            result["assumptions"]["model"] = f"{DEFAULT_MODEL} (default: no --model given)"

    if as_json:
        emit_json(result)
        return
    from tui.estimate_view import print_estimate

    print_estimate(result, explain=explain)


def register(app: typer.Typer) -> None:
    """Adds `mfutop estimate` to the app."""
    app.command("estimate")(estimate)
