"""Hardware rows: real datasheet values, name matching pitfalls, fallbacks."""

from __future__ import annotations

import copy
import json
import math
import pickle
import subprocess
import sys

import pytest

from estimator import hardware_data
from estimator.errors import ConfigError
from estimator.hardware import DTYPES, HardwareSpec, get_gpu, gpu_alternatives, list_gpus, match_device_name
from estimator.device_specs import (
    cpu_spec,
    derived_gpu_spec,
    normalize_compute_capability,
    with_peak_override,
)

REQUIRED_KEYS = {
    "v100-sxm2-16gb", "v100-sxm2-32gb", "v100-pcie-16gb", "v100-pcie-32gb", "t4", "a10", "a10g",
    "a100-pcie-40gb", "a100-pcie-80gb", "a100-sxm-40gb", "a100-sxm-80gb", "l4", "l40s",
    "rtx-3090", "rtx-4090", "rtx-a6000", "rtx-6000-ada", "h100-pcie", "h100-sxm", "h100-nvl",
    "h200-sxm", "h200-nvl", "b200", "gb200", "mi250x", "mi300x",
}


# ---------------------------------------------------------------- the table

def test_required_rows_present_and_keys_unique():
    keys = [s.key for s in list_gpus()]
    assert len(keys) == len(set(keys))
    assert REQUIRED_KEYS <= set(keys)
    assert keys == [s.key for s in list_gpus()]  # stable order


@pytest.mark.parametrize("key,dtype,tflops", [
    ("h100-sxm", "bf16", 989.4), ("h100-sxm", "fp32", 66.9), ("h100-sxm", "tf32", 494.7),
    ("h100-sxm", "fp8", 1978.9), ("h100-pcie", "bf16", 756), ("h100-nvl", "bf16", 835.5),
    ("h200-sxm", "bf16", 989.5), ("h200-nvl", "bf16", 835.5), ("h200-nvl", "tf32", 417.5),
    ("a100-sxm-80gb", "bf16", 312), ("a100-sxm-80gb", "fp32", 19.5), ("a100-sxm-40gb", "tf32", 156),
    ("a100-pcie-40gb", "bf16", 312), ("a100-pcie-80gb", "int8", 624),
    ("rtx-4090", "bf16", 165.2), ("rtx-4090", "fp32", 82.6), ("rtx-4090", "fp8", 330.3),
    ("rtx-3090", "bf16", 71), ("rtx-a6000", "bf16", 154.8), ("rtx-6000-ada", "bf16", 364),
    ("l4", "bf16", 121), ("l40s", "bf16", 362.05), ("a10", "bf16", 125), ("a10g", "bf16", 70),
    ("t4", "fp16", 65), ("t4", "fp32", 8.1), ("v100-sxm2-32gb", "fp16", 125), ("v100-pcie-16gb", "fp16", 112),
    ("b200", "bf16", 2250), ("gb200", "bf16", 2500), ("mi300x", "bf16", 1307.4), ("mi250x", "bf16", 191.5),
])
def test_dense_peaks_match_reference(key, dtype, tflops):
    assert get_gpu(key).peak(dtype) == float(f"{tflops}e12")  # the literal, e.g. 66.9e12


def test_exact_headline_values():
    assert get_gpu("h100-sxm").peak("bf16") == 989.4e12
    a100 = get_gpu("a100")
    assert a100.peak("bf16") == 312e12 and a100.peak("fp32") == 19.5e12
    assert get_gpu("rtx-4090").peak("bf16") == 165.2e12  # not Lightning's 82.6e12
    assert get_gpu("rtx-a6000").peak("bf16") != 38.7e12


def test_no_tensor_path_means_absent():
    for key in ("t4", "v100-sxm2-16gb", "v100-sxm2-32gb", "v100-pcie-16gb", "v100-pcie-32gb"):
        spec = get_gpu(key)
        assert spec.peak("bf16") is None and spec.peak("tf32") is None
        assert "bf16" not in spec.peak_flops
    assert get_gpu("a100").peak("fp8") is None
    assert get_gpu("mi250x").peak("tf32") is None


def test_every_row_is_sourced_and_sane():
    for spec in list_gpus():
        assert spec.source.strip(), spec.key
        assert not spec.derived
        assert set(spec.peak_flops) <= set(DTYPES)
        assert spec.peak("fp32") and spec.memory_bytes > 2**30
        assert spec.memory_bandwidth > 1e11 and spec.intra_node_bandwidth > 0
        assert spec.vendor in ("nvidia", "amd")
        assert "assumption" in spec.notes  # the network figure is never a spec
        # dense tensor math is never slower than the non-tensor fp32 figure
        for dtype in ("bf16", "fp16"):
            if spec.peak(dtype):
                assert spec.peak(dtype) >= spec.peak("fp32"), spec.key


