"""`mfutop plan` / ``estimator.planner``: rows equal predict() and `mfutop estimate`, pruning loses
nothing against brute force, the search space obeys the divisibility rules, bad input is one line, exit 2."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace

import pytest
import typer
from typer.testing import CliRunner

from estimator.errors import ConfigError
from estimator.hardware import get_gpu
from estimator.max_batch import default_memory_limit
from estimator.model_config import ModelConfig
from estimator.plan_fit import cheapest_fitting_change
from estimator.plan_space import (
    divisors,
    knob_options,
    precision_options,
    layouts,
    micro_batches,
    pp_options,
    tp_options,
)
from estimator.planner import PlanRequest, _score, plan
from estimator.predict import predict
from estimator.presets import get_model
from estimator.setup import TrainSetup
from tui import cmd_estimate, cmd_plan

H100 = get_gpu("h100-sxm")
TINY = get_model("gpt-tiny")  # 2 layers, 4 heads
MINI = get_model("gpt-mini")  # 4 layers, 4 heads
TINY_MOE = ModelConfig(name="moe-tiny", vocab_size=512, context_length=128, d_model=64, n_layers=2, n_heads=4,
                       n_kv_heads=2, mlp="swiglu", norm="rmsnorm", position="rope", n_experts=4, top_k=2)

cli = typer.Typer(pretty_exceptions_enable=False)
cmd_plan.register(cli)
cmd_estimate.register(cli)
runner = CliRunner()


def _fitting_limit(model: ModelConfig, seq: int, gpus: int, batch: int) -> int:
    """A memory limit between the smallest and the largest candidate's need, so pruning has work to do."""
    needs = []
    for lay in layouts(model, gpus, 8, seq, batch, None):
        for k in knob_options(model, lay, ("bf16-mixed", "bf16-master")):
            for b in (micro_batches(lay)[0], micro_batches(lay)[-1]):
                s = TrainSetup(batch_size=b, seq_len=seq, precision=k.precision, recompute=k.recompute,
                               flash_attention=k.flash_attention, grad_accum=lay.per_replica // b, dp=lay.dp,
                               tp=lay.tp, pp=lay.pp, sp=k.sp, ep=lay.ep, zero=k.zero,
                               vpp=k.vpp, cp=lay.cp)
                needs.append(predict(model, H100, s, check_fit=False)["memory"]["total"])
    needs.sort()
    return needs[len(needs) // 3]


def _brute_force(req: PlanRequest) -> list[tuple[float, dict]]:
    """Every candidate of the space through predict() itself: (score, prediction) of those that fit."""
    out = []
    seq = req.seq
    for lay in layouts(req.model, req.gpus, req.gpus_per_node, seq, req.global_batch, req.global_batch_tokens):
        for k in knob_options(req.model, lay, req.precisions or precision_options(req.hardware)):
            for b in micro_batches(lay):
                s = TrainSetup(batch_size=b, seq_len=seq, precision=k.precision, recompute=k.recompute,
                               flash_attention=k.flash_attention, grad_accum=lay.per_replica // b, dp=lay.dp,
                               tp=lay.tp, pp=lay.pp, sp=k.sp, ep=lay.ep, zero=k.zero,
                               vpp=k.vpp, cp=lay.cp)
                p = predict(req.model, req.hardware, s, check_fit=False, memory_limit_bytes=req.memory_limit_bytes)
                if p["memory"]["fits"]:
                    out.append((_score(req, lay.world, p["step"]["time_s"], p["step"]["tokens_per_step"]), p))
    return sorted(out, key=lambda x: x[0])


@pytest.mark.parametrize("model,gpus,batch", [(TINY, 1, 8), (TINY, 4, 8), (MINI, 8, 16), (TINY_MOE, 4, 8),
                                              (MINI, 16, 32)])
def test_pruning_keeps_the_best_candidate_of_brute_force(model, gpus, batch):
    seq = model.context_length
    limit = _fitting_limit(model, seq, gpus, batch)
    req = PlanRequest(model, H100, gpus, global_batch=batch, memory_limit_bytes=limit, top=5)
    brute = _brute_force(req)
    result = plan(req)
    assert result.counts["memory_checked"] < result.counts["enumerated"]  # the bisection skipped some
    best_score, best = brute[0]
    assert result.rows[0]["step_time_s"] == pytest.approx(best["step"]["time_s"], rel=1e-12)
    # the shown top 5 are the brute-force top scores (twins dropped: each shown score is among them, in order)
    scores = [s for s, _ in brute]
    shown = [_score(req, r["gpus"], r["step_time_s"], r["global_batch_tokens"]) for r in result.rows]
    assert shown == sorted(shown) and shown[0] == best_score
    assert all(s in scores for s in shown)
    assert result.counts["fitting"] == len(brute)


def test_rows_are_distinct_layouts_each_at_its_best_knobs():
    """By default each row is another (TP, PP, DP, CP, EP) layout, the best of its knob variants; with
    ``distinct_layouts=False`` a layout's variants rank too, and each distinct row is the first of its
    layout there."""
    req = PlanRequest(get_model("llama-2-7b"), H100, 64, global_batch_tokens=2**22, top=6)
    distinct, variants = plan(req), plan(replace(req, distinct_layouts=False, top=40))

    def key(row):
        return tuple(row["setup"][k] for k in ("tp", "pp", "dp", "cp", "ep"))

    keys = [key(r) for r in distinct.rows]
    assert len(distinct.rows) == 6 and len(set(keys)) == 6
    assert len({key(r) for r in variants.rows}) < len(variants.rows)  # the variants do repeat a layout
    first = {}
    for row in variants.rows:
        first.setdefault(key(row), row)
    for row in distinct.rows:
        assert row["step_time_s"] == first[key(row)]["step_time_s"]
        assert row["setup"] == first[key(row)]["setup"]


def test_each_row_equals_predict_and_mfutop_estimate_with_its_command_line():
    result = plan(PlanRequest(get_model("llama-2-7b"), H100, 64, global_batch_tokens=2**22, tokens=10**12,
                              gpu_hour_cost=2.5, top=4))
    assert len(result.rows) == 4
    for row in result.rows:
        argv = shlex.split(row["command"])
        assert argv[:2] == ["mfutop", "estimate"] and argv == row["argv"]
        done = runner.invoke(cli, [*argv[1:], "--json"])
        assert done.exit_code == 0, done.output
        est = json.loads(done.stdout)
        assert est["setup"]["world_size"] == row["gpus"] == 64
        assert est["memory"]["total"] == row["memory_bytes"]
        assert est["memory"]["fits"] is row["fits"] is True
        assert est["step"]["time_s"] == row["step_time_s"]
        assert est["step"]["tokens_per_s"] == row["tokens_per_s"]
        assert est["step"]["mfu"] == row["mfu"]
        assert est["step"]["breakdown"]["pp_bubble_s"] == row["pp_bubble_s"]
        assert est["train"]["time_s"] == row["train_time_s"] and est["train"]["cost"] == row["cost"]
        assert {k: est["step"]["breakdown"][k] for k in row["breakdown"]} == row["breakdown"]
        assert sum(row["breakdown"].values()) == pytest.approx(row["step_time_s"], rel=1e-12)


def test_winner_reason_names_the_differing_term_and_setup():
    result = plan(PlanRequest(get_model("llama-2-7b"), H100, 64, global_batch_tokens=2**22, top=3))
    best, runner_up = result.rows[0], result.rows[1]
    assert best["step_time_s"] <= runner_up["step_time_s"]
    diffs = {k: runner_up["breakdown"][k] - best["breakdown"][k] for k in best["breakdown"]}
    from estimator.plan_report import STEP_TERMS

    assert STEP_TERMS[max(diffs, key=diffs.get)] in result.reason


def test_space_respects_heads_kv_heads_layers_and_nodes():
    llama70 = get_model("llama-2-70b")  # 64 heads, 8 KV heads, 80 layers
    assert tp_options(llama70, 1024, 8) == [1, 2, 4, 8]
    assert tp_options(llama70, 1024, 4) == [1, 2, 4]
    assert tp_options(ModelConfig(name="m", vocab_size=64, context_length=64, d_model=96, n_layers=6, n_heads=12,
                                  n_kv_heads=3), 8, 8) == [1]  # 2 and 4 divide 12 heads, not 3 KV heads
    assert pp_options(llama70, 128, uneven=False) == [1, 2, 4, 8, 16]  # 32 does not divide 80 layers
    assert 32 in pp_options(llama70, 128, uneven=True) and 128 not in pp_options(llama70, 128, uneven=True)
    lays = list(layouts(llama70, 1024, 8, 4096, 1024, None))
    assert {(x.tp, x.pp) for x in lays} == {(t, p) for t in (1, 2, 4, 8) for p in (1, 2, 4, 8, 16)}
    assert all(x.world == 1024 and x.batch == 1024 for x in lays)
    assert divisors(12) == [1, 2, 3, 4, 6, 12]
    # the token-given batch rounds to whole sequences per replica: 4e6 / 4096 = 976.6 -> 1024 at DP 128
    [lay] = [x for x in layouts(llama70, 1024, 8, 4096, None, 4_000_000) if (x.tp, x.pp) == (8, 1)]
    assert lay.dp == 128 and lay.batch == 1024


def test_cost_objective_also_tries_fewer_gpus():
    req = PlanRequest(get_model("llama-2-7b"), H100, 64, global_batch_tokens=2**22, objective="cost", top=3)
    result = plan(req)
    gpu_s_per_token = [r["gpus"] * r["step_time_s"] / r["global_batch_tokens"] for r in result.rows]
    assert gpu_s_per_token == sorted(gpu_s_per_token)
    throughput = plan(PlanRequest(get_model("llama-2-7b"), H100, 64, global_batch_tokens=2**22, top=1))
    best = throughput.rows[0]
    assert gpu_s_per_token[0] <= best["gpus"] * best["step_time_s"] / best["global_batch_tokens"]


def test_cheapest_fitting_change_fits_and_changes_few_flags():
    model = get_model("llama-2-70b")
    given = TrainSetup(dp=8, seq_len=4096, precision="bf16")  # the case: 8 x H100 does not fit as given
    assert not predict(model, H100, given, check_fit=False)["memory"]["fits"]
    change = cheapest_fitting_change(model, H100, given)
    assert change.prediction["memory"]["fits"]
    assert change.prediction["memory"]["total"] <= default_memory_limit(H100)
    assert change.setup.world_size == 8 and change.setup.precision == "bf16"
    assert set(change.changed) == {k for k in change.changed if change.changed[k][0] != change.changed[k][1]}
    assert len(change.changed) <= 2 and "--zero" in change.flags
    nothing = cheapest_fitting_change(model, H100, TrainSetup(dp=8, seq_len=4096))  # 16 B/param: > 8 x 80 GB
    assert nothing.setup is None and nothing.smallest_gpus == 16


def _fail(*args: str) -> str:
    done = runner.invoke(cli, ["plan", *args])
    assert done.exit_code == 2, done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mfutop: error: ")
    assert "Traceback" not in done.output
    return lines[0]


def test_bad_input_is_one_line_exit_2():
    assert "smallest GPU count that fits is 16" in _fail("--model", "llama-2-70b", "--gpus", "8")
    assert "not a multiple of --gpus-per-node 8" in _fail("--model", "llama-2-7b", "--gpus", "12")
    msg = _fail("--model", "llama-2-70b", "--gpus", "1024", "--global-batch-size", "4")
    assert "smaller than the smallest DP degree 8" in msg
    assert "objective" in _fail("--model", "gpt2", "--gpus", "8", "--objective", "speed")
    assert "not both" in _fail("--model", "gpt2", "--gpus", "8", "--global-batch-size", "8",
                               "--global-batch-tokens", "1M")
    assert "unknown model" in _fail("--model", "nope", "--gpus", "8")
    assert "context length" in _fail("--model", "gpt2", "--gpus", "8", "--seq-len", "4096")


def test_plan_json_and_text_output():
    done = runner.invoke(cli, ["plan", "--model", "gpt2", "--gpus", "8", "--top", "3", "--json"])
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    assert [r["rank"] for r in out["rows"]] == [1, 2, 3]
    assert out["candidates"]["predicted"] >= 3 and out["candidates"]["enumerated"] >= out["candidates"]["fitting"]
    assert any("context parallelism" in g for g in out["gaps"])
    text = runner.invoke(cli, ["plan", "--model", "gpt2", "--gpus", "8", "--top", "2"])
    assert text.exit_code == 0 and out["rows"][0]["command"] in text.stdout.replace("\n", " ") or \
        out["rows"][0]["command"] in text.stdout


def test_progress_line_only_after_a_second(monkeypatch):
    import io

    clock = iter([0.0, 0.5, 2.0, 2.5])
    monkeypatch.setattr(cmd_plan.time, "perf_counter", lambda: next(clock))
    stream = io.StringIO()
    progress = cmd_plan._Progress(stream)  # start at t = 0
    progress(1, 10)  # t = 0.5: silent
    assert stream.getvalue() == ""
    progress(5, 10)  # t = 2.0: shown
    progress(10, 10)
    progress.close()
    assert "5/10" in stream.getvalue() and stream.getvalue().endswith("\n")


def test_plan_request_validation():
    with pytest.raises(ConfigError, match="exactly one"):
        plan(PlanRequest(TINY, H100, 1))
    with pytest.raises(ConfigError, match="positive integer"):
        plan(PlanRequest(TINY, H100, 0, global_batch=1))


def test_hf_config_rows_reproduce_with_hf_config_flag(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "gpt2", "n_embd": 256, "n_layer": 4, "n_head": 8, "vocab_size": 8192,
                                "n_positions": 512}))
    done = runner.invoke(cli, ["plan", "--hf-config", str(path), "--gpus", "4", "--global-batch-size", "16",
                               "--top", "2", "--json"])
    assert done.exit_code == 0, done.output
    row = json.loads(done.stdout)["rows"][0]
    assert row["argv"][2:4] == ["--hf-config", str(path)]
    est = runner.invoke(cli, [*row["argv"][1:], "--json"])
    assert est.exit_code == 0, est.output
    assert json.loads(est.stdout)["step"]["time_s"] == row["step_time_s"]


