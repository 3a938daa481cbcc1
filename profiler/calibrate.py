"""Measure this device's kernels once: the device profile the measured cost model interpolates.

The grid is generic (log-spaced GEMM shapes including skinny ones, attention
over (batch·heads, seq, head_dim), elementwise kernels from cache- to
DRAM-sized tensors, dispatch costs, the optimizer), never a model's own shapes,
so one profile predicts any model. It runs with the thread count and dtypes of
the run. Each point is the median call of a short window after one warm-up
call, its inputs cycled through copies larger than the last-level cache (read
cold, as an op's inputs in a step are); points whose FLOPs or call time exceed
a cap are not run: the nearest measured point is scaled. A fixed GEMM read
after each long grid (``profiler.speed_canary``) finds the grids a shared host's slow
spell fell on; they are timed again. On CUDA the same code times with CUDA
events (``profiler.kernel_timer``); the whole-step parts (host time, AdamW) are
``profiler.calibrate_step``'s.

A profile others competed with (``profiler.load_check``: their CPU share while
it measured) is marked busy; where profiles are cached and when one is reused
is ``profiler.profile_cache``'s.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from dataclasses import replace
from typing import Callable

from estimator.device_profile import ATTENTION_AXES, BIAS_KEY, ELEMENTWISE_AXES, GEMM_AXES, DeviceProfile, Grid
from estimator.errors import ConfigError
from profiler.adamw import fused_by_default
from profiler.calibrate_step import FRAMEWORK_PRECISIONS, measure_framework, measure_optimizer
from profiler.host_allocator import retain_freed_memory
from profiler.kernel_timer import MIN_REPEATS, KernelTimer, best_time, forward_backward, run_backward
from profiler.cpu_probe import _model_name, _cpuinfo_fields
from profiler.load_check import contention_since, read_ticks
from profiler.speed_canary import SpeedCanary

GEMM_SIZES = (16, 64, 256, 1024, 4096)
GEMM_M = (16, 64, 256, 1024, 4096)
GEMM_FLOP_CAP = 2**29  # a point above this is not run (the cost model scales a measured one): 0.5 GFLOP
ATTN_BH = (4, 32, 128)
ATTN_SEQ = (32, 128, 256, 512)
ATTN_HEAD_DIM = (16, 64)
ATTN_SCORE_CAP = 2**21  # bh·T² above this: not run
ELEMENT_SIZES = (2**11, 2**14, 2**17, 2**20, 2**23)  # 8 KiB to 32 MiB of fp32: cache to DRAM
ELEMENT_CALL_CAP_S = 0.004  # an elementwise size whose call would take longer is not run (scaled instead)
COLD_BYTES = 64 << 20  # inputs rotate over this much memory: more than the last-level cache (32 MiB on this EPYC)
COLD_COPIES = 64  # at most this many copies of a point's inputs (small ones then cycle within the caches)
ROW = 256  # row width of norm / activation / loss tensors
TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _fill(points: dict[tuple[int, ...], float], axes: tuple[tuple[int, ...], ...]) -> list[float]:
    """Grid values in row-major order. An unmeasured (capped) point scales the nearest measured one below
    it along the first axis (GEMM m, attention batch·heads: the time is proportional to it), in proportion
    to the size (throughput held). Then no point may take longer
    than a larger one (every size at least as large): such a point was disturbed while it was timed, and
    takes the larger one's time."""
    grid: dict[tuple[int, ...], float] = {}
    for point in itertools.product(*axes):
        if point in points:
            grid[point] = points[point]
            continue
        q = list(point)
        while tuple(q) not in points:  # step down the batch-like first axis (time ∝ it), then the largest
            d = 0 if axes[0].index(q[0]) > 0 else max(range(len(q)), key=lambda i: (axes[i].index(q[i]) > 0, q[i]))
            if axes[d].index(q[d]) == 0:
                raise RuntimeError(f"no measured point below {point}")
            q[d] = axes[d][axes[d].index(q[d]) - 1]
        grid[point] = points[tuple(q)] * math.prod(point) / math.prod(q)
    for point in sorted(grid, key=lambda p: [-x for x in p]):  # largest first: each bound is final
        for d in range(len(point)):
            i = axes[d].index(point[d])
            if i + 1 < len(axes[d]):
                above = point[:d] + (axes[d][i + 1],) + point[d + 1:]
                grid[point] = min(grid[point], grid[above])
    return [grid[p] for p in itertools.product(*axes)]


