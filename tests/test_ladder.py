"""The training-speed ladder: which rungs apply, switches carried forward, speed-ups, statuses, the CLI.

Most tests drive ``run_ladder`` with a fake measurement (a generator that
records the RunConfig of each rung) so the rules are exact and instant; one
real CPU ladder through ``mfutop ladder --json`` checks the wiring.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time

import pytest
import torch

from estimator.errors import ConfigError
from estimator.presets import get_model
from profiler.events import JsonlWriter, LogMessage, RunFailed, RunFinished, read_events
from profiler.ladder import (
    RUNG_NAMES, DeviceFacts, LadderRung, add_speedups, applicability, baseline_config, device_facts, parse_rungs,
    run_ladder, RUNGS,
)
from profiler.run_config import RunConfig

TINY = get_model("gpt-tiny")
CPU_FACTS = DeviceFacts(
    kind="cpu", name="test CPU", tf32=(False, "no tf32 here"), fused_adamw=(True, "fused ok"),
    pinned_memory=(False, "no accelerator"), bf16=(True, "bf16 ok"), sdpa=(True, "sdpa ok"),
    compile=(True, "g++ found"),
)
GPU_FACTS = DeviceFacts(
    kind="cuda", name="test GPU", tf32=(True, "ampere"), fused_adamw=(True, "fused"), pinned_memory=(True, "pin"),
    bf16=(True, "bf16"), sdpa=(True, "flash"), compile=(True, "triton"),
)
CLI_LIMIT_S = 300  # a guard against a hung run, not a performance assertion


class FakeMeasure:
    """Stands in for run_profile: records each rung's config, reports tokens/s from a table."""

    def __init__(self, tokens=None, fail=(), slow=()):
        self.configs: list[RunConfig] = []
        self.tokens = tokens or {}
        self.fail, self.slow = fail, slow

    def __call__(self, config: RunConfig, cancel: threading.Event):
        self.configs.append(config)
        key = len(self.configs)
        yield LogMessage("warning", f"rung call {key}")
        if key in self.fail:
            yield RunFailed("RuntimeError: boom", "RuntimeError")
            return
        while key in self.slow and not cancel.is_set():
            time.sleep(0.01)
        tps = self.tokens.get(key, 1000.0 * key)
        batch = config.batch_size or 64
        summary = {
            "config": {"precision_effective": config.precision},
            "measured": {"tokens_per_s": tps, "step_time_s": batch * 32 / tps, "peak_memory_bytes": 1000 * key,
                         "mfu": 0.01 * key, "peak_dtype": "fp32", "batch_size": batch, "steady": True},
            "prediction": {"step": {"tokens_per_s": 2 * tps}},
        }
        yield RunFinished(summary=summary, cancelled=cancel.is_set())


def _ladder(facts=CPU_FACTS, model=TINY, **kwargs):
    measure = kwargs.pop("measure", None) or FakeMeasure()
    config = RunConfig(model=model, device=facts.kind, seq_len=32, steps=2)
    events = list(run_ladder(config, measure=measure, facts=facts, **kwargs))
    final = events[-1]
    assert isinstance(final, RunFinished)
    return {r["name"]: r for r in final.summary["rungs"]}, measure, events


def test_rungs_follow_the_seed_order():
    assert RUNG_NAMES == ("baseline", "tf32", "fused-adamw", "pinned-memory", "bf16", "flash-attention", "compile",
                          "vocab-pad", "max-batch")
    assert RUNGS[0].seed_a100_tokens_per_s == 12525 and RUNGS[-1].seed_a100_tokens_per_s == 142156


def test_what_applies_on_a_cpu_is_decided_from_the_facts():
    assert applicability(RUNGS[1], CPU_FACTS, TINY) == (False, "n/a", "n/a on cpu: no tf32 here")
    assert applicability(RUNGS[3], CPU_FACTS, TINY) == (False, "n/a", "n/a on cpu: no accelerator")
    ok, status, why = applicability(RUNGS[7], CPU_FACTS, TINY)  # gpt-tiny's 512 is already a multiple of 64
    assert (ok, status) == (False, "n/a") and "512 is already a multiple of 64" in why
    ok, _, why = applicability(RUNGS[7], CPU_FACTS, get_model("nanogpt-124m"))
    assert ok and why == "vocabulary 50257 -> 50304"
    assert applicability(RUNGS[6], CPU_FACTS, TINY, skip=["compile"]) == (False, "skipped", "skipped (--skip compile)")
    assert applicability(RUNGS[4], CPU_FACTS, TINY, selected=["baseline"])[1] == "skipped"