A100_NOTE = ("a100 -> NVIDIA A100 SXM4 80GB (also: a100-sxm-40gb, a100-pcie-40gb, a100-pcie-80gb; "
             "pass one to choose)")


def test_a_gpu_alias_that_several_rows_could_mean_says_which_it_picked():
    args = ["plan", "--model", "gpt-tiny", "--gpus", "2", "--top", "1"]
    done = runner.invoke(cli, [*args, "--gpu", "a100", "--json"])
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    assert (out["gpu"], out["gpu_note"]) == ("a100-sxm-80gb", A100_NOTE)
    assert done.stderr == ""  # --json: the note is in the object only
    text = runner.invoke(cli, [*args, "--gpu", "a100"])
    assert text.exit_code == 0, text.output
    assert text.stderr.splitlines()[0] == f"mfutop: {A100_NOTE}" and "pass one to choose" not in text.stdout
    exact = runner.invoke(cli, [*args, "--gpu", "a100-sxm-80gb", "--json"])
    assert json.loads(exact.stdout)["gpu_note"] is None and exact.stderr == ""


def test_gpu_note_echoes_the_users_text_without_control_characters():
    from tui.gpu_choice import gpu_note

    assert gpu_note("a100") == A100_NOTE
    assert gpu_note(" a100\x07 ") == A100_NOTE  # the alias matched; the bell is not echoed
    assert gpu_note("h100") == ("h100 -> NVIDIA H100 SXM5 80GB (also: h100-pcie, h100-nvl; pass one to choose)")
    assert gpu_note("h100-sxm") is None and gpu_note("l40") is None
    with pytest.raises(ConfigError, match="unknown GPU"):
        gpu_note("h1000")


