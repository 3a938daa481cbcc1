"""Hardware peaks: the denominators of MFU and the roofline's ceilings.

Conventions (those of ``reference/gpu-specs.md``, whose rows live in
``estimator.hardware_data``):

* Peaks are **dense** FLOP/s.  Datasheets print 2:4-sparse figures with an
  asterisk; those were halved.  Dividing by a sparse peak halves MFU.
* bf16/fp16 peaks are the **fp32-accumulate** tensor-core rate, the one
  PyTorch matmuls get.  GeForce cards print an fp16-accumulate rate twice as
  high; it is never used.  ``fp32`` is the non-tensor (CUDA-core) rate and
  ``tf32`` the TF32 tensor rate: dividing tensor-core math by a non-tensor
  peak inflates MFU several-fold (the 77.97 TFLOP/s "A100" pitfall).
* A dtype a chip has no tensor path for is absent (T4/V100: no bf16), so
  ``peak()`` returns ``None`` and callers print "MFU n/a", never a bogus ratio.
  A path the chip has but no source gives a figure for is absent too, and listed
  in ``peak_unknown`` (A30 bf16), so a message can say "unknown", not "no path".
* Bandwidths are decimal bytes/s (1 GB/s = 1e9); link figures are
  bidirectional aggregates (H100 NVLink 900 GB/s = 450 each way).
* Topology: ``intra_node_bandwidth`` is the scale-up link (``link_kind``) that joins
  ``nvlink_domain`` GPUs; a larger group inside a node shares the host link
  (``pcie_bandwidth``), and beyond a node the NIC.  ``group_link`` picks the tier,
  so a PCIe card with a 2-GPU NVLink bridge never lends the bridge to a group of 8.
* Memory is bytes, from an observed ``nvidia-smi memory.total`` where the
  reference has one.  Network bandwidth per GPU is always an assumption.
* Unknown GPUs get a peak derived from SM count x clock x FLOPs/clk/SM,
  flagged ``derived`` and called an upper bound (``estimator.device_specs``);
  unknown names never fall back silently to some other GPU's row (torchtitan
  returns A100's 312e12).

Stdlib only: the estimator must import without torch.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Mapping

from estimator import hardware_data as _data
from estimator.errors import ConfigError

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")
LINK_KINDS = ("nvlink", "nvlink-bridge", "nvlink-c2c", "infinity-fabric", "pcie", "shared-memory")

_DTYPE_ALIASES = {
    "fp32": "fp32", "float32": "fp32", "float": "fp32", "f32": "fp32",
    "tf32": "tf32", "tfloat32": "tf32",
    "bf16": "bf16", "bfloat16": "bf16", "bf16-mixed": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16", "f16": "fp16", "fp16-mixed": "fp16",
    "fp8": "fp8", "float8": "fp8", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8",
    "e4m3": "fp8", "e5m2": "fp8",
    "int8": "int8",
}


class _FrozenDict(dict):
    """A read-only dict: unlike MappingProxyType it pickles, deep-copies and
    serialises to JSON, so specs can ride in events and run files."""

    def _readonly(self, *args, **kwargs):
        raise TypeError("HardwareSpec.peak_flops is read-only; use with_peak_override()")

    __setitem__ = __delitem__ = __ior__ = _readonly  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __reduce__(self):
        return (type(self), (dict(self),))


def normalize_dtype(dtype: str) -> str:
    """'bfloat16', 'torch.float16', 'BF16' -> a ``DTYPES`` key; else ConfigError."""
    key = str(dtype).strip().lower().removeprefix("torch.")
    if key in _DTYPE_ALIASES:
        return _DTYPE_ALIASES[key]
    raise ConfigError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")


@dataclass(frozen=True)
class HardwareSpec:
    """One device's ceilings.  ``boost_clock_hz`` is the clock the dense tensor
    peak is computed at (so peak = SMs x FLOPs/clk/SM x clock), not NVML's max.
    ``peak_flops`` is read-only; build a changed copy with ``with_peak_override``."""

    key: str
    name: str
    vendor: str
    memory_bytes: int
    memory_bandwidth: float
    peak_flops: Mapping[str, float] = field(hash=False)
    intra_node_bandwidth: float
    inter_node_bandwidth: float
    sm_count: int | None
    compute_capability: str | None
    boost_clock_hz: float | None
    tdp_watts: float | None
    source: str
    derived: bool = False
    notes: str = ""
    nvlink_domain: int = 1
    link_kind: str = "pcie"
    pcie_bandwidth: float = 0.0
    peak_unknown: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = tuple(normalize_dtype(d) for d in self.peak_unknown)
        if set(unknown) & set(dict(self.peak_flops)):
            raise ConfigError(f"{self.key}: a dtype cannot be both known and unknown: {sorted(unknown)}")
        object.__setattr__(self, "peak_unknown", unknown)
        if isinstance(self.nvlink_domain, bool) or not isinstance(self.nvlink_domain, int) or self.nvlink_domain < 1:
            raise ConfigError(f"{self.key}: nvlink_domain must be a whole number of GPUs >= 1, "
                              f"got {self.nvlink_domain!r}")
        if self.link_kind not in LINK_KINDS:
            raise ConfigError(f"{self.key}: unknown link kind {self.link_kind!r}; one of {', '.join(LINK_KINDS)}")
        if not (isinstance(self.pcie_bandwidth, (int, float)) and math.isfinite(self.pcie_bandwidth)
                and self.pcie_bandwidth >= 0):
            raise ConfigError(f"{self.key}: pcie_bandwidth must be >= 0 bytes/s, got {self.pcie_bandwidth!r}")
        peaks = {}
        for dtype, flops in dict(self.peak_flops).items():
            if dtype not in DTYPES:
                raise ConfigError(f"{self.key}: unknown dtype {dtype!r} in peak_flops")
            if not (isinstance(flops, (int, float)) and math.isfinite(flops) and flops > 0):
                raise ConfigError(f"{self.key}: {dtype} peak must be a positive number, got {flops!r}")
            peaks[dtype] = float(flops)
        ordered = {d: peaks[d] for d in DTYPES if d in peaks}
        object.__setattr__(self, "peak_flops", _FrozenDict(ordered))

    def peak(self, dtype: str) -> float | None:
        """Dense FLOP/s for ``dtype`` (torch names accepted), or None if the chip has no such path
        (or, when ``dtype in peak_unknown``, has one whose figure no source gives)."""
        return self.peak_flops.get(normalize_dtype(dtype))

    def group_link(self, span: int, gpus_per_node: int) -> tuple[float, str]:
        """(bidirectional bytes/s, tier) for a collective over ``span`` GPUs: the scale-up link
        inside the NVLink/Infinity-Fabric domain (an NVL72 rack is one domain larger than a
        node), the host link (``pcie_bandwidth``, or the scale-up figure where none is
        recorded) inside a node, the NIC beyond it.  Per direction is half the figure."""
        if int(span) <= self.nvlink_domain:
            return self.intra_node_bandwidth, self.link_kind
        if int(span) <= int(gpus_per_node):
            return (self.pcie_bandwidth or self.intra_node_bandwidth), "pcie"
        return self.inter_node_bandwidth, "network"

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["peak_flops"] = dict(self.peak_flops)
        return out


# ------------------------------------------------------------------ the table

def _build_row(row: dict) -> HardwareSpec:
    # float(f"{t}e12") equals the literal 66.9e12; 66.9 * 1e12 would be off by one ulp.
    peaks = {d: float(f"{t}e12") for d, t in zip(DTYPES, row["tflops"]) if t is not None}
    net_gbs = row["net"]
    link = {_data.NET_DC: "400 Gb/s IB NDR", _data.NET_HDR: "200 Gb/s IB HDR, as DGX A100"}.get(net_gbs, "200 Gb/s")
    assumption = f"inter_node_bandwidth {net_gbs} GB/s per GPU is an assumption ({link}), not a spec"
    return HardwareSpec(
        key=row["key"], name=row["name"], vendor=row["vendor"],
        memory_bytes=int(row["mem"]), memory_bandwidth=row["bw"] * 1e9, peak_flops=peaks,
        intra_node_bandwidth=row["link"] * 1e9, inter_node_bandwidth=net_gbs * 1e9,
        sm_count=row["sm"], compute_capability=row["cc"],
        boost_clock_hz=row["mhz"] * 1e6 if row["mhz"] else None,
        tdp_watts=float(row["tdp"]) if row["tdp"] else None,
        source=row["source"] + ("; via reference/gpu-specs.md" if row.get("in_reference", True) else ""),
        notes=f"{row['notes']}; {assumption}",
        nvlink_domain=int(row["domain"]), link_kind=row["kind"], pcie_bandwidth=row["pcie"] * 1e9,
        peak_unknown=tuple(row.get("unknown", ())),
    )


_ROWS: tuple[HardwareSpec, ...] = tuple(_build_row(r) for r in _data.GPU_ROWS)
_BY_KEY: dict[str, HardwareSpec] = {s.key: s for s in _ROWS}
_SIZE_GB: dict[str, int] = {r["key"]: r["size_gb"] for r in _data.GPU_ROWS}


def _compact(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _build_alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for row in _data.GPU_ROWS:
        for alias in (row["key"], row["name"], *row["aliases"]):
            c = _compact(alias)
            if index.setdefault(c, row["key"]) != row["key"]:
                raise RuntimeError(f"alias {alias!r} names both {index[c]} and {row['key']}")
    return index


_ALIASES = _build_alias_index()

# NVML/torch device names: tokens that say nothing about the part.
_NOISE = frozenset({"nvidia", "geforce", "tesla", "amd", "instinct", "generation", "vf"})
_SIZE_TOKEN = re.compile(r"(\d+)gb")


def _build_name_index() -> dict[frozenset[str], tuple[str, ...]]:
    index: dict[frozenset[str], tuple[str, ...]] = {}
    for row in _data.GPU_ROWS:
        for pattern in row["names"]:
            tokens = frozenset(pattern.split())
            index[tokens] = index.get(tokens, ()) + (row["key"],)
    return index


_NAMES = _build_name_index()


def list_gpus() -> list[HardwareSpec]:
    """Every row, in the data file's order (by vendor and generation)."""
    return list(_ROWS)


