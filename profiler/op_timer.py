"""Where a CPU step's time goes: its aten ops recorded once, then replayed and timed one by one.

Why not ``torch.profiler`` on the CPU: its cost per recorded event (a few µs)
lands inside the self time of the ops it records, so the many small ops of a
small model read up to twice their real time (gpt-tiny, 8 x 128, fp32:
elementwise 7.4 ms under the profiler, 3.9 ms timed at the dispatcher).

Why not time the ops inside the live step: a ``TorchDispatchMode`` runs Python
around every op (~5 µs: argument wrapping, the timer's own code) between the
kernels, which slows both the ops and the Python around them (caches refilled
after every kernel), so "host" = the step less its ops came out 2-5x too
large and grew with the activations (gpt-tiny fp32: 2.0 ms at batch 2, 5.2 ms
at batch 64, where a step less the replay of its own ops leaves 0.4-1.3 ms).

So: one step runs under ``OpRecorder``, which keeps each aten op (below
autograd), its arguments and its category (``step_breakdown.op_category``;
anything the optimizer runs -> optimizer). The recorded ops are then replayed
in order, with no mode active and grad off, once untimed (fresh output pages,
cold caches), then ``rounds`` times, each op timed
with two clock reads; an op's time is its median over the rounds (a shared
CPU's stall lands on one round, not on the median). Host = the reference step
(the run's median timed step) less the replayed ops: Python, ``nn.Module``
calls, autograd's records and engine — what the plain step does beyond its
kernels. A step whose recorded tensors would exceed ``RECORD_LIMIT_BYTES`` is
timed live instead (``OpTimer``: large ops, where the per-op Python is small).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from estimator.ops import CATEGORIES
from profiler.step_breakdown import attention_layout_copies, op_category


class _StepMode(TorchDispatchMode):
    """A dispatch mode that sees one step's aten ops and names each one's category: ``optimizer`` while
    the optimizer runs (``_optimizer_marked``), else ``step_breakdown.op_category``'s."""

    def __init__(self) -> None:
        super().__init__()
        self.in_optimizer = False

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # torch's dynamo-disable wrapper imports torch._dynamo (~1 s); nothing compiles in here

    def category(self, func, args: tuple) -> str:
        if self.in_optimizer:
            return "optimizer"
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        return op_category(aten_name(func), shapes)


def aten_name(func) -> str:
    """``aten::clone`` for ``aten.clone.default``: the name ``step_breakdown`` classifies by."""
    return "aten::" + func.__name__.split(".")[0]


def op_signature(func, args: tuple) -> tuple[str, int]:
    """An op's aten name and its first tensor input's rank (``step_breakdown.attention_layout_copies``)."""
    rank = next((a.dim() for a in args if isinstance(a, torch.Tensor)), 0)
    return aten_name(func), rank


