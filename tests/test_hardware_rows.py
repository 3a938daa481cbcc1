"""The GPU table's rows: sourced, dense, ordered, matched by their NVML names, and linked
by the right fabric (a PCIe card never lends an NVLink bridge to a group of 8)."""

from __future__ import annotations

import pytest

from estimator import hardware_data
from estimator.errors import ConfigError
from estimator.hardware import LINK_KINDS, HardwareSpec, get_gpu, list_gpus, match_device_name
from estimator.device_specs import cpu_spec, derived_gpu_spec

NEW_ROWS = {"mi325x", "h800-sxm", "h800-pcie", "h20", "a800-sxm-80gb", "a800-pcie-80gb", "gh200-96gb",
            "gh200-144gb", "b300", "gb300", "mi350x", "mi355x", "rtx-5090", "rtx-pro-6000", "a40", "a30", "l20"}
ROWS = list_gpus()


def _tflops(key: str, dtype: str) -> float | None:
    peak = get_gpu(key).peak(dtype)
    return None if peak is None else peak / 1e12


# ---------------------------------------------------------------- sources and dense peaks

def test_new_rows_present():
    assert NEW_ROWS <= {s.key for s in ROWS}


@pytest.mark.parametrize("spec", ROWS, ids=lambda s: s.key)
def test_every_row_names_its_source(spec):
    assert len(spec.source.strip()) > 10
    row = next(r for r in hardware_data.GPU_ROWS if r["key"] == spec.key)
    # a row that is not in reference/gpu-specs.md must not claim to come from it
    assert spec.source.endswith("via reference/gpu-specs.md") == row.get("in_reference", True)


@pytest.mark.parametrize("spec", ROWS, ids=lambda s: s.key)
def test_dense_peaks_are_ordered(spec):
    """fp8 >= bf16 >= tf32 >= fp32 where present: a sparse figure slipped into one slot, or a
    non-tensor figure in a tensor slot, breaks the order (the 77.97-for-A100 pitfall)."""
    chain = [spec.peak(d) for d in ("fp8", "bf16", "tf32", "fp32")]
    present = [p for p in chain if p is not None]
    assert present == sorted(present, reverse=True), spec.key
    if spec.peak("bf16") and spec.peak("fp16"):
        assert spec.peak("fp16") == spec.peak("bf16"), spec.key  # fp32-accumulate rates are equal
    if spec.peak("tf32") and spec.peak("bf16"):
        # TF32 is at most half the bf16 rate (2 % for datasheet rounding: L40S prints 183 beside 362.05)
        assert spec.peak("tf32") <= spec.peak("bf16") / 2 * 1.02, spec.key


@pytest.mark.parametrize("key,dtype,tflops", [
    ("h20", "bf16", 148), ("h20", "fp8", 296), ("h20", "tf32", 74), ("h800-sxm", "bf16", 989.4),
    ("h800-pcie", "bf16", 756), ("a800-sxm-80gb", "bf16", 312), ("a800-pcie-80gb", "tf32", 156),
    ("gh200-96gb", "bf16", 989.5), ("gh200-144gb", "fp8", 1979), ("b300", "bf16", 2250), ("gb300", "bf16", 2500),
    ("gb300", "fp8", 5000), ("mi325x", "bf16", 1307.4), ("mi325x", "fp8", 2614.9), ("mi350x", "bf16", 2306.9),
    ("mi355x", "bf16", 2516.6), ("mi355x", "fp32", 157.3), ("rtx-5090", "bf16", 209.5), ("rtx-5090", "int8", 838),
    ("rtx-pro-6000", "bf16", 503.8), ("a40", "bf16", 149.7), ("a40", "fp32", 37.4), ("a30", "fp32", 10.3),
    ("a30", "tf32", 82.5), ("l20", "bf16", 119.5), ("l20", "fp8", 239),
])
def test_new_row_dense_peaks(key, dtype, tflops):
    assert get_gpu(key).peak(dtype) == float(f"{tflops}e12")


@pytest.mark.parametrize("key,dtype", [
    ("a30", "bf16"), ("a30", "fp16"), ("a30", "int8"),      # no stored copy of the A30 datasheet
    ("b300", "int8"), ("gb300", "int8"),                     # sources disagree (0.15 vs 4.5 POPS)
    ("mi350x", "tf32"), ("mi355x", "tf32"),                  # no CDNA4 TF32 figure found
    ("a40", "fp8"), ("a800-sxm-80gb", "fp8"),                 # Ampere has no FP8
])
def test_unsourced_dtypes_are_left_out(key, dtype):
    spec = get_gpu(key)
    assert spec.peak(dtype) is None
    # a path the chip has but no source prices is "unknown"; Ampere's missing FP8 is "no path"
    assert (dtype in spec.peak_unknown) == (dtype != "fp8")


