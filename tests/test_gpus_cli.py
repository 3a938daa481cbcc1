"""`mfutop gpus [--list] [--json]`: output keys, human tables, and no torch for --list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import typer
from typer.testing import CliRunner

from estimator.hardware import DTYPES
from profiler import cpu_probe, nvml_probe
from tui import cmd_gpus


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, so `gpus` stays a subcommand as in tui/cli.py
        pass

    cmd_gpus.register(app)
    return app


@pytest.fixture
def small_benchmark(monkeypatch, tmp_path):
    """The command's CPU benchmark at a tiny size, cached under tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real = cpu_probe.measured_peak
    calls = []

    def tiny(dtype="fp32", cache_path=None, **kwargs):
        calls.append((dtype, kwargs.get("refresh", False)))
        return real(dtype, cache_path, **{**kwargs, "max_size": 64, "repeats": 1, "warmup_seconds": 0.0})

    monkeypatch.setattr(cpu_probe, "measured_peak", tiny)
    nvml_probe.close_shared_session()
    return calls


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_gpus_json_on_this_machine(small_benchmark):
    result = CliRunner().invoke(_app(), ["gpus", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data.pop("schema_version") == 1
    assert set(data) == {"device", "reason", "nvml", "gpus", "cpu"}
    if _has_cuda():  # pragma: no cover - a GPU machine
        assert data["device"].startswith("cuda") and data["gpus"]
        return
    assert data["device"] == "cpu" and data["reason"]
    cpu = data["cpu"]
    assert set(cpu) == {"info", "spec", "peak_flops", "peak_source", "theoretical_peak_flops", "measured", "warnings"}
    assert cpu["measured"]["fp32"]["size"] == 64
    assert cpu["peak_flops"]["fp32"] == cpu["measured"]["fp32"]["flops"] > 0
    assert cpu["spec"]["key"] == "cpu"
    assert {"model_name", "physical_cores", "torch_threads", "isa_flags", "memory_total_bytes"} <= set(cpu["info"])
    assert [d for d, _ in small_benchmark] == ["fp32", "bf16", "fp16"]


def test_remeasure_refreshes_the_cache(small_benchmark):
    assert CliRunner().invoke(_app(), ["gpus", "--json", "--remeasure"]).exit_code == 0
    assert small_benchmark and all(refresh for _, refresh in small_benchmark)


def test_gpus_human_output(small_benchmark):
    result = CliRunner().invoke(_app(), ["gpus"], terminal_width=120)
    assert result.exit_code == 0, result.output
    if _has_cuda():  # pragma: no cover
        assert "Dense peak per dtype" in result.output
        return
    assert "No GPU in use:" in result.output
    assert "CPU: " in result.output and "measured TFLOP/s" in result.output


def test_gpus_list_json_has_every_row_and_dtype():
    result = CliRunner().invoke(_app(), ["gpus", "--list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data.pop("schema_version") == 1
    assert set(data) == {"dtypes", "convention", "gpus"}
    assert data["dtypes"] == list(DTYPES)
    rows = {row["key"]: row for row in data["gpus"]}
    assert len(rows) == len(data["gpus"]) >= 20
    for row in rows.values():
        assert {"key", "name", "vendor", "memory_bytes", "memory_bandwidth", "peak_flops", "intra_node_bandwidth",
                "inter_node_bandwidth", "source", "derived"} <= set(row)
        assert list(row["peak_flops"]) == list(DTYPES)
    assert rows["h100-sxm"]["peak_flops"]["bf16"] == 989.4e12
    assert rows["h100-sxm"]["intra_node_bandwidth"] == 900e9
    assert rows["t4"]["peak_flops"]["bf16"] is None  # no bf16 tensor path: None, not 0


def test_gpus_list_human_table():
    result = CliRunner().invoke(_app(), ["gpus", "--list"], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "h100-sxm" in result.output and "989.4" in result.output
    assert "Names and sources" in result.output


def test_gpus_list_imports_no_torch():
    code = textwrap.dedent("""
        import sys, typer
        from typer.testing import CliRunner
        from tui import cmd_gpus
        app = typer.Typer()
        app.callback()(lambda: None)
        cmd_gpus.register(app)
        for args in (["gpus", "--list", "--json"], ["gpus", "--list"], ["gpus", "--help"]):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------- no torch import when nothing needs it

def test_torch_cuda_answers_without_torch_where_the_build_or_the_driver_rules_a_gpu_out(monkeypatch, tmp_path):
    from profiler import detect

    monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now raises ImportError
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(detect, "_DRIVER_DEVICES", (str(tmp_path / "nvidiactl"),))
    no_lib = "NVML init failed: NVML Shared Library Not Found (no NVIDIA driver installed on this machine)"

    def build(cuda=None, hip=None):
        monkeypatch.setattr(cpu_probe, "torch_build", lambda: {"version": "2.9.0", "cuda": cuda, "hip": hip})

    build()
    assert detect.TorchCuda().count_and_reason() == (0, "this PyTorch build (2.9.0) has no CUDA support")
    build(cuda="12.6")
    assert detect.TorchCuda(no_lib).count_and_reason() == (0, "PyTorch sees no CUDA device")
    (tmp_path / "nvidiactl").write_text("")  # a driver is there though NVML's library is not: torch is asked
    with pytest.raises(ImportError):
        detect.TorchCuda(no_lib).count_and_reason()
    (tmp_path / "nvidiactl").unlink()
    with pytest.raises(ImportError):  # NVML failed for another reason
        detect.TorchCuda("NVML init failed: Driver Not Loaded").count_and_reason()
    build(hip="6.2")  # ROCm: NVML never sees AMD GPUs
    with pytest.raises(ImportError):
        detect.TorchCuda(no_lib).count_and_reason()


def test_torch_build_is_read_from_torch_version_py_as_torch_reports_it():
    import importlib.util

    import torch

    location = importlib.util.find_spec("torch").submodule_search_locations[0]
    found = cpu_probe._version_file_constants(f"{location}/version.py")
    assert (found["__version__"], found["cuda"], found.get("hip")) == (
        torch.__version__, torch.version.cuda, getattr(torch.version, "hip", None))


def test_torch_threads_come_from_a_valid_cache_entry_only(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = cpu_probe.default_cache_path().with_name(cpu_probe.THREADS_CACHE_NAME)
    key = cpu_probe._threads_key()
    monkeypatch.setitem(sys.modules, "torch", None)  # not imported: the cache must answer, or torch be asked
    for bad in (True, 0, "3", 1 << 20, None):
        cpu_probe._store_cache(path, key, {"threads": bad})
        with pytest.raises(ImportError):
            cpu_probe.torch_threads()
    cpu_probe._store_cache(path, key, {"threads": 3})
    assert cpu_probe.torch_threads() == 3


def test_gpus_json_from_warm_caches_imports_no_torch(tmp_path):
    """What `mfutop gpus` does on a CPU box after its first run: every figure from a cache, no torch."""
    if cpu_probe.torch_build()["cuda"] or cpu_probe.torch_build()["hip"]:
        pytest.skip("a GPU build of torch: detection asks torch")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    warm = textwrap.dedent("""
        from profiler import cpu_probe
        for dtype in ("fp32", "bf16", "fp16"):
            entry = {"dtype": dtype, "flops": 2.5e11, "size": 2048, "usable": True, "note": "seeded",
                     "measured_at": "2026-01-01T00:00:00", "threads": 2}
            key = cpu_probe._cache_key(dtype, cpu_probe.DEFAULT_MAX_SIZE)  # imports torch once: threads
            cpu_probe._store_cache(cpu_probe.default_cache_path(), key, entry)
        print(cpu_probe.torch_threads())
    """)
    first = subprocess.run([sys.executable, "-c", warm], capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stderr
    code = textwrap.dedent("""
        import json, sys, typer
        from typer.testing import CliRunner
        from tui import cmd_gpus
        app = typer.Typer()
        app.callback()(lambda: None)
        cmd_gpus.register(app)
        result = CliRunner().invoke(app, ["gpus", "--json"])
        assert result.exit_code == 0, result.output
        print(json.dumps({"torch": sorted(m for m in sys.modules if m.split(".")[0] == "torch"),
                          "data": json.loads(result.output)}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    cpu = seen["data"]["cpu"]
    assert seen["torch"] == []
    assert cpu["info"]["torch_threads"] == int(first.stdout.split()[-1])
    assert all(cpu["measured"][d]["cached"] and cpu["measured"][d]["flops"] == 2.5e11 for d in ("fp32", "bf16", "fp16"))
    assert cpu["peak_flops"]["bf16"] == 2.5e11 and "has no CUDA support" in seen["data"]["reason"]
