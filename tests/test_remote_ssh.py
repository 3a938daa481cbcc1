"""`mfutop remote` against a real OpenSSH server on 127.0.0.1 running this checkout's `mfutop profile`.

The sshd is started by ``sshd_fixture`` (skipped only when OpenSSH is not
installed). The "remote" mfutop is this venv's interpreter by absolute path
(``python -m tui``), because sshd's login environment has no venv on PATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil

from profiler.events import RunFailed, RunFinished, StepSample, read_events
from sshd_fixture import remote_mfutop_prefix, sshd  # noqa: F401  (sshd: the fixture)
from tui.remote import INSTALL_HINT, RemoteRun, remote_profile_argv, remote_source

TINY_RUN = ["--device", "cpu", "--model", "gpt-tiny", "--steps", "3", "--batch-size", "2"]
ORPHAN_GRACE_S = 40.0  # watchdog: SIGINT, up to 10 s, SIGTERM, 1 s, SIGKILL; generous for a loaded CI box
CLI_TIMEOUT_S = 300


def mfutop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui", *args], capture_output=True, text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL
    )


def processes_with(marker: str) -> list[psutil.Process]:
    """Live processes (ours or sshd's children) whose command line mentions ``marker``."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["pid"] == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in arg for arg in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def wait_gone(marker: str, timeout: float = ORPHAN_GRACE_S) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    left = processes_with(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = processes_with(marker)
    return left


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for proc in procs:
        try:
            out.append(f"{proc.pid}: {' '.join(proc.cmdline())[:200]}")
        except psutil.Error:
            pass
    return out


def test_remote_cpu_run_matches_the_local_profile(sshd, tmp_path):
    out = tmp_path / "remote-run.jsonl"
    remote = mfutop("remote", sshd.destination, *sshd.cli_args(), "--remote-mfutop", remote_mfutop_prefix(),
                    *TINY_RUN, "--json", "--out", str(out))
    assert remote.returncode == 0, remote.stderr
    local = mfutop("profile", *TINY_RUN, "--json")
    assert local.returncode == 0, local.stderr
    remote_summary, local_summary = json.loads(remote.stdout), json.loads(local.stdout)

    assert remote_summary.keys() == local_summary.keys()
    for key, value in local_summary.items():
        if isinstance(value, dict):
            assert remote_summary[key].keys() == value.keys(), key
    for key in ("params", "flops_analytic", "batch_size"):
        assert remote_summary["measured"][key] == local_summary["measured"][key], key
    assert remote_summary["measured"]["params"] > 0 and remote_summary["measured"]["batch_size"] == 2

    recorded = list(read_events(out.read_text().splitlines()))  # what `mfutop replay` reads
    assert isinstance(recorded[-1], RunFinished)
    assert {**recorded[-1].summary, "cancelled": False, "schema_version": 1} == remote_summary
    assert sum(isinstance(e, StepSample) and not e.warmup for e in recorded) >= 3


def test_hostile_model_name_arrives_as_one_literal_argument(sshd, tmp_path):
    pwned = Path("/tmp") / f"mfutop-pwned-{uuid.uuid4().hex}"
    hostile = f"gpt-tiny; touch {pwned} $(touch {pwned}) `touch {pwned}` 'q\""
    result = mfutop("remote", sshd.destination, *sshd.cli_args(), "--remote-mfutop", remote_mfutop_prefix(),
                    "--device", "cpu", "--steps", "1", "--batch-size", "1", "--model", hostile, "--json")
    assert result.returncode == 2, result.stderr
    assert "unknown model" in result.stderr
    assert f"unknown model {hostile!r}" in result.stderr  # the literal text, quotes and all
    assert len(result.stderr.strip().splitlines()) == 1
    assert not pwned.exists()


def test_missing_remote_mfutop_prints_the_install_command(sshd, tmp_path):
    result = mfutop("remote", sshd.destination, *sshd.cli_args(), "--remote-mfutop", str(tmp_path / "nowhere" / "mfutop"),
                    "--json")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "mfutop not found on 127.0.0.1" in result.stderr and INSTALL_HINT in result.stderr


def test_unauthorised_key_fails_fast_in_batch_mode(sshd, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    args = sshd.cli_args()
    args[args.index("--identity") + 1] = str(stranger)
    result = mfutop("remote", sshd.destination, *args, "--json")
    assert result.returncode == 2
    assert "ssh to 127.0.0.1 failed" in result.stderr and "Permission denied" in result.stderr


def long_run(sshd, marker: str, directory: Path) -> RemoteRun:
    """A remote CPU run that would take minutes; ``marker`` is on its command line (its --out file)."""
    args = ["--device", "cpu", "--model", "gpt-tiny", "--batch-size", "2", "--steps", "100000",
            "--out", str(directory / f"remote-{marker}.jsonl")]
    return RemoteRun(sshd.destination, remote_profile_argv(remote_mfutop_prefix(), args), sshd.ssh_options())


def run_until_steps(run: RemoteRun, cancel: threading.Event, on_step) -> list:
    received = []
    for event in run.events(cancel):
        received.append(event)
        if isinstance(event, StepSample) and len([e for e in received if isinstance(e, StepSample)]) == 2:
            on_step()
    return received


def test_killed_ssh_client_ends_the_remote_run(sshd, tmp_path):
    marker = uuid.uuid4().hex
    run = long_run(sshd, marker, tmp_path)

    def drop_connection():
        assert any("profile" in " ".join(p.cmdline()) for p in processes_with(marker) if p.pid != run._proc.pid)
        run._proc.kill()  # like a laptop lid closing: no goodbye to the remote side

    received = run_until_steps(run, threading.Event(), drop_connection)
    assert isinstance(received[-1], RunFailed) and received[-1].error_type == "ConnectionLost"
    assert "connection to 127.0.0.1 lost" in received[-1].message
    assert sum(isinstance(e, StepSample) for e in received) >= 2  # kept what arrived
    left = wait_gone(marker)
    assert not left, describe(left)


def test_killed_sshd_session_ends_the_remote_run(sshd, tmp_path):
    """The server side drops the connection (sshd's per-connection process dies)."""
    marker = uuid.uuid4().hex
    run = long_run(sshd, marker, tmp_path)

    def kill_session():
        remote = [p for p in processes_with(marker) if p.pid != run._proc.pid]
        sessions = {p.parent() for p in remote} - {None}
        sshd_children = [p for p in sessions if p.name().startswith("sshd")]
        assert sshd_children, describe(remote)
        for session in sshd_children:
            session.kill()

    received = run_until_steps(run, threading.Event(), kill_session)
    assert isinstance(received[-1], RunFailed) and received[-1].error_type == "ConnectionLost"
    left = wait_gone(marker)
    assert not left, describe(left)


def test_cancel_stops_the_remote_run_and_keeps_the_events(sshd, tmp_path):
    marker = uuid.uuid4().hex
    run = long_run(sshd, marker, tmp_path)
    cancel = threading.Event()

    def cancel_run():
        assert any("profile" in " ".join(p.cmdline()) for p in processes_with(marker) if p.pid != run._proc.pid)
        cancel.set()

    received = run_until_steps(run, cancel, cancel_run)
    assert sum(isinstance(e, StepSample) for e in received) >= 2
    last = received[-1]
    # closing ssh's stdin -> the watchdog's SIGINT -> `mfutop profile` stops between steps and
    # still sends the summary of what it measured
    assert isinstance(last, RunFinished) and last.cancelled, received[-3:]
    assert last.summary["measured"]["params"] > 0
    assert not run.running
    left = wait_gone(marker)
    assert not left, describe(left)


def test_app_shows_the_remote_run_live(sshd, tmp_path):
    """The app contract end to end: `MfutopApp(source=remote_source(...))` over the real sshd."""
    import asyncio

    from tui.app import MfutopApp

    source = remote_source(sshd.destination, TINY_RUN, sshd.ssh_options(), remote_mfutop_prefix())
    out = tmp_path / "app-run.jsonl"

    async def scenario():
        app = MfutopApp(source=source, out_path=out, title="mfutop remote test")
        async with app.run_test() as pilot:
            finished = await app.wait_for_run(CLI_TIMEOUT_S)
            await pilot.pause()
            return app.state, finished

    state, finished = asyncio.run(scenario())
    assert finished and state.status == "finished", state.logs
    assert state.device is not None and state.device.device == "cpu"
    assert len(state.timed_samples) >= 3
    assert state.measured()["params"] == state.summary["measured"]["params"] > 0
    recorded = list(read_events(out.read_text().splitlines()))
    assert isinstance(recorded[-1], RunFinished) and recorded[-1].summary == state.summary