def test_unknown_and_known_peaks_are_disjoint():
    for spec in ROWS:
        assert not set(spec.peak_unknown) & set(spec.peak_flops), spec.key
    with pytest.raises(ConfigError):
        HardwareSpec("x", "x", "nvidia", 2**30, 1e12, {"bf16": 1e12}, 64e9, 25e9, None, None, None, None, "s",
                     peak_unknown=("bfloat16",))


def test_gpus_with_the_same_silicon_share_peaks():
    assert get_gpu("h800-sxm").peak_flops == get_gpu("h100-sxm").peak_flops
    assert get_gpu("h800-pcie").peak_flops == get_gpu("h100-pcie").peak_flops
    assert get_gpu("a800-sxm-80gb").peak_flops == get_gpu("a100-sxm-80gb").peak_flops
    assert get_gpu("mi325x").peak_flops == get_gpu("mi300x").peak_flops
    assert get_gpu("gh200-96gb").peak_flops == get_gpu("h200-sxm").peak_flops
    # ... and the export variants differ only where the export rules cut them
    assert get_gpu("h800-sxm").intra_node_bandwidth == 400e9 < get_gpu("h100-sxm").intra_node_bandwidth
    assert get_gpu("a800-sxm-80gb").intra_node_bandwidth == 400e9 < get_gpu("a100-sxm-80gb").intra_node_bandwidth


@pytest.mark.parametrize("key,per_sm", [
    ("rtx-5090", 512), ("rtx-pro-6000", 1024), ("a40", 1024), ("l20", 512), ("mi350x", 4096), ("mi355x", 4096),
    ("mi325x", 2048), ("a800-sxm-80gb", 2048), ("h800-sxm", 4096), ("gh200-96gb", 4096),
])
def test_clock_reproduces_the_dense_peak(key, per_sm):
    """SMs x dense FLOPs/clk/SM x the listed clock = the bf16 peak: a sparse (2x) or
    fp16-accumulate (2x on GeForce) figure would miss by a factor of two."""
    spec = get_gpu(key)
    assert spec.sm_count * per_sm * spec.boost_clock_hz == pytest.approx(spec.peak("bf16"), rel=1e-2)


def test_memory_figures():
    assert get_gpu("mi325x").memory_bytes == 256 * 2**30
    assert get_gpu("mi355x").memory_bytes == get_gpu("mi350x").memory_bytes == 288 * 2**30
    assert get_gpu("b300").memory_bytes == 275_040 * 2**20
    assert get_gpu("gh200-96gb").memory_bytes == 97_871 * 2**20
    assert get_gpu("rtx-5090").memory_bytes == 32_607 * 2**20
    assert get_gpu("l20").memory_bytes == get_gpu("l40s").memory_bytes == 46_068 * 2**20
    assert get_gpu("h20").memory_bandwidth == 4.0e12 and get_gpu("mi325x").memory_bandwidth == 6.0e12


def test_blackwell_fp32_resolution_is_recorded():
    assert get_gpu("b200").peak("fp32") == 75e12 and get_gpu("gb200").peak("fp32") == 80e12
    assert "fp32 75 (not 80)" in get_gpu("b200").notes
    assert "fp32 80" in get_gpu("gb200").notes


# ---------------------------------------------------------------- NVML / torch names