class OpTimer(_StepMode):
    """Seconds per op-graph category of every aten op dispatched while active, timed in the live step."""

    def __init__(self) -> None:
        super().__init__()
        self.timed: list[tuple[tuple[str, int], str, float]] = []  # (op_signature, category, seconds) per op

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        seconds = time.perf_counter() - start
        self.timed.append((op_signature(func, args), self.category(func, args), seconds))
        return out

    @property
    def ops(self) -> int:
        return len(self.timed)

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds per category (explicit attention's own operand copies counted as attention)."""
        signatures = [signature for signature, _, _ in self.timed]
        categories = attention_layout_copies(signatures, [category for _, category, _ in self.timed])
        out = {c: 0.0 for c in CATEGORIES}
        for category, (_, _, t) in zip(categories, self.timed):
            out[category] += t
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
    """One live op-timed step: the timer and the step's wall time."""
    timer = OpTimer()
    with _optimizer_marked(trainer.optimizer, timer), timer:
        start = time.perf_counter()
        trainer.step(x, y)
        wall = time.perf_counter() - start
    return timer, wall


def timer_cost_per_op(calls: int = 400) -> float:
    """Seconds the live timer adds per op outside the ops' own spans, measured on a tiny op with and
    without it: taken out of a live-timed step's host time."""
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


class OpRecorder(_StepMode):
    """Keeps every aten op dispatched while active — (op, args, kwargs, category) — until the tensors it
    holds pass ``limit_bytes`` (then ``overflowed``, and nothing more is kept)."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__()
        self.ops: list[tuple[Any, tuple, dict, str]] = []
        self.limit_bytes, self.held_bytes, self.overflowed = limit_bytes, 0, False
        self._storages: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.overflowed and self._held(args, kwargs):
            self.ops.append((func, args, kwargs, self.category(func, args)))
        return func(*args, **kwargs)

    def _held(self, args: tuple, kwargs: dict) -> bool:
        """Counts the op's new tensors; False (and nothing kept from now on) once past the limit."""
        for value in tree_leaves((args, kwargs)):
            if isinstance(value, torch.Tensor) and value.device.type == "cpu":
                storage = value.untyped_storage()
                if storage.data_ptr() not in self._storages:
                    self._storages.add(storage.data_ptr())
                    self.held_bytes += storage.nbytes()
        if self.held_bytes > self.limit_bytes:
            self.overflowed, self.ops, self._storages = True, [], set()
        return not self.overflowed


KEPT_OUTPUT_BYTES = 64 << 20  # replayed outputs stay alive until this much newer output has been written


def replay_seconds(ops: list[tuple[Any, tuple, dict, str]], rounds: int) -> list[float]:
    """Each recorded op's median seconds over ``rounds`` in-order replays (no mode active, grad off), after
    one untimed replay: the first pays what a steady step does not — fresh pages for every output (every
    intermediate stays alive, so nothing is reused) and cold caches (gpt-small 8 x 256 fp32, explicit
    attention: the first replay 1018 ms, the next two 727 and 767 ms, elementwise 170 against 54-62 ms).
    Outputs are kept alive for ``KEPT_OUTPUT_BYTES`` of later ones, as a step keeps its activations: an op
    then writes memory not written just before (as the device profile's grids do, ``calibrate``), not the
    block the previous op's discarded output freed, which is still in cache."""
    times = [[0.0] * (rounds + 1) for _ in ops]  # round 0: the untimed warm-up (its memory paged in)
    clock = time.perf_counter
    kept: deque = deque()
    kept_bytes = 0
    with torch.no_grad():
        for r in range(rounds + 1):
            for i, (func, args, kwargs, _) in enumerate(ops):
                start = clock()
                out = func(*args, **kwargs)
                times[i][r] = clock() - start
                size = sum(t.nbytes for t in tree_leaves(out) if isinstance(t, torch.Tensor))
                if size:
                    kept.append((out, size))
                    kept_bytes += size
                    while kept_bytes > KEPT_OUTPUT_BYTES and len(kept) > 1:
                        kept_bytes -= kept.popleft()[1]
                del out
    return [statistics.median(t[1:]) for t in times]


RECORD_LIMIT_BYTES = 2 * 2**30  # tensors a recorded step may hold (every intermediate stays alive)
REPLAY_SECONDS = 0.6  # replay budget: rounds = this over the step's time, within REPLAY_ROUNDS
REPLAY_ROUNDS = (1, 7)  # a step of 0.6 s or more is timed in one replay (after the untimed one): its ops are long enough


def replay_rounds(step_s: float) -> int:
    """How many times a step of ``step_s`` seconds is replayed: ``REPLAY_SECONDS`` worth, within ``REPLAY_ROUNDS``."""
    low, high = REPLAY_ROUNDS
    return max(low, min(high, int(REPLAY_SECONDS / max(step_s, 1e-6))))


def _plain_step_seconds(trainer, x, y, steps: int = 3) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.step(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_step_ops(trainer, x, y, reference_s: float | None = None, limit_bytes: int | None = None) -> dict[str, Any]:
    """Seconds per category of one step of ``trainer`` (a ``profiler.step.TrainingStep`` on the CPU): its ops
    recorded and replayed (median per op); host = ``reference_s`` (the median timed step; else the median of
    three plain steps timed here) less them. Ops that replay slower than the reference are scaled to it."""
    from profiler.memory_meter import available_ram

    limit = limit_bytes if limit_bytes is not None else min(RECORD_LIMIT_BYTES, available_ram() // 4)
    recorder = OpRecorder(limit)
    with _optimizer_marked(trainer.optimizer, recorder), recorder:
        start = time.perf_counter()
        trainer.step(x, y)
        recorded_wall = time.perf_counter() - start
    if recorder.overflowed:
        return _time_live(trainer, x, y, reference_s)
    ops = recorder.ops
    reference = reference_s if reference_s is not None else _plain_step_seconds(trainer, x, y)
    rounds = replay_rounds(reference)
    try:
        seconds = replay_seconds(ops, rounds)
    except Exception:  # noqa: BLE001 - an op that cannot run again (a user model's own op): timed live instead
        ops = recorder = None  # the recorded tensors go before the live steps allocate their own
        return _time_live(trainer, x, y, reference_s)
    categories = {c: 0.0 for c in CATEGORIES}
    signatures = [op_signature(func, args) for func, args, *_ in ops]
    for category, t in zip(attention_layout_copies(signatures, [op[3] for op in ops]), seconds):
        categories[category] += t
    replayed = sum(seconds)
    if replayed > reference:  # the replay ran slower than the step: the split is kept, its sum is the step
        categories = {c: v * reference / replayed for c, v in categories.items()}
    else:
        categories["host"] += reference - replayed
    return {"categories": categories, "profiled_step_s": recorded_wall, "reference_s": reference_s,
            "events": len(seconds), "replay_rounds": rounds, "replayed_s": replayed,
            "recorded_bytes": recorder.held_bytes,
            "method": METHOD}


def _time_live(trainer, x, y, reference_s: float | None) -> dict[str, Any]:
    """A step too large to record: its ops timed inside the live step (the least disturbed of a few for a
    short one); host = that step less its ops and the timer's cost per op, scaled to ``reference_s``."""
    per_op = timer_cost_per_op()
    tries = 3 if reference_s is None or reference_s < 0.5 else 1
    timer, wall = min((_timed_step(trainer, x, y) for _ in range(tries)), key=lambda tw: tw[1])
    categories = dict(timer.seconds)
    kernels = sum(v for c, v in categories.items() if c != "host")
    categories["host"] = max(0.0, wall - kernels - timer.ops * per_op)
    total = sum(categories.values())
    if reference_s is not None and total > 0:
        categories = {c: v * reference_s / total for c, v in categories.items()}
    return {"categories": categories, "profiled_step_s": wall, "reference_s": reference_s, "events": timer.ops,
            "timer_cost_per_op_s": per_op, "method": LIVE_METHOD}


METHOD = ("one extra step's aten ops recorded (TorchDispatchMode) and replayed one by one, the median of "
          "several rounds per op, mapped to the op graph's categories; host = the median timed step less them")
LIVE_METHOD = ("one extra step with every aten op timed at the dispatcher (TorchDispatchMode), ops mapped to "
               "the op graph's categories, host = that step less its ops and the timer's cost; scaled to the "
               "median step")
