"""Distributed runs under torchrun (gloo ranks on the CPU): aggregation, failure, cleanup.

The pure rules (aggregate tokens/s, scaling efficiency, the ring all-reduce
prediction, torchrun's failure text, the command line) are checked exactly;
four real launches with gpt-tiny check the CLI's JSON, a rank killed by
SIGKILL (one line, no process left), cancellation, and FSDP's ZeRO-3 memory
prediction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import psutil
import pytest

from estimator.errors import ConfigError
from estimator.params import count_params
from estimator.presets import get_model
from estimator.communication import COLLECTIVE_LATENCY_S
from profiler.ddp import (
    RUN_MARKER_PREFIX, describe_failure, leftover_processes, run_distributed,
    torchrun_args, torchrun_command,
)
from profiler.ddp_summary import (
    aggregate_ranks, allreduce_bandwidth, allreduce_block, describe_distributed, scaling_efficiency,
)
from profiler.events import LogMessage, RunFailed, RunFinished, StepSample
from profiler.run_config import RunConfig, config_from_json, config_to_json

TINY = get_model("gpt-tiny")
QUICK = dict(model=TINY, device="cpu", batch_size=2, seq_len=32, steps=3, warmup=1, precision="fp32")
LAUNCH_LIMIT_S = 240  # a guard against a hung launch, not a performance assertion


def _marker(name: str) -> str:
    return f"{RUN_MARKER_PREFIX}test-{name}-{os.getpid()}"


def _no_leftovers(marker: str) -> None:
    assert leftover_processes(marker) == []
    mine = [p for p in psutil.Process().children(recursive=True)
            if marker in " ".join(_cmdline(p))]
    assert mine == []


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


# ----------------------------------------------------------------- pure rules

def test_aggregate_is_all_tokens_over_the_slowest_rank():
    ranks = [
        {"rank": 0, "tokens": 600, "seconds": 2.0, "step_time_s": 0.2, "peak_memory_bytes": 10},
        {"rank": 1, "tokens": 600, "seconds": 3.0, "step_time_s": 0.3, "peak_memory_bytes": 12},
    ]
    agg = aggregate_ranks(ranks)
    assert agg["tokens"] == 1200
    assert agg["tokens_per_s"] == 400.0  # 1200 / 3.0, not the mean of 300 and 200 tok/s
    assert agg["slowest_rank"] == 1
    assert agg["rank_time_spread"] == pytest.approx(0.5)
    assert agg["step_time_s"] == 0.3 and agg["peak_memory_bytes"] == 12
    assert scaling_efficiency(400.0, 250.0, 2) == 0.8
    assert scaling_efficiency(None, 250.0, 2) is None
    with pytest.raises(ValueError):
        aggregate_ranks([])


def test_ring_allreduce_prediction_and_its_assumptions():
    cpu = allreduce_block(device="cpu", strategy="ddp", nranks=4, grad_bytes=8_000_000, link_bandwidth=None,
                          interconnect_efficiency=0.7, copy_bandwidth=10e9, measured_s=0.01, step_time_s=0.5,
                          single_step_time_s=0.4, estimator_dp_comm_s=None)
    assert cpu["predicted_s"] == pytest.approx(2 * 3 / 4 * 8e6 / 10e9 + 2 * 3 * COLLECTIVE_LATENCY_S)
    assert cpu["step_time_overhead_s"] == pytest.approx(0.1)
    assert "memcpy" in cpu["bandwidth_source"] and "upper bound" in cpu["bandwidth_source"]
    fsdp = allreduce_block(device="cpu", strategy="fsdp", nranks=4, grad_bytes=8_000_000, link_bandwidth=None,
                           interconnect_efficiency=0.7, copy_bandwidth=10e9, measured_s=None, step_time_s=None,
                           single_step_time_s=None, estimator_dp_comm_s=None)
    assert fsdp["predicted_s"] == pytest.approx(2 * 3 / 4 * 12e6 / 10e9 + 2 * 3 * COLLECTIVE_LATENCY_S)
    assert fsdp["step_time_overhead_s"] is None
    bw, why = allreduce_bandwidth("cuda", 900e9, 0.7)  # H100 NVLink: 900 GB/s both ways
    assert bw == pytest.approx(450e9 * 0.7) and "bidirectional" in why
    bw, why = allreduce_bandwidth("cpu", None, 0.7)  # nothing measured: a named default
    assert bw > 0 and "default" in why


def test_torchrun_command_is_standalone_unless_a_rendezvous_is_named():
    cmd = torchrun_command(2, [], ["--run-id", "x"], python="py")
    assert cmd[:6] == ["py", "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    assert cmd[-4:] == ["-m", "profiler.ddp_worker", "--run-id", "x"]
    multi = torchrun_args(nnodes=2, node_rank=1, rdzv_endpoint="node0:29500")
    assert multi == ["--nnodes", "2", "--node-rank", "1", "--rdzv-endpoint", "node0:29500", "--rdzv-backend", "c10d"]
    cmd = torchrun_command(8, multi, [], python="py")
    assert "--standalone" not in cmd and cmd[5:13] == multi
    assert torchrun_args() == []
    with pytest.raises(ConfigError, match="--rdzv-endpoint"):
        torchrun_args(nnodes=2)
    with pytest.raises(ConfigError, match="need --nnodes"):
        torchrun_args(node_rank=1)
    with pytest.raises(ConfigError, match="N or MIN:MAX"):
        torchrun_args(nnodes="two")


TORCHRUN_KILLED = """\
E1123 15:02:55.604000 13478 api.py:1002] failed (exitcode: -9) local_rank: 1 (pid: 13508) of binary: python
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
=======================================================
profiler.ddp_worker FAILED
-------------------------------------------------------
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 13507)  (SIGTERM)
  traceback : Signal 15 (SIGTERM) received by PID 13507
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-23_15:02:55
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 13508)  (SIGKILL)
  traceback : Signal 9 (SIGKILL) received by PID 13508
