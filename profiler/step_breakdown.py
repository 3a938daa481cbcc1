"""Where a step's time goes, measured: one step under ``torch.profiler``, aten ops mapped to op-graph categories.

(On a CPU in eager mode ``measure_breakdown`` records the step's aten ops and replays them one by one
instead, ``profiler.op_timer``: the profiler's per-event cost inflates small CPU ops.)
The profiled step is a separate step (never one of the timed ones): the
profiler adds host time to every op. Kernel time is each op's *self* time
(children not double counted), classified by name and input shapes into the
categories of ``estimator.ops.CATEGORIES``: GEMMs -> matmul, the attention
kernels and every op on a T x T score tensor -> attention, anything under
``Optimizer.step`` / ``zero_grad`` -> optimizer, collectives -> communication,
views and autograd bookkeeping -> host, the rest -> elementwise. What no aten
op accounts for (Python, the autograd engine, the profiler itself) is host.
Given a ``reference_s`` (the median timed step), the split is scaled to it, so
the profiler's own overhead (on every recorded op) is taken out in proportion.
On CUDA the device kernels are classified by name instead and the host part
is the step time they leave uncovered.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from estimator.ops import CATEGORIES

MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::matmul", "aten::linear", "aten::addmv", "aten::mv",
              "aten::_addmm_activation", "aten::dot"}
ATTENTION_OPS = {"aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::softmax", "aten::_softmax_backward_data",
                 "aten::masked_fill", "aten::masked_fill_", "aten::triu"}
HOST_OPS = {"aten::view", "aten::t", "aten::transpose", "aten::expand", "aten::_unsafe_view", "aten::reshape",
            "aten::split", "aten::split_with_sizes", "aten::slice", "aten::select", "aten::as_strided",
            "aten::detach", "aten::detach_", "aten::unsqueeze", "aten::squeeze", "aten::permute", "aten::alias",
            "aten::lift_fresh", "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::resize_",
            "aten::numpy_T", "aten::unflatten", "aten::flatten", "aten::chunk", "aten::narrow", "aten::view_as",
            "aten::_reshape_alias", "aten::contiguous", "aten::result_type", "aten::is_nonzero", "aten::item",
            "aten::_local_scalar_dense", "aten::set_", "aten::zeros", "aten::ones_like", "aten::arange"}
OPTIMIZER_SCOPES = ("Optimizer.step", "Optimizer.zero_grad")
COMMUNICATION_MARKERS = ("nccl", "gloo", "c10d::", "allreduce", "all_reduce", "broadcast")
CUDA_MATMUL = ("gemm", "cublas", "cutlass", "sm80_xmma", "sm90_xmma", "ampere_", "hopper_", "matmul")
CUDA_ATTENTION = ("flash", "fmha", "attention", "softmax", "efficient_attention")
CUDA_OPTIMIZER = ("adam", "multi_tensor_apply", "foreach")


def _is_scores(shapes: Any) -> bool:
    """A 4-D input whose last two dims are equal: the T x T attention scores (or their grad)."""
    for shape in shapes or ():
        if isinstance(shape, (list, tuple)) and len(shape) == 4 and shape[-1] == shape[-2] and shape[-1] > 1:
            return True
    return False


def _under(event: Any, prefixes: tuple[str, ...]) -> bool:
    parent = event
    while parent is not None:
        if parent.name.startswith(prefixes):
            return True
        parent = parent.cpu_parent
    return False


def classify_cpu_event(event: Any) -> str | None:
    """The category of one profiler event's self time, or None for events that are not ops."""
    name = event.name
    if _under(event, OPTIMIZER_SCOPES):
        return "optimizer"
    if any(m in name.lower() for m in COMMUNICATION_MARKERS):
        return "communication"
    if "scaled_dot_product" in name or "flash_attention" in name or _under_attention(event):
        return "attention"
    if not name.startswith("aten::"):
        return "host"  # autograd nodes, record_function scopes: bookkeeping
    return op_category(name, getattr(event, "input_shapes", None))


def op_category(name: str, input_shapes) -> str:
    """The category of one aten op (``aten::name``) by its name and input shapes, outside the optimizer."""
    if "scaled_dot_product" in name or "flash_attention" in name:
        return "attention"
    if name in HOST_OPS:
        return "host"
    if name in MATMUL_OPS:
        return "matmul"
    if name in ATTENTION_OPS or _is_scores(input_shapes):
        return "attention"
    return "elementwise"


BATCHED_MATMULS = ("aten::bmm", "aten::baddbmm")


def attention_layout_copies(ops: list[tuple[str, int]], categories: list[str]) -> list[str]:
    """``categories`` with the copies explicit attention makes for its own batched matmuls counted as
    attention, as the device profile's attention grid times them (inside the core). ``ops``: each op's
    aten name and its first input's rank. Such a copy is a 4-D operand broadcast (``expand``) and
    materialised (``clone``) on its way to a ``bmm``; the causal mask's ``ones`` before its ``triu`` too.
    Other copies stay elementwise: the head merge, the grads, GQA's 5-D repeat of k and v."""
    out = list(categories)
    for i, (name, rank) in enumerate(ops):
        if name == "aten::ones" and i + 1 < len(ops) and ops[i + 1][0] == "aten::triu":
            out[i] = "attention"
        if name != "aten::clone" or rank != 4 or i == 0 or ops[i - 1][0] != "aten::expand":
            continue
        following = next((n for n, r in ops[i + 1:] if n not in HOST_OPS and (n, r) != ("aten::clone", 4)), None)
        if following in BATCHED_MATMULS:
            out[i] = "attention"
    return out


