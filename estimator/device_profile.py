"""The device profile: measured kernel times on one device, as a readable, strictly validated JSON file.

A profile is a micro-benchmark grid, not the shapes of any model: GEMM seconds
per dtype over log-spaced (m, n, k), the attention core (SDPA and explicit)
over (batch·heads, seq, head_dim), elementwise kernels over tensor sizes from
cache- to DRAM-sized, the per-op dispatch costs of a training step and the
optimizer's per-step / per-tensor / per-element cost. ``profiler.calibrate``
measures it; ``estimator.cost_model`` interpolates it. A file comes from
outside (the cache, a user's ``--device-profile``), so ``from_dict`` trusts
nothing: every number must be finite and positive, every grid complete and
ascending, or a ``ConfigError`` names the file and the entry.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from estimator.errors import ConfigError

SCHEMA = "mfutop.device_profile/6"  # 2: attention backward alone, framework per layer; 3: AdamW per element in
# cache and from DRAM; 4: GEMM operands from 1 MiB on read cold (a /3 profile's GEMMs were timed cache-warm);
# 5: attention measured up to batch·heads 128 (a /4 profile scaled 32's time, 1.2-1.35x too long on a CPU);
# 6: GEMM and elementwise outputs kept alive as a step's (a /5 profile's wrote cache-warm blocks); the bias
# pass of an addmm (gemm_layout.<dtype>.bias_per_output_s)
DISPATCH_KEYS = ("bare_s",)
FRAMEWORK_KEYS = ("per_step_s", "per_layer_s")
LAYOUT_PASSES = ("backward_input", "backward_weight")
BIAS_KEY = "bias_per_output_s"  # gemm_layout[dtype]: seconds per output element an addmm adds to its mm
OPTIMIZER_KEYS = ("step_s", "per_tensor_s", "per_element_s", "per_element_dram_s")
# The AdamW working sets (parameter elements of a step) at which per_element_s (cache-resident: 4 x 2^18
# fp32, 16 MiB of weights, gradients and moments) and per_element_dram_s (4 x 2^21, 128 MiB) are measured.
OPTIMIZER_CACHE_ELEMENTS = 4 * 2**18
OPTIMIZER_DRAM_ELEMENTS = 4 * 2**21


def optimizer_element_seconds(opt: dict[str, float], step_elements: int) -> float:
    """Seconds per parameter element of an AdamW step whose tensors hold ``step_elements`` in all: each
    foreach pass sweeps every tensor before the next pass, so the whole step's state is the working set;
    log-linear between the cache-resident and the DRAM measurement, clamped outside them."""
    lo, hi = math.log(OPTIMIZER_CACHE_ELEMENTS), math.log(OPTIMIZER_DRAM_ELEMENTS)
    f = min(max((math.log(max(step_elements, 1)) - lo) / (hi - lo), 0.0), 1.0)
    return opt["per_element_s"] + f * (opt["per_element_dram_s"] - opt["per_element_s"])
GEMM_AXES = ("m", "n", "k")
ATTENTION_AXES = ("bh", "seq", "head_dim")
ELEMENTWISE_AXES = ("elements",)
ATTENTION_PASSES = ("forward_s", "backward_s")
# Axes along which a kernel's time is affine in the size, interpolated linearly (``Grid.lookup``): the
# attention core's work and traffic are in proportion to batch·heads, and per (batch·heads, T) it is a
# score part (mask, softmax: T² whatever the head size) plus two GEMMs in proportion to head_dim. On this
# EPYC, from grids with a middle point measured (216 points at head_dim 32, 96 at bh 16; 3 repeats),
# linear interpolation misses it by +3.3 % (head_dim) and +0.8 % (bh) on average, log-log by +7.9 % and +4.2 %.
LINEAR_AXES = frozenset({"bh", "head_dim"})
MAX_AXIS_POINTS = 64
MAX_CALIBRATIONS = 1000  # a profile averages at most this many measurements (a sanity bound on the file)


@dataclass(frozen=True)
class Grid:
    """Seconds on a log-spaced grid; ``values`` flattened in row-major order of ``axes``."""

    names: tuple[str, ...]
    axes: tuple[tuple[int, ...], ...]
    values: tuple[float, ...]

    def lookup(self, point: tuple[float, ...]) -> tuple[float, bool]:
        """(seconds, extrapolated): multilinear inside the grid, in log(size) -> log(seconds) along most
        axes (a throughput that changes with size: cache levels, tiles, T² score work), in size -> seconds
        along ``LINEAR_AXES`` (an affine cost: a fixed part plus a part in proportion to the size).

        Outside it, a size above the largest point scales the time in proportion
        (throughput held at the edge), one below the smallest keeps the edge's
        time (a fixed per-call cost dominates there); either says ``True``.
        """
        extrapolated = False
        scale = 1.0
        cells = []  # per axis: (lower index, weight of the upper point, interpolated in linear space)
        for name, x, axis in zip(self.names, point, self.axes):
            if x > axis[-1]:
                scale *= x / axis[-1]
                x, extrapolated = axis[-1], True
            elif x < axis[0]:
                x, extrapolated = axis[0], True
            if len(axis) == 1:
                cells.append((0, 0.0, False))
                continue
            i = min(bisect_right(axis, x) - 1, len(axis) - 2)
            if name in LINEAR_AXES:
                cells.append((i, (x - axis[i]) / (axis[i + 1] - axis[i]), True))
                continue
            lo, hi = math.log(axis[i]), math.log(axis[i + 1])
            cells.append((i, (math.log(x) - lo) / (hi - lo), False))
        # log-space sums per corner of the linear axes, then those corners combined linearly
        log_t: dict[int, float] = {}
        linear_weight: dict[int, float] = {}
        for corner in range(1 << len(self.axes)):
            weight, index, linear_corner, lin_w = 1.0, 0, 0, 1.0
            for d, (i, w, linear) in enumerate(cells):
                upper = (corner >> d) & 1
                if upper and len(self.axes[d]) == 1:
                    weight = 0.0
                    break
                if linear:
                    lin_w *= w if upper else 1.0 - w
                    linear_corner |= upper << d
                else:
                    weight *= w if upper else 1.0 - w
                index = index * len(self.axes[d]) + i + upper
            if weight and lin_w:
                log_t[linear_corner] = log_t.get(linear_corner, 0.0) + weight * math.log(self.values[index])
                linear_weight[linear_corner] = lin_w
        seconds = sum(linear_weight[c] * math.exp(v) for c, v in log_t.items())
        return seconds * scale, extrapolated

    def to_dict(self) -> dict[str, Any]:
        return {"axes": {n: list(a) for n, a in zip(self.names, self.axes)}, "seconds": list(self.values)}


@dataclass(frozen=True)
class DeviceProfile:
    device_kind: str  # "cpu" | "cuda"
    device_name: str
    torch_version: str
    threads: int
    measured_at: str
    load_average: float | None  # 1-minute, as the measurement ended
    busy: bool  # other work competed while it measured (profiler.load_check): not cached, not reused
    measure_seconds: float
    dispatch: dict[str, float]
    gemm: dict[str, Grid]  # dtype -> (m, n, k)
    attention: dict[str, dict[str, dict[str, Grid]]]  # kind -> dtype -> pass -> (bh, seq, head_dim)
    elementwise: dict[str, dict[str, dict[str, Grid]]]  # kernel -> dtype -> pass -> (elements,)
    optimizer: dict[str, dict[str, float]]  # "adamw.foreach" -> OPTIMIZER_KEYS
    gemm_layout: dict[str, dict[str, float]] = field(default_factory=dict)  # dtype -> pass -> time / forward's
    # framework_variant(...) -> FRAMEWORK_KEYS: the host time of a step beyond its kernels (Python, modules,
    # autograd, views), per micro-batch and per block, measured on two tiny instances of the profiled GPT
    framework: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: tuple[str, ...] = field(default_factory=tuple)
    others_cpu_share: float | None = None  # other processes' share of the CPUs' time while it measured
    calibrations: int = 1  # measurements it averages (``profiler.profile_merge``)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "device": {"kind": self.device_kind, "name": self.device_name},
            "torch_version": self.torch_version, "threads": self.threads, "measured_at": self.measured_at,
            "load_average": self.load_average, "others_cpu_share": self.others_cpu_share, "busy": self.busy,
            "measure_seconds": self.measure_seconds, "calibrations": self.calibrations,
            "dispatch": dict(self.dispatch),
            "gemm": {d: g.to_dict() for d, g in self.gemm.items()},
            "attention": {k: {d: {p: g.to_dict() for p, g in by.items()} for d, by in kd.items()}
                          for k, kd in self.attention.items()},
            "elementwise": {k: {d: {p: g.to_dict() for p, g in by.items()} for d, by in kd.items()}
                            for k, kd in self.elementwise.items()},
            "optimizer": {k: dict(v) for k, v in self.optimizer.items()},
            "gemm_layout": {k: dict(v) for k, v in self.gemm_layout.items()},
            "framework": {k: dict(v) for k, v in self.framework.items()},
            "notes": list(self.notes),
        }

    def summary(self) -> dict[str, Any]:
        """The headline figures a person reads: best GEMM rate per dtype, dispatch costs, grid sizes."""
        rates = {}
        for dtype, grid in self.gemm.items():
            best = 0.0
            for idx, t in enumerate(grid.values):
                m, n, k = _unflatten(idx, grid.axes)
                best = max(best, 2 * m * n * k / t)
            rates[dtype] = best
        return {"gemm_best_flops": rates, "dispatch": dict(self.dispatch),
                "framework": {k: dict(v) for k, v in self.framework.items()},
                "points": sum(len(g.values) for g in self._grids())}

    def _grids(self):
        yield from self.gemm.values()
        for tree in (self.attention, self.elementwise):
            for by_dtype in tree.values():
                for by_pass in by_dtype.values():
                    yield from by_pass.values()


def _unflatten(index: int, axes: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    out = []
    for axis in reversed(axes):
        out.append(axis[index % len(axis)])
        index //= len(axis)
    return tuple(reversed(out))


# ----------------------------------------------------------------- validation

class _Reader:
    """Strict accessors that name the file and the entry in every error."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, what: str) -> ConfigError:
        return ConfigError(f"device profile {self.source}: {where}: {what}")

    def obj(self, data: Any, where: str) -> dict:
        if not isinstance(data, dict):
            raise self.fail(where, f"expected an object, got {type(data).__name__}")
        return data

    def seconds(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise self.fail(where, f"expected a finite positive number of seconds, got {value!r}")
        return float(value)

    def text(self, value: Any, where: str, limit: int = 200) -> str:
        if not isinstance(value, str) or not value or len(value) > limit:
            raise self.fail(where, f"expected a non-empty string of at most {limit} characters")
        return "".join(ch for ch in value if ch.isprintable())

    def grid(self, data: Any, names: tuple[str, ...], where: str) -> Grid:
        data = self.obj(data, where)
        axes_in = self.obj(data.get("axes"), f"{where}.axes")
        axes = []
        for name in names:
            axis = axes_in.get(name)
            if not isinstance(axis, list) or not 1 <= len(axis) <= MAX_AXIS_POINTS:
                raise self.fail(f"{where}.axes.{name}", f"expected 1 to {MAX_AXIS_POINTS} sizes")
            for x in axis:
                if isinstance(x, bool) or not isinstance(x, int) or x <= 0:
                    raise self.fail(f"{where}.axes.{name}", f"sizes must be positive integers, got {x!r}")
            if any(b <= a for a, b in zip(axis, axis[1:])):
                raise self.fail(f"{where}.axes.{name}", "sizes must be strictly ascending")
            axes.append(tuple(axis))
        values = data.get("seconds")
        expected = math.prod(len(a) for a in axes)
        if not isinstance(values, list) or len(values) != expected:
            raise self.fail(f"{where}.seconds", f"expected {expected} values")
        return Grid(names, tuple(axes), tuple(self.seconds(v, f"{where}.seconds[{i}]") for i, v in enumerate(values)))

    def tree(self, data: Any, names: tuple[str, ...], where: str, passes: tuple[str, ...] | None = None
             ) -> dict[str, dict[str, dict[str, Grid]]]:
        out: dict[str, dict[str, dict[str, Grid]]] = {}
        for kind, by_dtype in self.obj(data, where).items():
            for dtype, by_pass in self.obj(by_dtype, f"{where}.{kind}").items():
                at = f"{where}.{kind}.{dtype}"
                by_pass = self.obj(by_pass, at)
                if passes is not None and set(by_pass) != set(passes):
                    raise self.fail(at, f"expected the passes {', '.join(passes)}")
                out.setdefault(str(kind), {})[str(dtype)] = {
                    str(p): self.grid(g, names, f"{at}.{p}") for p, g in by_pass.items()}
        return out


def from_dict(data: Any, source: str = "<profile>") -> DeviceProfile:
    """A validated profile, or a ConfigError naming ``source`` and the offending entry."""
    r = _Reader(source)
    data = r.obj(data, "top level")
    if data.get("schema") != SCHEMA:
        raise r.fail("schema", f"expected {SCHEMA!r}, got {data.get('schema')!r}")
    device = r.obj(data.get("device"), "device")
    kind = device.get("kind")
    if kind not in ("cpu", "cuda"):
        raise r.fail("device.kind", f"expected 'cpu' or 'cuda', got {kind!r}")
    threads = data.get("threads")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise r.fail("threads", f"expected a positive integer, got {threads!r}")
    load = data.get("load_average")
    if load is not None and (isinstance(load, bool) or not isinstance(load, (int, float))
                             or not math.isfinite(load) or load < 0):
        raise r.fail("load_average", f"expected a finite non-negative number or null, got {load!r}")
    share = data.get("others_cpu_share")
    if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                              or not math.isfinite(share) or not 0 <= share <= 1):
        raise r.fail("others_cpu_share", f"expected a fraction in [0, 1] or null, got {share!r}")
    if not isinstance(data.get("busy"), bool):
        raise r.fail("busy", "expected true or false")
    calibrations = data.get("calibrations", 1)
    if isinstance(calibrations, bool) or not isinstance(calibrations, int) or not 1 <= calibrations <= MAX_CALIBRATIONS:
        raise r.fail("calibrations", f"expected an integer from 1 to {MAX_CALIBRATIONS}, got {calibrations!r}")
    dispatch = r.obj(data.get("dispatch"), "dispatch")
    optimizer = r.obj(data.get("optimizer"), "optimizer")
    gemm = r.obj(data.get("gemm"), "gemm")
    if not gemm:
        raise r.fail("gemm", "no dtype measured")
    layouts = r.obj(data.get("gemm_layout", {}), "gemm_layout")
    framework = r.obj(data.get("framework", {}), "framework")
    notes = data.get("notes", [])
    if not isinstance(notes, list):
        raise r.fail("notes", "expected a list of strings")
    return DeviceProfile(
        device_kind=kind,
        device_name=r.text(device.get("name"), "device.name"),
        torch_version=r.text(data.get("torch_version"), "torch_version", 64),
        threads=threads,
        measured_at=r.text(data.get("measured_at"), "measured_at", 64),
        load_average=None if load is None else float(load),
        others_cpu_share=None if share is None else float(share),
        busy=data["busy"],
        measure_seconds=r.seconds(data.get("measure_seconds"), "measure_seconds"),
        calibrations=calibrations,
        dispatch={k: r.seconds(dispatch.get(k), f"dispatch.{k}") for k in DISPATCH_KEYS},
        gemm={str(d): r.grid(g, GEMM_AXES, f"gemm.{d}") for d, g in gemm.items()},
        attention=r.tree(data.get("attention"), ATTENTION_AXES, "attention", ATTENTION_PASSES),
        elementwise=r.tree(data.get("elementwise"), ELEMENTWISE_AXES, "elementwise"),
        optimizer={str(name): {k: r.seconds(r.obj(v, f"optimizer.{name}").get(k), f"optimizer.{name}.{k}")
                               for k in OPTIMIZER_KEYS} for name, v in optimizer.items()},
        gemm_layout={str(d): {k: r.seconds(r.obj(v, f"gemm_layout.{d}").get(k), f"gemm_layout.{d}.{k}")
                              for k in LAYOUT_PASSES + ((BIAS_KEY,) if BIAS_KEY in r.obj(v, f"gemm_layout.{d}") else ())}
                     for d, v in layouts.items()},
        framework={str(name): {k: r.seconds(r.obj(v, f"framework.{name}").get(k), f"framework.{name}.{k}")
                               for k in FRAMEWORK_KEYS} for name, v in framework.items()},
        notes=tuple(r.text(n, f"notes[{i}]", 500) for i, n in enumerate(notes)),
    )


def load(path: str | Path) -> DeviceProfile:
    """Read and validate a profile file; ConfigError (naming the file) when it is missing or corrupt."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no device profile at {p}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"device profile {p}: cannot read it ({exc})") from None
    except RecursionError:
        raise ConfigError(f"device profile {p}: nested too deeply") from None
    return from_dict(raw, str(p))


def dumps(profile: DeviceProfile) -> str:
    """The file's text: indented JSON, non-finite numbers refused (they never reach a file)."""
    return json.dumps(profile.to_dict(), indent=1, allow_nan=False)