def test_sparse_figures_cited_as_halved():
    for key in ("h100-sxm", "h100-pcie", "h100-nvl", "h200-sxm", "l4", "b200", "gb200", "a100-sxm-40gb"):
        assert "halved" in get_gpu(key).source, key


def test_unverified_figures_are_marked():
    assert "[unverified]" in get_gpu("a10g").notes
    assert "[derived]" in get_gpu("rtx-6000-ada").notes
    assert "[unverified]" in get_gpu("h200-nvl").notes


def test_memory_from_observed_mib():
    assert get_gpu("h100-sxm").memory_bytes == 81_559 * 2**20
    assert get_gpu("a100-sxm-80gb").memory_bytes == 81_920 * 2**20
    assert get_gpu("b200").memory_bytes == 183_359 * 2**20
    assert get_gpu("mi300x").memory_bytes == 192 * 2**30
    assert get_gpu("h100-sxm").memory_bandwidth == 3.35e12
    assert get_gpu("h100-sxm").intra_node_bandwidth == 900e9


def test_listed_clock_reproduces_tensor_peak():
    """boost_clock_hz is the clock the spec's dense peak uses: SMs x rate x clock = peak."""
    for key, per_sm in (("h100-sxm", 4096), ("a100-sxm-80gb", 2048), ("rtx-4090", 512),
                        ("mi300x", 2048), ("gb200", 8192), ("b200", 8192), ("h100-pcie", 4096)):
        spec = get_gpu(key)
        assert spec.sm_count * per_sm * spec.boost_clock_hz == pytest.approx(spec.peak("bf16"), rel=2e-3)


def test_variants_sharing_a_device_name_have_equal_peaks():
    groups: dict[str, list[str]] = {}
    for row in hardware_data.GPU_ROWS:
        for pattern in row["names"]:
            groups.setdefault(pattern, []).append(row["key"])
    for keys in groups.values():
        assert len({tuple(get_gpu(k).peak_flops.items()) for k in keys}) == 1, keys


def test_spec_is_immutable_and_serialisable():
    spec = get_gpu("h100")
    with pytest.raises(TypeError):
        spec.peak_flops["bf16"] = 1.0
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert copy.deepcopy(spec) == spec
    assert hash(spec) == hash(get_gpu("h100-sxm"))
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["peak_flops"]["bf16"] == 989.4e12 and data["key"] == "h100-sxm"


def test_peak_accepts_torch_dtype_names_and_rejects_junk():
    spec = get_gpu("a100")
    assert spec.peak("bfloat16") == spec.peak("torch.bfloat16") == 312e12
    assert spec.peak("float32") == 19.5e12
    with pytest.raises(ConfigError):
        spec.peak("fp4")


# ---------------------------------------------------------------- lookup

@pytest.mark.parametrize("alias,key", [
    ("h100", "h100-sxm"), ("H100-SXM", "h100-sxm"), ("h100 sxm5", "h100-sxm"),
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("a100", "a100-sxm-80gb"), ("a100-80gb", "a100-sxm-80gb"),
    ("A100_40GB", "a100-sxm-40gb"), ("4090", "rtx-4090"), ("RTX 4090", "rtx-4090"),
    ("h200", "h200-sxm"), ("MI300X", "mi300x"), ("l40s", "l40s"), ("NVIDIA L40S", "l40s"),
])
def test_get_gpu_aliases(alias, key):
    assert get_gpu(alias).key == key


def test_get_gpu_unknown_suggests_close_matches():
    with pytest.raises(ConfigError) as err:
        get_gpu("h1000")
    message = str(err.value)
    assert "h1000" in message and "h100" in message and "\n" not in message
    assert message.startswith("unknown GPU 'h1000'; did you mean: h100-sxm")
    with pytest.raises(ConfigError):
        get_gpu("")
    with pytest.raises(ConfigError):
        get_gpu("cpu")


