"""`mfutop calibrate` and `mfutop estimate --device-profile`: JSON out, one-line errors with exit 2."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from estimator.device_profile import dumps
from tests.fixtures.device_profiles import synthetic_profile
from tui import cmd_calibrate, cmd_estimate


def _app() -> typer.Typer:
    app = typer.Typer()
    cmd_calibrate.register(app)
    cmd_estimate.register(app)
    return app


def test_estimate_with_a_device_profile_predicts_from_it(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(dumps(synthetic_profile()))
    args = ["estimate", "--model", "gpt-tiny", "-b", "4", "-T", "64", "--precision", "fp32", "--json"]
    plain = json.loads(CliRunner().invoke(_app(), args).stdout)
    result = CliRunner().invoke(_app(), args + ["--device-profile", str(path)])
    assert result.exit_code == 0, result.output
    step = json.loads(result.stdout)["step"]
    assert step["source"] == "measured" and step["spec"]["time_s"] == pytest.approx(plain["step"]["time_s"])
    assert step["time_s"] == pytest.approx(sum(step["categories"].values()))


def test_a_corrupt_device_profile_is_one_line_and_exit_2(tmp_path):
    data = json.loads(dumps(synthetic_profile()))
    data["gemm"]["fp32"]["seconds"][0] = -1
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(_app(), ["estimate", "--model", "gpt-tiny", "--device-profile", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "gemm.fp32.seconds[0]" in lines[0]


@pytest.mark.slow
def test_calibrate_json_prints_the_profile(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    from profiler import profile_cache

    monkeypatch.setattr(profile_cache, "device_profile",
                        lambda device, remeasure=False, reset=False: (synthetic_profile(), {"cached": True, "path": "x",
                                                                               "reason": None}))
    out = tmp_path / "copy.json"
    result = CliRunner().invoke(_app(), ["calibrate", "--device", "cpu", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["profile"]["schema"] == "mfutop.device_profile/6" and data["cached"] is True
    assert json.loads(out.read_text()) == data["profile"]
    human = CliRunner().invoke(_app(), ["calibrate", "--device", "cpu"])
    assert human.exit_code == 0 and "GEMM" in human.output