def get_gpu(name: str) -> HardwareSpec:
    """A row by key, alias or device name, case- and punctuation-insensitive."""
    text = str(name).strip()
    key = _ALIASES.get(_compact(text))
    if key:
        return _BY_KEY[key]
    spec = match_device_name(text) if text else None
    if spec is not None:
        return spec
    if _compact(text) == "cpu":
        raise ConfigError("'cpu' is not a GPU row; the CPU spec is built from the detected CPU")
    hints = _suggest(text)
    if hints:
        raise ConfigError(f"unknown GPU {text!r}; did you mean: {', '.join(hints)}?")
    raise ConfigError(f"unknown GPU {text!r}; list the known ones with `mfutop gpus --list`, "
                      "or give the peak with --peak-tflops")


def _tokens(text: str) -> frozenset[str]:
    return frozenset(t for t in re.split(r"[^a-z0-9]+", str(text).lower()) if t and t not in _NOISE)


# Each row's descriptions as token sets: its key, name, aliases and device-name patterns.
_DESCRIPTIONS: dict[str, tuple[frozenset[str], ...]] = {
    r["key"]: tuple({_tokens(d) for d in (r["key"], r["name"], *r["aliases"], *r["names"])})
    for r in _data.GPU_ROWS
}


def gpu_alternatives(name: str) -> list[HardwareSpec]:
    """The rows other than ``get_gpu(name)``'s that ``name`` could also mean, in table order.

    A row could be meant when one of its descriptions (key, name, alias, device name)
    has every token of ``name``: 'a100' -> the other SXM and both PCIe A100s, 'h100' ->
    h100-pcie and h100-nvl, 'a100-80gb' -> a100-pcie-80gb; 'a10' and 'l40' mean
    nothing else. A row's own key is a choice, so it has no alternatives. An unknown
    name raises ``get_gpu``'s ConfigError.
    """
    chosen = get_gpu(name)
    query = _tokens(name)
    if not query or _compact(str(name)) == _compact(chosen.key):
        return []
    return [s for s in _ROWS if s.key != chosen.key and any(query <= d for d in _DESCRIPTIONS[s.key])]