def test_a_papers_toolset_searches_only_its_knobs():
    """--toolset megatron-2021: the layouts of the full search, each with Megatron-LM 2021's knobs only
    (no ZeRO, full recompute, no flash attention, fp32 master weights, plain 1F1B)."""
    req = PlanRequest(MINI, get_gpu("a100-sxm-80gb"), 8, global_batch=16, toolset="megatron-2021", top=50)
    rows = plan(req).rows
    assert rows and {(r["setup"]["zero"], r["setup"]["recompute"], r["setup"]["flash_attention"],
                      r["setup"]["vpp"], r["setup"]["precision"]) for r in rows} == {(0, "full", False, 1,
                                                                                      "bf16-master")}
    assert plan(req).to_dict()["toolset"] == "megatron-2021"  # the JSON says what was searched
    everything = plan(replace(req, toolset="all")).rows
    assert everything[0]["step_time_s"] <= rows[0]["step_time_s"]  # more knobs can only find as fast or faster
    with pytest.raises(ConfigError, match="toolset must be one of"):
        plan(replace(req, toolset="deepspeed-2019"))
    result = runner.invoke(cli, ["plan", "--model", "gpt-mini", "--gpu", "a100-sxm-80gb", "--gpus", "8",
                                 "--global-batch-size", "16", "--toolset", "nope"])
    assert result.exit_code == 2 and "toolset must be one of" in result.stderr