@pytest.mark.parametrize("device_name,key", [
    ("NVIDIA H800", "h800-sxm"), ("NVIDIA H800 80GB HBM3", "h800-sxm"), ("NVIDIA H800 PCIe", "h800-pcie"),
    ("NVIDIA H20", "h20"), ("NVIDIA A800-SXM4-80GB", "a800-sxm-80gb"), ("NVIDIA A800 80GB PCIe", "a800-pcie-80gb"),
    ("NVIDIA GH200 480GB", "gh200-96gb"), ("NVIDIA GH200 144G HBM3e", "gh200-144gb"),
    ("NVIDIA B300 SXM6 AC", "b300"), ("NVIDIA GB300", "gb300"),
    ("NVIDIA GeForce RTX 5090", "rtx-5090"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx-pro-6000"),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "rtx-pro-6000"),
    ("NVIDIA A40", "a40"), ("NVIDIA A30", "a30"), ("NVIDIA L20", "l20"),
    ("AMD Instinct MI325X", "mi325x"), ("AMD Instinct MI350X", "mi350x"), ("AMD Instinct MI355X", "mi355x"),
])
def test_new_rows_match_their_device_names(device_name, key):
    assert match_device_name(device_name).key == key


@pytest.mark.parametrize("device_name", [
    "NVIDIA GeForce RTX 5090 D", "NVIDIA GeForce RTX 5090 Laptop GPU",
    "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",   # 300 W, lower clocks: a different peak
    "NVIDIA A800 40GB Active", "NVIDIA H20 MIG 1g.12gb", "NVIDIA L2",
])
def test_lookalike_parts_are_not_matched(device_name):
    assert match_device_name(device_name) is None


@pytest.mark.parametrize("alias,key", [
    ("h800", "h800-sxm"), ("a800", "a800-sxm-80gb"), ("5090", "rtx-5090"), ("gh200", "gh200-96gb"),
    ("MI325X", "mi325x"), ("RTX PRO 6000", "rtx-pro-6000"), ("b300", "b300"),
])
def test_new_rows_by_alias(alias, key):
    assert get_gpu(alias).key == key


# ---------------------------------------------------------------- links

@pytest.mark.parametrize("spec", ROWS, ids=lambda s: s.key)
def test_every_row_has_a_link_topology(spec):
    assert spec.link_kind in LINK_KINDS and spec.nvlink_domain >= 1
    assert spec.pcie_bandwidth >= 32e9  # PCIe3 x16 is the slowest host link in the table
    if spec.link_kind == "pcie":  # no scale-up fabric: the host link is the only link
        assert spec.nvlink_domain == 1 and spec.intra_node_bandwidth == spec.pcie_bandwidth
    if spec.link_kind == "nvlink-bridge":  # a bridge pairs two cards
        assert spec.nvlink_domain == 2 and spec.intra_node_bandwidth > spec.pcie_bandwidth


@pytest.mark.parametrize("key,bridge", [
    ("a100-pcie-80gb", 600e9), ("h100-pcie", 600e9), ("h100-nvl", 600e9), ("rtx-3090", 112.5e9),
    ("rtx-a6000", 112.5e9), ("a40", 112.5e9), ("h800-pcie", 400e9), ("a800-pcie-80gb", 400e9),
])
def test_bridged_pcie_cards_lend_the_bridge_to_a_pair_only(key, bridge):
    spec = get_gpu(key)
    assert spec.group_link(2, 8) == (bridge, "nvlink-bridge")
    pcie = 128e9 if key.startswith("h") else 64e9
    for span in (3, 4, 8):
        assert spec.group_link(span, 8) == (pcie, "pcie")
    assert spec.group_link(16, 8) == (spec.inter_node_bandwidth, "network")


@pytest.mark.parametrize("key,pcie", [
    ("l40s", 64e9), ("l4", 64e9), ("rtx-4090", 64e9), ("a10", 64e9), ("t4", 32e9), ("l20", 64e9),
    ("a30", 64e9), ("rtx-5090", 128e9), ("rtx-pro-6000", 128e9),
])
def test_pcie_only_cards(key, pcie):
    spec = get_gpu(key)
    for span in (1, 2, 8):
        assert spec.group_link(span, 8) == (pcie, "pcie")


def test_nvswitch_and_rack_domains():
    assert get_gpu("h100-sxm").group_link(8, 8) == (900e9, "nvlink")
    assert get_gpu("h100-sxm").group_link(16, 8)[1] == "network"
    assert get_gpu("gb200").group_link(72, 8) == (1800e9, "nvlink")   # NVL72: one NVLink domain past the node
    assert get_gpu("gb300").group_link(64, 8) == (1800e9, "nvlink")
    assert get_gpu("gb200").group_link(73, 8)[1] == "network"
    assert get_gpu("mi325x").group_link(8, 8) == (896e9, "infinity-fabric")
    assert get_gpu("gh200-96gb").group_link(1, 8) == (900e9, "nvlink-c2c")  # to its own Grace CPU only


def test_fallback_specs_have_a_topology():
    derived = derived_gpu_spec("NVIDIA Mystery", "9.0", 132, 1.83e9, 80 * 2**30)
    assert derived.group_link(8, 8) == (64e9, "pcie") and derived.nvlink_domain == 1
    cpu = cpu_spec("Some CPU", 16, 3e9, ["avx2", "fma"], 64 * 2**30, memory_bandwidth=50e9)
    assert cpu.group_link(4, 8) == (50e9, "shared-memory")


def test_topology_fields_keep_the_old_constructor_and_validate():
    old = HardwareSpec("x", "x", "nvidia", 2**30, 1e12, {"bf16": 1e12}, 64e9, 25e9, None, None, None, None, "s")
    assert (old.nvlink_domain, old.link_kind, old.pcie_bandwidth, old.peak_unknown) == (1, "pcie", 0.0, ())
    assert old.group_link(4, 8) == (64e9, "pcie")  # no host-link figure recorded: the intra-node one
    assert old.to_dict()["nvlink_domain"] == 1
    for bad in (dict(nvlink_domain=0), dict(nvlink_domain=2.5), dict(nvlink_domain=True),
                dict(link_kind="carrier-pigeon"), dict(pcie_bandwidth=-1.0), dict(pcie_bandwidth=float("nan"))):
        with pytest.raises(ConfigError):
            HardwareSpec("x", "x", "nvidia", 2**30, 1e12, {"bf16": 1e12}, 64e9, 25e9, None, None, None, None,
                         "s", **bad)