def _suggest(text: str, n: int = 3) -> list[str]:
    """Keys ranked by the best fuzzy ratio of any alias, nudged by a shared
    prefix (so 'h1000' offers the H100 family before the H200); far-behind
    candidates are dropped so the hint stays relevant."""
    query = _compact(text)
    if not query:
        return []
    scores: dict[str, float] = {}
    for alias, key in _ALIASES.items():
        ratio = difflib.SequenceMatcher(None, query, alias).ratio()
        if ratio < 0.5:
            continue
        prefix = len(_common_prefix(query, alias))
        scores[key] = max(scores.get(key, 0.0), ratio + 0.05 * min(prefix, 6))
    best = max(scores.values(), default=0.0)
    return [k for k in sorted(scores, key=lambda k: -scores[k]) if scores[k] >= 0.7 * best][:n]


def _common_prefix(a: str, b: str) -> str:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return a[:i]


def match_device_name(device_name: str, memory_bytes: int | None = None) -> HardwareSpec | None:
    """Map an NVML / torch device name to a row, or None.

    The name's tokens (minus vendor words and ``NNgb``) must equal a row's
    token set exactly: "L40S" is not "L4", "A10G" is not "A10", "RTX 4090 D"
    and "V100S" are not matched.  A size token ("80GB"), else ``memory_bytes``,
    picks between memory variants with identical peaks (A100 40/80 GB).  MIG
    slices return None: use ``derived_gpu_spec`` with the slice's SM count,
    because a slice has a fraction of the SMs that the name does not state.
    """
    lowered = str(device_name).lower()
    if re.search(r"\bmig\b", lowered):
        return None
    tokens = [t for t in re.split(r"[^a-z0-9]+", lowered) if t and t not in _NOISE]
    sizes = [int(m.group(1)) for t in tokens if (m := _SIZE_TOKEN.fullmatch(t))]
    core = frozenset(t for t in tokens if not _SIZE_TOKEN.fullmatch(t))
    keys = _NAMES.get(core)
    if not keys:
        return None
    if len(keys) == 1:
        return _BY_KEY[keys[0]]
    if sizes:
        return _BY_KEY[min(keys, key=lambda k: abs(_SIZE_GB[k] - sizes[0]))]
    if memory_bytes:
        return _BY_KEY[min(keys, key=lambda k: abs(_BY_KEY[k].memory_bytes - memory_bytes))]
    return _BY_KEY[max(keys, key=lambda k: _BY_KEY[k].memory_bytes)]