@pytest.mark.parametrize("name,picked,others", [
    ("a100", "a100-sxm-80gb", ["a100-sxm-40gb", "a100-pcie-40gb", "a100-pcie-80gb"]),
    ("A100", "a100-sxm-80gb", ["a100-sxm-40gb", "a100-pcie-40gb", "a100-pcie-80gb"]),
    ("h100", "h100-sxm", ["h100-pcie", "h100-nvl"]),
    ("a100-80gb", "a100-sxm-80gb", ["a100-pcie-80gb"]), ("A100_40GB", "a100-sxm-40gb", ["a100-pcie-40gb"]),
    ("a100-sxm", "a100-sxm-80gb", ["a100-sxm-40gb"]), ("h100-80gb", "h100-sxm", ["h100-pcie"]),
    ("v100", "v100-sxm2-32gb", ["v100-sxm2-16gb", "v100-pcie-16gb", "v100-pcie-32gb"]),
    ("h200", "h200-sxm", ["h200-nvl"]), ("gh200", "gh200-96gb", ["gh200-144gb"]),
    # one row only: a full key (even a prefix of another's), a size and form factor, a device name
    ("a100-sxm-80gb", "a100-sxm-80gb", []), ("mi250x", "mi250x", []), ("h100-sxm5", "h100-sxm", []),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb", []), ("NVIDIA H100 80GB HBM3", "h100-sxm", []),
    # a shared prefix is not a shared token: a10 is not a100, l40 not l40s, h200 not gh200, b200 not gb200
    ("a10", "a10", []), ("l40", "l40", []), ("b200", "b200", []), ("4090", "rtx-4090", []),
])
def test_gpu_alternatives_are_the_other_rows_a_name_could_mean(name, picked, others):
    assert get_gpu(name).key == picked  # unchanged: the alternatives only say what else it could be
    assert [s.key for s in gpu_alternatives(name)] == others


def test_every_row_key_is_unambiguous_and_unknown_names_still_raise():
    assert [s.key for s in list_gpus() if gpu_alternatives(s.key)] == []
    with pytest.raises(ConfigError, match="unknown GPU"):
        gpu_alternatives("a1000")


@pytest.mark.parametrize("name,key", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA H100 NVL", "h100-nvl"), ("NVIDIA H200", "h200-sxm"), ("NVIDIA H200 NVL", "h200-nvl"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm-40gb"), ("NVIDIA A100-SXM4-80GB", "a100-sxm-80gb"),
    ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"), ("NVIDIA A100-PCIE-40GB", "a100-pcie-40gb"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("NVIDIA GeForce RTX 3090", "rtx-3090"),
    ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"), ("NVIDIA A10", "a10"), ("NVIDIA A10G", "a10g"),
    ("Tesla T4", "t4"), ("Tesla V100-SXM2-32GB", "v100-sxm2-32gb"),
    ("Tesla V100-SXM2-16GB", "v100-sxm2-16gb"), ("Tesla V100-PCIE-16GB", "v100-pcie-16gb"),
    ("NVIDIA B200", "b200"), ("NVIDIA GB200", "gb200"), ("NVIDIA RTX A6000", "rtx-a6000"),
    ("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"), ("AMD Instinct MI300X", "mi300x"),
    ("AMD Instinct MI250X", "mi250x"), ("AMD Instinct MI250X/MI250", "mi250x"),
])
def test_match_device_name(name, key):
    spec = match_device_name(name)
    assert spec is not None and spec.key == key


def test_l40s_is_not_l4_and_a10g_is_not_a10():
    assert match_device_name("NVIDIA L40S").key != "l4"
    assert match_device_name("NVIDIA L40S").peak("bf16") == 362.05e12
    assert match_device_name("NVIDIA A10G").key != "a10"
    assert match_device_name("NVIDIA A10G").peak("bf16") < match_device_name("NVIDIA A10").peak("bf16")


def test_memory_picks_the_a100_variant():
    assert match_device_name("NVIDIA A100", 40_536 * 2**20).key == "a100-sxm-40gb"
    assert match_device_name("NVIDIA A100-SXM4", 81_920 * 2**20).key == "a100-sxm-80gb"
    assert match_device_name("NVIDIA A100-PCIE", 40 * 2**30).key == "a100-pcie-40gb"
    assert match_device_name("Tesla V100-SXM2", 32_510 * 2**20).key == "v100-sxm2-32gb"


@pytest.mark.parametrize("name", [
    "NVIDIA GeForce RTX 5090 D", "NVIDIA H800 MIG 1g.10gb", "Tesla V100S-PCIE-32GB", "NVIDIA GeForce RTX 4090 D",
    "Quadro RTX 6000", "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "NVIDIA H100",  # bare H100: SXM or PCIe? SM count decides
    "NVIDIA A100-SXM4-80GB MIG 1g.10gb", "", "some accelerator",
])
def test_unknown_names_return_none(name):
    assert match_device_name(name) is None


# ---------------------------------------------------------------- fallbacks

def test_derived_h100_sxm_reproduces_spec():
    spec = derived_gpu_spec("NVIDIA H100 80GB HBM3", "9.0", 132, 1.83e9, 81_559 * 2**20, 3.35e12)
    assert spec.derived
    assert spec.peak("bf16") == pytest.approx(989.4e12, rel=1e-3)
    assert spec.peak("fp8") == pytest.approx(1978.9e12, rel=1e-3)
    assert "an upper bound" in spec.notes and "SM count x clock x FLOPs/clk/SM" in spec.notes
    assert spec.compute_capability == "9.0" and spec.memory_bandwidth == 3.35e12