======================================================="""


def test_failure_text_names_the_first_rank_that_died():
    echo = RunFailed("rank 0: RuntimeError: Connection reset by peer", "RuntimeError")  # a consequence
    msg = describe_failure(TORCHRUN_KILLED.splitlines(), 1, [echo])
    assert msg.startswith("rank 1 died: killed by SIGKILL")
    raised = TORCHRUN_KILLED.replace("exitcode  : -9 (pid: 13508)  (SIGKILL)", "exitcode  : 1 (pid: 13508)")
    own = RunFailed("rank 1: OutOfMemoryError: CUDA out of memory", "OutOfMemoryError")
    assert describe_failure(raised.splitlines(), 1, [echo, own]) == own.message
    assert describe_failure(["ValueError: bad"], 1, []) == "distributed run failed (torchrun exit code 1): ValueError: bad"


def test_config_travels_to_the_worker_intact():
    config = RunConfig(**{**QUICK, "vocab_pad_multiple": 64, "fused_adamw": True})
    again = config_from_json(json.loads(json.dumps(config_to_json(config))))
    assert again == config


def test_bad_input_fails_at_the_call_not_inside_the_stream():
    with pytest.raises(ConfigError, match="nproc"):
        run_distributed(RunConfig(**QUICK), 0)
    with pytest.raises(ConfigError, match="strategy"):
        run_distributed(RunConfig(**QUICK), 2, strategy="zero")


# ----------------------------------------------------------------- real launches

def test_profile_nproc_2_on_cpu_gives_aggregate_and_per_rank_figures():
    cmd = [sys.executable, "-m", "tui", "profile", "--nproc", "2", "--device", "cpu", "--json", "--model", "gpt-tiny",
           "--batch-size", "2", "--seq-len", "32", "--steps", "3", "--warmup", "1", "--precision", "fp32"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=LAUNCH_LIMIT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    dist, measured = out["distributed"], out["measured"]
    assert dist["nproc"] == 2 and dist["backend"] == "gloo" and dist["strategy"] == "ddp"
    ranks = dist["per_rank"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert all(r["tokens"] == 2 * 32 * 3 and r["tokens_per_s"] > 0 and r["peak_memory_bytes"] > 0 for r in ranks)
    slowest = max(r["seconds"] for r in ranks)
    assert measured["tokens_per_s"] == pytest.approx(sum(r["tokens"] for r in ranks) / slowest)
    assert measured["tokens_per_step"] == 2 * 32 * 2
    base = dist["baseline"]
    assert base["tokens_per_s"] > 0 and base["source"].startswith("measured")
    assert dist["scaling_efficiency"] == pytest.approx(measured["tokens_per_s"] / (2 * base["tokens_per_s"]))
    params = count_params(TINY).total
    assert measured["params"] == params
    ar = dist["allreduce"]
    assert ar["grad_bytes"] == 4 * params  # fp32 gradients, tied embedding counted once
    assert ar["predicted_s"] > 0 and ar["measured_allreduce_s"] > 0
    assert ar["step_time_overhead_s"] == pytest.approx(measured["step_time_s"] - base["step_time_s"])
    assert dist["memory"]["predicted_setup"] == "dp=2, zero=0"
    assert out["prediction"]["setup"]["dp"] == 2
    assert out["errors"]["params.total"] == 0.0
    lines = describe_distributed(out)
    assert lines[0].startswith("2 ranks (DDP, gloo): ") and lines[1].startswith("  rank 0 ")
    assert lines[2].startswith("  rank 1 ") and "scaling efficiency" in lines[3]


def test_a_killed_rank_ends_the_run_in_one_line_and_leaves_no_process():
    marker = _marker("kill")
    events = list(run_distributed(RunConfig(**QUICK), 2, fault="1:1", run_id=marker, timeout_s=LAUNCH_LIMIT_S))
    last = events[-1]
    assert isinstance(last, RunFailed), last
    assert last.message.startswith("rank 1 died: killed by SIGKILL") and "\n" not in last.message
    assert not any(isinstance(e, RunFinished) for e in events)
    _no_leftovers(marker)


def test_cancel_stops_every_rank():
    marker = _marker("cancel")
    cancel = threading.Event()
    config = RunConfig(**{**QUICK, "steps": 500})
    last = None
    for event in run_distributed(config, 2, cancel=cancel, run_id=marker, baseline_tokens_per_s=1000.0,
                                 timeout_s=LAUNCH_LIMIT_S):
        if isinstance(event, StepSample):
            cancel.set()
        last = event
    assert isinstance(last, RunFinished) and last.cancelled
    _no_leftovers(marker)


def test_fsdp_reports_zero3_memory_beside_the_measured():
    marker = _marker("fsdp")
    events = list(run_distributed(RunConfig(**QUICK), 2, strategy="fsdp", run_id=marker,
                                  baseline_tokens_per_s=1000.0, timeout_s=LAUNCH_LIMIT_S))
    last = events[-1]
    assert isinstance(last, RunFinished), last
    dist = last.summary["distributed"]
    assert dist["strategy"] == "fsdp" and dist["baseline"]["source"].startswith("given")
    assert dist["memory"]["predicted_setup"] == "dp=2, zero=3"
    assert last.summary["prediction"]["setup"]["zero"] == 3
    assert dist["memory"]["predicted_per_rank_bytes"] > 0
    assert all(m > 0 for m in dist["memory"]["measured_per_rank_bytes"])
    assert "1.5 x" in dist["allreduce"]["formula"]
    assert any(isinstance(e, LogMessage) and "FSDP" in e.text for e in events)
    _no_leftovers(marker)


def test_an_aborted_rank_names_the_cpp_exception():
    stderr = [
        "terminate called after throwing an instance of 'gloo::IoException'",
        "  what():  [gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.1]:4242",
        "Root Cause (first observed failure):",
        "[0]:",
        "  rank      : 1 (local_rank: 1)",
        "  exitcode  : -6 (pid: 123)",
    ]
    message = describe_failure(stderr, 1)
    assert message.startswith("rank 1 died: killed by SIGABRT (")
    assert "Connection closed by peer" in message
