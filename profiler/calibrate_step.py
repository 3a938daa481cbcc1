"""The device profile's whole-step parts: a training step's host time beyond its kernels, and its AdamW.

The grids (``profiler.calibrate``) time kernels alone. What a real step adds
around them — Python, nn.Module calls, autograd's records and engine, views —
and the optimizer's step are measured here on small real steps and tensor
lists, with the same timer (``profiler.kernel_timer``).
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from estimator.device_profile import OPTIMIZER_CACHE_ELEMENTS, OPTIMIZER_DRAM_ELEMENTS, DeviceProfile
from profiler.kernel_timer import MIN_REPEATS, best_time

FRAMEWORK_FAMILIES = {"gpt": "gpt-tiny", "llama": "llama-tiny"}  # block designs: the presets' flags
# Small instances whose every kernel lies inside the grids (so their kernel time is interpolated, not
# extrapolated) and costs less than the host work around it: 32 tokens, width 64, 4 heads of 16.
FRAMEWORK_WIDTH, FRAMEWORK_HEADS, FRAMEWORK_TOKENS, FRAMEWORK_VOCAB = 64, 4, 32, 256
FRAMEWORK_LAYERS = (1, 3)
FRAMEWORK_SECONDS, FRAMEWORK_ROUNDS = 0.012, 2  # timing window per instance and round
FRAMEWORK_PRECISIONS = {"fp32": "fp32", "bf16": "bf16-mixed"}  # the run each measured dtype stands for


def _framework_instance(family: str, layers: int):
    """A small model of ``family``'s block design (norm, MLP, positions, GQA) with ``layers`` blocks."""
    from estimator.presets import get_model

    base = get_model(FRAMEWORK_FAMILIES[family])
    return replace(base, name=f"{family}-framework-{layers}", vocab_size=FRAMEWORK_VOCAB,
                   context_length=FRAMEWORK_TOKENS, d_model=FRAMEWORK_WIDTH, n_layers=layers,
                   n_heads=FRAMEWORK_HEADS, n_kv_heads=FRAMEWORK_HEADS // 2 if base.kv_heads != base.n_heads else None,
                   d_ff=None, head_dim=None)


def measure_framework(device, timer, grids: DeviceProfile, precisions: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """The host time of a training step of the profiled GPT beyond its kernels, per micro-batch and per
    block, for each block design x attention kernel x precision: full steps (forward, backward, AdamW) of
    a 1-block and a 3-block instance, timed in alternating rounds, less their kernels as the measured
    ``grids`` predict them; the difference is two blocks', the rest the micro-batch's. Python, nn.Module
    calls, autograd's records and engine, views — all there as in a real step."""
    from estimator.cost_model import MeasuredCost
    from estimator.op_graph import step_graph
    from estimator.step_ops import framework_variant
    from estimator.setup import TrainSetup
    from profiler.step import StepOptions, TrainingStep

    impl = next(iter(grids.optimizer)).removeprefix("adamw.")  # the AdamW measured: the instances step it
    out: dict[str, dict[str, float]] = {}
    for family in FRAMEWORK_FAMILIES:
        for flash in (True, False):
            for precision in precisions:
                setup = TrainSetup(batch_size=1, seq_len=FRAMEWORK_TOKENS, precision=precision,
                                   flash_attention=flash)
                cost = MeasuredCost(grids, None, setup, impl)
                runs = []
                for layers in FRAMEWORK_LAYERS:
                    cfg = _framework_instance(family, layers)
                    trainer = TrainingStep(cfg, device, StepOptions(
                        precision=precision, flash_attention=flash, fused_adamw=impl == "fused",
                        adamw_foreach=impl == "foreach"))
                    graph = step_graph(cfg, setup)
                    kernels = sum(cost.cost(op).device_s for op in graph.micro_batch + graph.per_step)
                    runs.append((trainer, trainer.make_batch(1, FRAMEWORK_TOKENS), kernels, []))
                for r in range(FRAMEWORK_ROUNDS):  # a warm-up step in the first round only
                    for trainer, (x, y), _, walls in runs:
                        step = lambda: trainer.step(x, y)  # noqa: E731
                        walls.append(best_time(timer, step, FRAMEWORK_SECONDS) if r == 0 else
                                     timer.window(step, FRAMEWORK_SECONDS, MIN_REPEATS))
                rest = [statistics.median(walls) - kernels for _, _, kernels, walls in runs]
                for trainer, *_ in runs:
                    trainer.close()
                per_layer = max((rest[1] - rest[0]) / (FRAMEWORK_LAYERS[1] - FRAMEWORK_LAYERS[0]), 1e-9)
                out[framework_variant(cfg, flash, precision)] = {
                    "per_step_s": max(rest[0] - FRAMEWORK_LAYERS[0] * per_layer, 1e-9), "per_layer_s": per_layer}
    return out


def measure_optimizer(impl: str, device, timer) -> dict[str, float]:
    """The training step's AdamW (``profiler.adamw``) step + zero_grad cost = step_s + per_tensor_s·tensors +
    per_element·elements, solved from tensor lists: few small, many small, few large (cache-resident:
    per_element_s) and few huge (DRAM-sized, ``OPTIMIZER_DRAM_ELEMENTS``: per_element_dram_s) — each foreach
    pass sweeps every tensor, so a model's whole optimizer state is the working set."""
    import torch

    from profiler.adamw import AdamW

    def cost(tensors: int, size: int) -> float:
        params = [torch.nn.Parameter(torch.randn(size, device=device)) for _ in range(tensors)]
        kind = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
        opt = AdamW(params, lr=1e-4, **kind)

        def step():
            for p in params:
                p.grad = torch.ones_like(p)
            opt.step()
            opt.zero_grad(set_to_none=True)

        grads_only = best_time(timer, lambda: [torch.ones_like(p) for p in params])
        return max(best_time(timer, step, 0.01) - grads_only, 1e-9)

    large, huge = OPTIMIZER_CACHE_ELEMENTS // 4, OPTIMIZER_DRAM_ELEMENTS // 4
    few_small, many_small, few_large, few_huge = cost(4, 256), cost(64, 256), cost(4, large), cost(4, huge)
    per_tensor = max((many_small - few_small) / 60, 1e-9)
    per_element = max((few_large - few_small) / (4 * (large - 256)), 1e-12)
    per_element_dram = max((few_huge - few_small) / (4 * (huge - 256)), per_element)
    step = max(few_small - 4 * per_tensor - 4 * 256 * per_element, 1e-9)
    return {"step_s": step, "per_tensor_s": per_tensor, "per_element_s": per_element,
            "per_element_dram_s": per_element_dram}