def test_real_cpu_facts_match_what_torch_does_here():
    facts = device_facts("cpu")
    assert facts.kind == "cpu"
    assert facts.pinned_memory[0] is False and "host" in facts.pinned_memory[1]
    assert facts.tf32[0] is False
    assert facts.sdpa[0] is True  # SDPA exists on the CPU
    try:  # fused AdamW on the CPU exists in recent torch: the fact must say what torch really does
        p = torch.nn.Parameter(torch.ones(2))
        p.grad = torch.ones(2)
        torch.optim.AdamW([p], fused=True).step()
        works = True
    except Exception:  # noqa: BLE001
        works = False
    assert facts.fused_adamw[0] is works


def test_each_rung_keeps_the_switches_of_the_rungs_before_it():
    rows, measure, _ = _ladder()
    by_rung = dict(zip([n for n in RUNG_NAMES if rows[n]["status"] == "measured"], measure.configs))
    base = by_rung["baseline"]
    assert (base.precision, base.flash_attention, base.fused_adamw, base.pin_memory, base.compile) == \
        ("fp32", False, False, False, False)
    assert base.batch_size == 4 and base.search is False  # the CPU default batch until the max-batch rung
    comp = by_rung["compile"]
    assert (comp.precision, comp.flash_attention, comp.fused_adamw, comp.compile) == ("bf16-mixed", True, True, True)
    assert comp.pin_memory is False  # n/a on the CPU: never carried forward
    last = by_rung["max-batch"]
    assert last.batch_size is None and last.search is True and last.compile is True
    assert [rows[n]["status"] for n in RUNG_NAMES] == [
        "measured", "n/a", "measured", "n/a", "measured", "measured", "measured", "n/a", "measured"]


def test_speedups_are_over_the_previous_measured_rung_and_the_baseline():
    tokens = {1: 100.0, 2: 150.0, 3: 300.0, 4: 600.0, 5: 600.0, 6: 900.0}
    rows, _, _ = _ladder(measure=FakeMeasure(tokens=tokens))
    assert rows["baseline"]["speedup_base"] == 1.0 and rows["baseline"]["speedup_prev"] is None
    assert rows["fused-adamw"]["speedup_prev"] == 1.5  # tf32 (n/a) between them is passed over
    assert rows["bf16"]["speedup_prev"] == 2.0 and rows["bf16"]["speedup_base"] == 3.0
    assert rows["max-batch"]["speedup_base"] == 9.0
    assert rows["tf32"]["speedup_prev"] is None and rows["tf32"]["tokens_per_s"] is None
    assert rows["bf16"]["predicted_tokens_per_s"] == 600.0 and rows["bf16"]["precision"] == "bf16-mixed"
    assert add_speedups([]) == []


def test_a_failed_rung_is_reported_and_its_switch_not_carried():
    rows, measure, _ = _ladder(measure=FakeMeasure(fail=(3,)))  # 3rd measurement: bf16
    assert rows["bf16"]["status"] == "failed" and rows["bf16"]["reason"] == "RuntimeError: boom"
    assert rows["bf16"]["tokens_per_s"] is None
    flash = measure.configs[3]
    assert flash.flash_attention is True and flash.precision == "fp32"


def test_a_rung_over_its_time_is_stopped_and_marked_timeout():
    rows, _, _ = _ladder(measure=FakeMeasure(slow=(1,)), rung_timeout_s=0.2, rungs=["baseline", "fused-adamw"])
    assert rows["baseline"]["status"] == "timeout" and "--rung-timeout" in rows["baseline"]["reason"]
    assert rows["fused-adamw"]["status"] == "measured"
    assert rows["compile"]["status"] == "skipped" and rows["compile"]["reason"] == "not selected (--rungs)"


def test_cancel_ends_the_ladder_with_what_it_measured():
    cancel = threading.Event()
    measure = FakeMeasure(slow=(2,))
    threading.Timer(0.2, cancel.set).start()
    config = RunConfig(model=TINY, device="cpu", seq_len=32, steps=2)
    events = list(run_ladder(config, cancel, measure=measure, facts=CPU_FACTS))
    final = events[-1]
    assert isinstance(final, RunFinished) and final.cancelled
    statuses = {r["name"]: r["status"] for r in final.summary["rungs"]}
    assert statuses == {"baseline": "measured", "tf32": "n/a", "fused-adamw": "cancelled"}


def test_gpu_facts_make_every_rung_apply():
    rows, measure, _ = _ladder(facts=GPU_FACTS, model=get_model("nanogpt-124m"))
    assert all(r["status"] == "measured" for r in rows.values())
    assert measure.configs[0].batch_size == 8 and measure.configs[3].pin_memory is True
    assert measure.configs[7].vocab_pad_multiple == 64