# ----------------------------------------------------------------- the grids

def _cold_copies(input_bytes: int) -> int:
    """Copies of a point's inputs (``input_bytes`` each) that calls cycle through, so each call reads its
    inputs as an op in a step does: written several ops ago, with the step's other tensors passed through
    the caches since, not warmed by the previous call. Measured in steps on this EPYC (fp32 add of
    512 KiB inputs: 13 µs repeated, 34 µs cycled, ~40 µs in a step), so every size is cycled."""
    return max(1, min(COLD_COPIES, COLD_BYTES // max(input_bytes, 1)))


def _kept_outputs(call: Callable[[], object], copies: int) -> Callable[[], None]:
    """``call`` whose results stay alive for ``copies`` calls, as a step keeps its activations: each call
    then writes a block not written since ``copies`` calls ago, not the one the previous call just freed
    (still in cache). Measured here for an fp32 add of 512 KiB-4 MiB: 1.06-1.25x the time of an output
    freed at once; 1.0x at 16 MiB (from DRAM either way)."""
    ring: list[object] = [None] * max(copies, 1)
    slot = itertools.count()

    def kept() -> None:
        ring[next(slot) % len(ring)] = call()

    return kept


PREFAULT_BYTES = 2 * COLD_BYTES + (64 << 20)  # the kept outputs of a grid point at most, and a 4096² fp32 GEMM's


def _prefault_heap(device, dtypes: tuple[str, ...]) -> None:
    """The input pools made, then ``PREFAULT_BYTES`` more of the heap touched once and freed (kept by
    ``host_allocator``): the kept outputs of the grid points then reuse memory already paged in, as a
    steady step does, instead of each paying fresh pages (here ~1.4 µs a 4 KiB page: a kept 512 KiB bf16
    output took 285 µs against 105 µs on paged-in memory; fp32 GEMMs of 4096 rows read up to 2.4x slow)."""
    import torch

    for d in dtypes:
        _input_pool(d, device, 0)
    block = torch.empty(PREFAULT_BYTES, dtype=torch.uint8, device=device)
    block.fill_(0)
    del block


def measure_gemm(dtype: str, device, timer, flop_cap: int = GEMM_FLOP_CAP, sizes=GEMM_SIZES, ms=GEMM_M) -> Grid:
    import torch

    td = getattr(torch, TORCH_DTYPES[dtype])
    points = {}
    shapes = [(m, n, k) for m in ms for n in sizes for k in sizes if 2 * m * n * k <= flop_cap]
    elem = torch.empty((), dtype=td).element_size()
    pool = _input_pool(dtype, device, max(COLD_BYTES // elem, max(m * k + n * k for m, n, k in shapes)))
    for m, n, k in shapes:
        # As for the elementwise kernels: the operands rotate through COLD_BYTES of copies, so a call
        # reads them as a layer's GEMM in a step does (the step's other ops ran since they were written),
        # not from a cache the previous call warmed: 1.04-1.4x slower here for 1-4 MiB operands.
        size = m * k + n * k
        copies = _cold_copies(size * elem)
        per_copy = pool[:copies * size].view(copies, size)  # copy c: x (m, k), then W (n, k); x @ Wᵀ as nn.Linear
        xs = per_copy[:, :m * k].unflatten(1, (m, k)).unbind(0)
        wts = per_copy[:, m * k:].unflatten(1, (n, k)).transpose(1, 2).unbind(0)
        cycle = itertools.cycle(tuple(zip(xs, wts)))
        kept = _cold_copies(m * n * elem)  # outputs kept: as many as fit COLD_BYTES (4096² fp32: one)
        points[(m, n, k)] = best_time(timer, _kept_outputs(lambda: torch.mm(*next(cycle)), kept))
    axes = (tuple(ms), tuple(sizes), tuple(sizes))
    return Grid(GEMM_AXES, axes, tuple(_fill(points, axes)))


ATTN_HEADS = 8  # heads per sample in the grid's layout: bh = batch x min(bh, 8)


def measure_attention(kind: str, dtype: str, device, timer, bh_axis=ATTN_BH, seq_axis=ATTN_SEQ,
                      dim_axis=ATTN_HEAD_DIM, score_cap: int = ATTN_SCORE_CAP) -> dict[str, Grid]:
    """Forward and backward of the causal attention core alone, in the model's layout: q, k, v are
    per-head views of one (batch, T, 3·heads·d) projection. The backward is the attention's own autograd
    nodes (grads with respect to those views, the graph retained), so the qkv split's concatenated grad
    and the engine's start, which the op graph counts as their own ops, are not in it."""
    import torch.nn.functional as F

    from profiler.model import explicit_attention

    attend = ((lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)) if kind == "sdpa"
              else explicit_attention)
    fwd, bwd = {}, {}
    for bh in bh_axis:
        heads = min(bh, ATTN_HEADS)
        batch = bh // heads
        for t in seq_axis:
            for d in dim_axis:
                if bh * t * t > score_cap:
                    continue
                size = batch * t * 3 * heads * d  # inputs from the shared pool: no fill per point
                pool = _input_pool(dtype, device, size + size // 3)
                qkv = pool[:size].view(batch, t, 3 * heads * d).detach().requires_grad_()
                q, k, v = (x.view(batch, t, heads, d).transpose(1, 2) for x in qkv.split(heads * d, dim=-1))
                grad = pool[size:size + size // 3].view(batch, heads, t, d)
                out: list = [None]  # the last forward's output (and graph): the backward's, no extra forward

                def forward():
                    out[0] = attend(q, k, v)

                fwd[(bh, t, d)] = best_time(timer, forward)
                bwd[(bh, t, d)] = best_time(timer, lambda y=out[0]: run_backward(y, (q, k, v), grad, retain_graph=True))
                out[0] = None  # the retained graph goes with the output
    axes = (tuple(bh_axis), tuple(seq_axis), tuple(dim_axis))
    return {"forward_s": Grid(ATTENTION_AXES, axes, tuple(_fill(fwd, axes))),
            "backward_s": Grid(ATTENTION_AXES, axes, tuple(_fill(bwd, axes)))}


def _elementwise_calls(kernel: str, n: int, dtype: str, device, x=None, g=None) -> dict[str, Callable[[], object]]:
    """Raw calls (no autograd) of one kernel on n elements (inputs ``x``, ``g``: rows x ROW): the forward
    and, where it differs, the backward."""
    import torch
    import torch.nn.functional as F

    td = getattr(torch, TORCH_DTYPES[dtype])
    rows = max(1, n // ROW)
    x = torch.randn(rows, ROW, device=device, dtype=td) if x is None else x
    g = torch.randn(rows, ROW, device=device, dtype=td) if g is None else g
    if kernel == "binary":
        return {"forward": lambda: torch.add(x, g)}
    if kernel == "cast":  # to ``dtype`` from the other one
        src = x.float() if dtype != "fp32" else x.to(torch.bfloat16)
        return {"forward": lambda: src.to(td)}
    if kernel == "copy":
        y = x.view(-1, 64, ROW // 64)
        return {"forward": lambda: y.transpose(1, 2).contiguous()}
    if kernel == "sum":
        return {"backward": lambda: g.sum(0)}
    if kernel == "layernorm":
        w, b = torch.ones(ROW, device=device, dtype=td), torch.zeros(ROW, device=device, dtype=td)
        _, mean, rstd = torch.ops.aten.native_layer_norm(x, [ROW], w, b, 1e-5)
        return {"forward": lambda: F.layer_norm(x, (ROW,), w, b),
                "backward": lambda: torch.ops.aten.native_layer_norm_backward(g, x, [ROW], mean, rstd, w, b,
                                                                              [True, True, True])}
    if kernel == "rmsnorm":
        w = torch.ones(ROW, device=device, dtype=td, requires_grad=True)
        xg = x.detach().requires_grad_(True)
        return {"forward": lambda: F.rms_norm(x, (ROW,), w.detach()),
                "backward": lambda: forward_backward(lambda: F.rms_norm(xg, (ROW,), w), (xg, w), g)}
    if kernel == "gelu":
        return {"forward": lambda: F.gelu(x),
                "backward": lambda: torch.ops.aten.gelu_backward(g, x)}
    if kernel == "silu":
        return {"forward": lambda: F.silu(x), "backward": lambda: torch.ops.aten.silu_backward(g, x)}
    if kernel == "cross_entropy":
        vocab = 1024
        logits = x.reshape(-1, vocab) if n >= vocab else torch.randn(1, vocab, device=device, dtype=td)
        target = torch.randint(0, vocab, (logits.shape[0],), device=device)
        lg = logits.detach().requires_grad_(True)
        return {"forward": lambda: F.cross_entropy(logits, target),
                "backward": lambda: forward_backward(lambda: F.cross_entropy(lg, target), (lg,))}
    if kernel == "embedding":  # one table for every copy of the inputs: a forward reads only its rows
        table = _POOLS.get(("embedding", dtype, str(device)))
        if table is None:
            table = _POOLS[("embedding", dtype, str(device))] = torch.randn(4096, ROW, device=device, dtype=td)
        idx = torch.randint(0, 4096, (rows,), device=device)
        return {"forward": lambda: F.embedding(idx, table),
                "backward": lambda: torch.ops.aten.embedding_dense_backward(g, idx, 4096, -1, False)}
    raise ConfigError(f"no micro-benchmark for the elementwise kernel {kernel!r}")


AUTOGRAD_BACKWARD = ("rmsnorm", "cross_entropy")  # their backward timing includes a forward: subtracted
_POOLS: dict = {}


def _input_pool(dtype: str, device, elements: int):
    """One pool of random inputs per dtype, reused by every GEMM and elementwise point (cheaper than new
    tensors: filling one costs ~5 ns an element). Made at once as large as the default grids need (cold
    copies, the largest elementwise input and its gradient), so no grid makes it again."""
    import torch

    key = (dtype, str(device))
    pool = _POOLS.get(key)
    if pool is None or pool.numel() < elements:
        td = getattr(torch, TORCH_DTYPES[dtype])
        default = max(COLD_BYTES // torch.empty((), dtype=td).element_size(), 2 * max(ELEMENT_SIZES))
        pool = torch.empty(max(elements, default), device=device, dtype=td).uniform_(-2, 2)
        _POOLS[key] = pool
    return pool


ELEMENTWISE_MEASURED = ("binary", "cast", "copy", "sum", "layernorm", "rmsnorm", "gelu", "silu",
                        "cross_entropy", "embedding")


def measure_elementwise(kernel: str, dtype: str, device, timer, sizes=ELEMENT_SIZES) -> dict[str, Grid]:
    import torch

    td = getattr(torch, TORCH_DTYPES[dtype])
    elem = torch.empty((), dtype=td).element_size()
    pool = _input_pool(dtype, device, max(COLD_BYTES // elem, 2 * max(sizes)))
    out: dict[str, dict[tuple[int], float]] = {}
    for i, n in enumerate(sizes):
        if i and max(max(pts.values()) for pts in out.values()) * n / sizes[i - 1] > ELEMENT_CALL_CAP_S:
            break  # the next size would cost too long a call: the larger points scale this one
        rows = max(1, n // ROW)
        copies = _cold_copies(2 * n * elem)
        versions = []
        for c in range(copies):
            x = pool[2 * c * rows * ROW:(2 * c + 1) * rows * ROW].view(rows, ROW)
            g = pool[(2 * c + 1) * rows * ROW:(2 * c + 2) * rows * ROW].view(rows, ROW)
            versions.append(_elementwise_calls(kernel, n, dtype, device, x, g))
        for phase in versions[0]:
            cycle = itertools.cycle([v[phase] for v in versions])
            out.setdefault(phase, {})[(n,)] = best_time(timer, _kept_outputs(lambda: next(cycle)(), copies))
    if kernel in AUTOGRAD_BACKWARD:
        out["backward"] = {n: max(t - out["forward"][n], 0.1 * t) for n, t in out["backward"].items()}
    axes = (tuple(sizes),)
    return {phase: Grid(ELEMENTWISE_AXES, axes, tuple(_fill(pts, axes))) for phase, pts in out.items()}


LAYOUT_SHAPES = ((1024, 256, 256), (2048, 128, 512), (1024, 512, 128), (256, 1024, 1024))  # (tokens, in, out)


BIAS_SHAPES = LAYOUT_SHAPES + ((4096, 64, 64), (4096, 64, 256))  # (tokens, in, out); narrow in: a cheap GEMM
BIAS_POINT_SECONDS = 0.008  # a difference of two timings: longer windows than a grid point's


def measure_gemm_layouts(dtype: str, device, timer) -> dict[str, float]:
    """How much slower the backward GEMMs' layouts run than the forward's x·Wᵀ of the same (m, n, k):
    dX = dY·W and dW = dYᵀ·X, as the geometric mean over a few mid-sized shapes; and what adding a
    Linear's bias costs beyond x·Wᵀ (addmm against mm), per output element, the median over a few shapes:
    a pass over the output where the backend does not fuse it (on this EPYC bf16: +4-26 %, largest for a
    narrow input; fp32: none)."""
    import torch

    td = getattr(torch, TORCH_DTYPES[dtype])
    ratios: dict[str, list[float]] = {"backward_input": [], "backward_weight": []}
    for t, i, o in LAYOUT_SHAPES:
        x, w, dy = (torch.randn(*s, device=device, dtype=td) for s in ((t, i), (o, i), (t, o)))
        nt_in = (torch.randn(t, o, device=device, dtype=td), torch.randn(i, o, device=device, dtype=td).t())
        nt_w = (torch.randn(o, t, device=device, dtype=td), torch.randn(i, t, device=device, dtype=td).t())
        ratios["backward_input"].append(best_time(timer, lambda: dy @ w) / best_time(timer, lambda: nt_in[0] @ nt_in[1]))
        ratios["backward_weight"].append(best_time(timer, lambda: dy.t() @ x)
                                         / best_time(timer, lambda: nt_w[0] @ nt_w[1]))
    out = {k: math.exp(sum(map(math.log, v)) / len(v)) for k, v in ratios.items()}
    per_output = []
    for t, i, o in BIAS_SHAPES:  # outputs kept alive, as the forward keeps them (``_kept_outputs``)
        x, w, b = (torch.randn(*s, device=device, dtype=td) for s in ((t, i), (o, i), (o,)))
        copies = _cold_copies(t * o * x.element_size())  # outputs kept: as many as fit COLD_BYTES
        plain = best_time(timer, _kept_outputs(lambda: torch.mm(x, w.t()), copies), BIAS_POINT_SECONDS)
        biased = best_time(timer, _kept_outputs(lambda: torch.addmm(b, x, w.t()), copies), BIAS_POINT_SECONDS)
        per_output.append((biased - plain) / (t * o))
    out[BIAS_KEY] = max(statistics.median(per_output), 1e-15)  # none measured: a positive zero
    return out


def measure_dispatch(device, timer) -> dict[str, float]:
    """``bare_s``: one call of a kernel on four elements — the floor of every op's time."""
    import torch

    a = torch.randn(4, device=device)
    b = torch.randn(4, device=device)
    return {"bare_s": best_time(timer, lambda: torch.mul(a, b))}


def measure_profile(device="cpu", dtypes: tuple[str, ...] = ("fp32", "bf16"), optimizer_impl: str | None = None,
                    point_seconds: float | None = None) -> DeviceProfile:
    """Measure every grid on ``device`` with torch's current thread count (a few seconds on a CPU)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cpu":
        retain_freed_memory()  # the allocator the profiled step runs with (profiler.host_allocator)
    timer = KernelTimer(dev, point_seconds)
    impl = optimizer_impl or ("fused" if fused_by_default(dev.type) else "foreach")  # the AdamW a step uses
    ticks = read_ticks()  # others' CPU use over the measurement decides whether it is kept (load_check)
    start = time.perf_counter()
    try:
        if dev.type == "cpu":
            _prefault_heap(dev, dtypes)  # inside the measured time: part of what a profile costs
        canary = SpeedCanary(dev, timer)
        gemm: dict = {}
        with torch.no_grad():
            for d in dtypes:
                canary.timed(f"gemm {d}", lambda d=d: measure_gemm(d, dev, timer),
                             lambda grid, d=d: gemm.__setitem__(d, grid))
            elementwise: dict = {}
            for kernel in ELEMENTWISE_MEASURED:
                for d in dtypes if kernel != "cross_entropy" else ("fp32",):
                    elementwise.setdefault(kernel, {})[d] = measure_elementwise(kernel, d, dev, timer)
        attention: dict = {}
        for kind in ("sdpa", "explicit"):
            for d in dtypes:
                canary.timed(f"{kind} {d}", lambda kind=kind, d=d: measure_attention(kind, d, dev, timer),
                             lambda grids, kind=kind, d=d: attention.setdefault(kind, {}).__setitem__(d, grids))
        dispatch = measure_dispatch(dev, timer)
        with torch.no_grad():
            layouts = {d: measure_gemm_layouts(d, dev, timer) for d in dtypes}
        optimizer = {f"adamw.{impl}": measure_optimizer(impl, dev, timer)}
        canary.retime_slow()
        grids = DeviceProfile(
            device_kind="cuda" if dev.type == "cuda" else "cpu", device_name=device_name(dev),
            torch_version=torch.__version__, threads=torch.get_num_threads(),
            measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_average=None, busy=False,
            measure_seconds=0.0, dispatch=dispatch, gemm=gemm, attention=attention, elementwise=elementwise,
            optimizer=optimizer, gemm_layout=layouts)
        framework = measure_framework(dev, timer, grids, tuple(FRAMEWORK_PRECISIONS[d] for d in dtypes if d in FRAMEWORK_PRECISIONS))
    finally:
        _POOLS.clear()
    elapsed = time.perf_counter() - start
    contention = contention_since(ticks)
    notes = [f"median call in a {timer.point_seconds * 1e3:g} ms window (at least {MIN_REPEATS}) per point after "
             "a warm-up call; GEMMs over "
             f"{2 * GEMM_FLOP_CAP / 2 / 1e9:.2g} GFLOP, attention over {ATTN_SCORE_CAP} scores scaled from the "
             "nearest measured point", canary.note()]
    if contention.busy:
        notes.append(f"machine busy ({contention.reason()}): not cached")
    return replace(grids, framework=framework, measure_seconds=elapsed, notes=tuple(notes),
                   load_average=contention.load_average, others_cpu_share=contention.others_share,
                   busy=contention.busy)


def device_name(device) -> str:
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return _model_name(_cpuinfo_fields())