def test_derived_geforce_uses_half_rate():
    geforce = derived_gpu_spec("NVIDIA GeForce RTX 4090", "8.9", 128, 2.52e9, 24_564 * 2**20)
    assert geforce.peak("bf16") == pytest.approx(165.2e12, rel=2e-3)
    pro = derived_gpu_spec("NVIDIA RTX 6000 Ada Generation", "8.9", 142, 2.505e9, 48 * 2**30)
    assert pro.peak("bf16") == pytest.approx(364e12, rel=2e-3)
    a10 = derived_gpu_spec("NVIDIA A10", "sm_86", 72, 1.695e9, 24 * 2**30)
    assert a10.peak("bf16") == pytest.approx(125e12, rel=2e-3)


@pytest.mark.parametrize("key", ["a100-sxm-80gb", "t4", "l4", "mi300x", "gb200", "rtx-3090"])
def test_derived_matches_rows(key):
    row = get_gpu(key)
    spec = derived_gpu_spec(row.name, row.compute_capability, row.sm_count, row.boost_clock_hz,
                            row.memory_bytes)
    dtype = "bf16" if row.peak("bf16") else "fp16"
    assert spec.peak(dtype) == pytest.approx(row.peak(dtype), rel=0.01)


def test_derived_unknown_architecture_has_no_peak():
    spec = derived_gpu_spec("NVIDIA GeForce RTX 5090", "12.0", 170, 2.4e9, 32 * 2**30)
    assert spec.derived and dict(spec.peak_flops) == {} and spec.peak("bf16") is None
    assert "--peak-tflops" in spec.notes


def test_derived_rejects_nonsense():
    with pytest.raises(ConfigError):
        derived_gpu_spec("x", "9.0", 0, 1.8e9, 2**30)


@pytest.mark.parametrize("raw,cc", [
    ("9.0", "9.0"), ("90", "9.0"), ("sm_86", "8.6"), ((8, 9), "8.9"), ("100", "10.0"),
    ("gfx90a:sramecc+:xnack-", "gfx90a"), ("GFX942", "gfx942"),
])
def test_normalize_compute_capability(raw, cc):
    assert normalize_compute_capability(raw) == cc


def test_cpu_spec_avx512():
    spec = cpu_spec("Intel Xeon", 8, 3e9, ["fpu", "avx2", "fma", "avx512f"], 64 * 2**30)
    assert spec.peak("fp32") == 8 * 3e9 * 64
    assert spec.key == "cpu" and spec.vendor == "cpu" and spec.derived
    assert spec.peak("bf16") is None
    assert "theoretical" in spec.notes and "matmul" in spec.notes
    assert spec.memory_bandwidth == 20e9 and "assumed" in spec.notes


@pytest.mark.parametrize("flags,per_cycle", [
    (["avx2", "fma", "avx"], 32), (["avx", "sse2"], 16), (["sse", "sse2"], 8),
    (["fp", "asimd"], 16), (["asimd", "sve"], 32), ([], 2),
])
def test_cpu_spec_isa_rates(flags, per_cycle):
    assert cpu_spec("cpu", 4, 2e9, flags, 2**30, 50e9).peak("fp32") == 4 * 2e9 * per_cycle


def test_cpu_bf16_only_with_bf16_isa():
    avx = cpu_spec("x", 2, 2e9, ["avx512f", "avx512_bf16"], 2**30)
    assert avx.peak("bf16") == 2 * avx.peak("fp32")
    amx = cpu_spec("x", 2, 2e9, ["avx512f", "avx512_bf16", "amx_bf16"], 2**30)
    assert amx.peak("bf16") == 2 * 2e9 * 1024 and "assum" in amx.notes


def test_with_peak_override():
    spec = get_gpu("a10g")
    new = with_peak_override(spec, "bf16", 69.5e12, label="--peak-tflops")
    assert new.peak("bf16") == 69.5e12 and spec.peak("bf16") == 70e12
    assert "--peak-tflops" in new.source and new.key == spec.key
    measured = with_peak_override(cpu_spec("x", 1, 1e9, [], 2**30), "float32", 1.5e9, label="matmul benchmark")
    assert measured.peak("fp32") == 1.5e9 and "matmul benchmark" in measured.source
    with pytest.raises(ConfigError):
        with_peak_override(spec, "bf16", -1)
    with pytest.raises(ConfigError):
        with_peak_override(spec, "bf16", math.nan)


def test_bad_peak_dtype_rejected():
    with pytest.raises(ConfigError):
        HardwareSpec("x", "x", "nvidia", 1, 1.0, {"fp64": 1.0}, 1.0, 1.0, None, None, None, None, "s")


def test_import_does_not_pull_torch():
    code = ("import sys, estimator.hardware; "
            "bad = [m for m in ('torch', 'numpy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