def test_rung_events_round_trip_through_jsonl():
    _, _, events = _ladder()
    stream = io.StringIO()
    writer = JsonlWriter(stream)
    for event in events:
        writer.write(event)
    again = list(read_events(stream.getvalue().splitlines()))
    rungs = [e for e in again if isinstance(e, LadderRung)]
    assert [e.rung["name"] for e in rungs] == list(RUNG_NAMES)
    assert rungs[0] == next(e for e in events if isinstance(e, LadderRung))
    assert any(isinstance(e, LogMessage) and e.text.startswith("[baseline] ") for e in again)


def test_unknown_rung_names_are_a_config_error():
    assert parse_rungs("baseline, bf16") == ("baseline", "bf16")
    with pytest.raises(ConfigError, match="unknown rung.*flsh.*choose from: baseline"):
        parse_rungs("flsh")
    with pytest.raises(ConfigError):
        list(run_ladder(RunConfig(model=TINY, device="cpu"), skip=["nope"], facts=CPU_FACTS, measure=FakeMeasure()))


def test_baseline_config_resets_every_switch():
    config = RunConfig(model=TINY, compile=True, vocab_pad_multiple=64, batch_size=3)
    base = baseline_config(config, "cpu")
    assert (base.precision, base.compile, base.vocab_pad_multiple, base.batch_size) == ("fp32", False, 1, 3)


# ----------------------------------------------------------------- the real thing, on this CPU

def test_mfutop_ladder_json_on_cpu():
    cmd = [sys.executable, "-m", "tui", "ladder", "--device", "cpu", "--json", "--model", "gpt-tiny", "--seq-len", "32",
           "--batch-size", "2", "--steps", "2", "--warmup", "1", "--skip", "compile", "--skip", "max-batch"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_LIMIT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["model"]["name"] == "gpt-tiny" and out["device"]["device"] == "cpu"
    rows = {r["name"]: r for r in out["rungs"]}
    assert list(rows) == list(RUNG_NAMES)
    keys = {"name", "applies", "reason", "tokens_per_s", "peak_memory_bytes", "mfu", "speedup_prev", "speedup_base",
            "predicted_tokens_per_s", "batch_size", "precision"}
    assert all(keys <= set(r) for r in rows.values())
    assert rows["compile"]["status"] == "skipped" and rows["compile"]["reason"] == "skipped (--skip compile)"
    assert rows["tf32"]["applies"] is False and rows["tf32"]["reason"].startswith("n/a on cpu")
    assert rows["pinned-memory"]["reason"].startswith("n/a on cpu")
    assert rows["vocab-pad"]["status"] == "n/a"
    measured = [r for r in rows.values() if r["status"] == "measured"]
    assert {r["name"] for r in measured} >= {"baseline", "flash-attention"}
    for row in measured:
        assert row["tokens_per_s"] > 0 and row["peak_memory_bytes"] > 0 and row["mfu"] > 0
        assert row["predicted_tokens_per_s"] > 0 and row["batch_size"] == 2
    assert rows["baseline"]["speedup_base"] == 1.0 and rows["baseline"]["precision"] == "fp32"
    assert rows["flash-attention"]["speedup_base"] == pytest.approx(
        rows["flash-attention"]["tokens_per_s"] / rows["baseline"]["tokens_per_s"])


def test_mfutop_ladder_bad_rung_is_one_line_exit_2():
    done = subprocess.run([sys.executable, "-m", "tui", "ladder", "--device", "cpu", "--rungs", "flsh"],
                          capture_output=True, text=True, timeout=CLI_LIMIT_S)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown rung(s) flsh" in done.stderr


def test_nproc_adds_a_measured_ddp_rung_on_the_final_setup():
    config = RunConfig(model=TINY, device="cpu", seq_len=32, steps=2, warmup=1, batch_size=2)
    measure = FakeMeasure()
    events = list(run_ladder(config, rungs=["baseline"], nproc=2, measure=measure, facts=CPU_FACTS))
    final = events[-1]
    assert isinstance(final, RunFinished), final
    ddp = final.summary["rungs"][-1]
    assert ddp["name"] == "ddp-x2" and ddp["status"] == "measured", ddp
    assert ddp["tokens_per_s"] > 0 and ddp["batch_size"] == 2 and ddp["precision"] == "fp32"
    assert ddp["distributed"]["nproc"] == 2 and len(ddp["distributed"]["per_rank"]) == 2
    assert ddp["speedup_prev"] == pytest.approx(ddp["tokens_per_s"] / 1000.0)  # over the (fake) baseline
    assert "scaling efficiency" in ddp["reason"]