def _under_attention(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if "scaled_dot_product" in parent.name:
            return True
        parent = parent.cpu_parent
    return False


def cpu_categories(events: Iterable[Any], wall_s: float, reference_s: float | None = None) -> dict[str, float]:
    """Seconds per category from CPU events' self times; host takes the uncovered rest of the step."""
    out = {c: 0.0 for c in CATEGORIES}
    for event in events:
        if getattr(event, "device_type", None) is not None and "CUDA" in str(event.device_type):
            continue
        category = classify_cpu_event(event)
        if category is not None:
            out[category] += event.self_cpu_time_total / 1e6
    kernels = sum(v for c, v in out.items() if c != "host")
    out["host"] = max(0.0, wall_s - kernels)
    return _scaled(out, wall_s, reference_s)


def _scaled(categories: dict[str, float], wall_s: float, reference_s: float | None) -> dict[str, float]:
    """The profiled step's split scaled to the reference step's time: the profiler's overhead lands on every
    recorded op, so it is taken out in proportion rather than all from one category."""
    if reference_s is None or wall_s <= 0:
        return categories
    factor = reference_s / max(wall_s, sum(categories.values()))
    return {c: v * factor for c, v in categories.items()}


def classify_cuda_kernel(name: str) -> str:
    low = name.lower()
    if any(m in low for m in ("nccl",)):
        return "communication"
    if any(m in low for m in CUDA_OPTIMIZER):
        return "optimizer"
    if any(m in low for m in CUDA_ATTENTION):
        return "attention"
    if any(m in low for m in CUDA_MATMUL):
        return "matmul"
    return "elementwise"


def cuda_categories(kernels: Iterable[tuple[str, float]], wall_s: float,
                    reference_s: float | None = None) -> dict[str, float]:
    """Seconds per category of (kernel name, device seconds); host = the step time no kernel covers."""
    out = {c: 0.0 for c in CATEGORIES}
    for name, seconds in kernels:
        out[classify_cuda_kernel(name)] += seconds
    device = sum(out.values())
    out["host"] = max(0.0, wall_s - device)
    return _scaled(out, wall_s, reference_s)


def measure_breakdown(trainer, x, y, reference_s: float | None = None) -> dict[str, Any]:
    """Where one more step of ``trainer`` (a ``profiler.step.TrainingStep``) on (x, y) spends its time: on a
    CPU (eager) its aten ops recorded and replayed one by one (``profiler.op_timer``), else under
    ``torch.profiler``.

    Returns ``{"categories": {category: seconds}, "profiled_step_s": wall time of that step (its
    instrumentation included), "reference_s": reference_s, "events": ops or events seen, "method"}``.
    """
    if trainer.device.type == "cpu" and not trainer.options.compile:
        from profiler.op_timer import time_step_ops

        return time_step_ops(trainer, x, y, reference_s)  # the profiler's per-event cost skews small CPU ops
    from torch.profiler import ProfilerActivity, profile

    from profiler.step_timer import synchronize

    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    synchronize(trainer.device)
    with profile(activities=activities, record_shapes=True) as prof:
        start = time.perf_counter()
        trainer.step(x, y)
        synchronize(trainer.device)
        wall = time.perf_counter() - start
    events = prof.events()
    if cuda:
        kernels = [(e.name, e.self_device_time_total / 1e6) for e in events
                   if "CUDA" in str(getattr(e, "device_type", "")) and e.self_device_time_total > 0]
        categories = cuda_categories(kernels, wall, reference_s)
    else:
        categories = cpu_categories(events, wall, reference_s)
    return {"categories": categories, "profiled_step_s": wall, "reference_s": reference_s, "events": len(events),
            "method": PROFILER_METHOD}


PROFILER_METHOD = "one extra step under torch.profiler, aten ops (CUDA: kernels) mapped to the op graph's categories"


def breakdown_event(measured: dict[str, Any], predicted: dict[str, float] | None = None):
    """The ``StepBreakdown`` event of a ``measure_breakdown`` result (and a predicted split beside it)."""
    from profiler.events import StepBreakdown

    return StepBreakdown(measured_s=dict(measured["categories"]), predicted_s=dict(predicted or {}),
                         step_time_s=measured["profiled_step_s"])


def category_errors(predicted: dict[str, float], measured: dict[str, float], min_share: float = 0.0
                    ) -> dict[str, dict[str, float | None]]:
    """Per category: predicted, measured, share of the measured step, (predicted − measured) / measured."""
    total = sum(measured.values()) or 1.0
    out = {}
    for c in CATEGORIES:
        p, m = predicted.get(c, 0.0), measured.get(c, 0.0)
        share = m / total
        if share < min_share:
            continue
        out[c] = {"predicted_s": p, "measured_s": m, "share": share, "error": (p - m) / m if m > 0 else None}
    return out
