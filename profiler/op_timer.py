"""Where a CPU step's time goes, timed at the dispatcher: each aten op's own seconds, its bookkeeping outside.

Why not ``torch.profiler`` on the CPU: its cost per recorded event (a few µs)
lands inside the self time of the ops it records, so the many small ops of a
small model read up to twice their real time (measured on gpt-tiny, 8 x 128,
fp32: elementwise 7.4 ms under the profiler, 3.9 ms timed here) and the host
share left over comes out wrong. A ``TorchDispatchMode`` sees every aten op
below autograd once (the ops a kernel calls internally run inside it, unseen);
the timer reads the clock right around the op, so its own Python runs between
ops, where it slows the step but is not counted. Kernel seconds are summed per
category (``step_breakdown.op_category``; anything the optimizer runs ->
optimizer); host is the step's time they leave uncovered, less the timer's own
cost per op (measured beside it): Python, nn.Module calls, autograd's records
and engine.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from estimator.ops import CATEGORIES
from profiler.step_breakdown import op_category


class OpTimer(TorchDispatchMode):
    """Seconds per op-graph category of every aten op dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = {c: 0.0 for c in CATEGORIES}
        self.ops = 0
        self.in_optimizer = False

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # torch's dynamo-disable wrapper imports torch._dynamo (~1 s); nothing compiles in here

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        seconds = time.perf_counter() - start
        if self.in_optimizer:
            category = "optimizer"
        else:
            shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
            category = op_category("aten::" + func.__name__.split(".")[0], shapes)
        self.seconds[category] += seconds
        self.ops += 1
        return out


@contextmanager
def _optimizer_marked(optimizer: Any, timer: OpTimer) -> Iterator[None]:
    """``optimizer.step`` / ``zero_grad`` set the timer's optimizer flag while they run."""
    originals = {name: getattr(optimizer, name) for name in ("step", "zero_grad")}

    def marked(fn):
        def call(*args, **kwargs):
            timer.in_optimizer = True
            try:
                return fn(*args, **kwargs)
            finally:
                timer.in_optimizer = False
        return call

    for name, fn in originals.items():
        setattr(optimizer, name, marked(fn))
    try:
        yield
    finally:
        for name in originals:
            delattr(optimizer, name)  # back to the class's methods


def _timed_step(trainer, x, y) -> tuple[OpTimer, float]:
    """One op-timed step: the timer and the step's wall time. A shared CPU's stall (a neighbour, page
    reclaim) lands on whole steps, so of several the shortest is the one its ops describe."""
    timer = OpTimer()
    with _optimizer_marked(trainer.optimizer, timer), timer:
        start = time.perf_counter()
        trainer.step(x, y)
        wall = time.perf_counter() - start
    return timer, wall


def timer_cost_per_op(calls: int = 400) -> float:
    """Seconds the timer adds per op outside the ops' own spans (its Python between them), measured now on a
    tiny op with and without it: taken out of the timed step's host time."""
    a = torch.ones(4)

    def loop() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            torch.add(a, a)
        return time.perf_counter() - start

    loop()
    bare = min(loop() for _ in range(3))
    with OpTimer():
        timed = min(loop() for _ in range(3))
    return max(0.0, (timed - bare) / calls)


QUIET_OF = 3  # steps shorter than QUIET_BELOW_S are op-timed this many times, the least disturbed one kept
QUIET_BELOW_S = 0.5


def time_step_ops(trainer, x, y, reference_s: float | None = None, per_op_s: float | None = None) -> dict[str, Any]:
    """One step of ``trainer`` (a ``profiler.step.TrainingStep`` on the CPU) with every op timed: seconds per
    category; host = that step's time less its ops and the timer's own cost per op. Given ``reference_s``
    (the median timed step), the split is scaled to it: one step's ops vary by ±10 % on a shared CPU, and a
    host taken as the reference less the ops would collect all of that. ``per_op_s``: the timer's cost per
    op when already measured (``timer_cost_per_op``)."""
    per_op = timer_cost_per_op() if per_op_s is None else per_op_s
    tries = QUIET_OF if reference_s is None or reference_s < QUIET_BELOW_S else 1
    timer, wall = min((_timed_step(trainer, x, y) for _ in range(tries)), key=lambda tw: tw[1])
    categories = dict(timer.seconds)
    kernels = sum(v for c, v in categories.items() if c != "host")
    categories["host"] = max(0.0, wall - kernels - timer.ops * per_op)  # views included: inside wall - kernels
    total = sum(categories.values())
    if reference_s is not None and total > 0:
        categories = {c: v * reference_s / total for c, v in categories.items()}
    return {"categories": categories, "profiled_step_s": wall, "reference_s": reference_s, "events": timer.ops,
            "timer_cost_per_op_s": per_op, "method": METHOD}


METHOD = ("one extra step with every aten op timed at the dispatcher (TorchDispatchMode), ops mapped to the "
          "op graph's categories, host = that step less its ops and the timer's cost; scaled to the median step")
