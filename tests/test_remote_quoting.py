"""`mfutop remote` without a network: the ssh command line, quoting, verdicts and cancel.

A fake ``ssh`` records its argv and runs the remote command the way sshd does
(a new session, the command string handed to ``sh -c``), so the quoting is
checked end to end by a real POSIX shell. The fake "remote mfutop" records the
argv it received and prints events.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from estimator.errors import ConfigError
from profiler.events import LogMessage, RunFailed, RunFinished, StepSample, read_events
from tui.cli import app
from tui.remote import (
    INSTALL_HINT,
    SCRIPT_NAME,
    WATCHDOG,
    RemoteRun,
    SshOptions,
    remote_profile_argv,
    remote_shell_command,
    remote_source,
    ssh_command,
)

FAKE_SSH = """\
#!{python}
# Records argv, then does what sshd does with the command: new session, login shell -c.
import json, os, sys
with open(os.environ["FAKE_SSH_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
destination, command = args[args.index("--") + 1:]
if os.getsid(0) != os.getpid():  # mfutop already starts ssh in its own session (BatchMode)
    os.setsid()
os.execvp("sh", ["sh", "-c", command])
"""

FAKE_MFUTOP = """\
#!{python}
# A stand-in for `mfutop`: reports the argv it got, then behaves as FAKE_MODE says.
import json, os, sys, time
argv = sys.argv[1:]
def emit(obj):
    print(json.dumps(obj), flush=True)
mode = os.environ.get("FAKE_MODE", "ok")
print("Welcome to the fake host (a banner, not JSON)", flush=True)
try:  # from the first line on, SIGINT (the watchdog's polite stop) ends in RunFinished(cancelled)
    emit({{"event": "log", "level": "info", "text": "fake started"}})
    if mode == "ok":
        emit({{"event": "run_finished", "summary": {{"argv": argv}}, "cancelled": False}})
    elif mode == "drop":
        emit({{"event": "step_sample", "step": 1, "batch_size": 2, "step_time_s": 0.1, "tokens_per_s": 10.0,
              "loss": 5.0, "memory_allocated_bytes": 1, "memory_reserved_bytes": 1, "memory_peak_bytes": 1,
              "nvml_used_bytes": None, "mfu": None}})
        sys.exit(255)  # what the local ssh reports when the connection goes
    elif mode == "usage":
        print("mfutop: error: unknown model 'x'", file=sys.stderr)
        sys.exit(2)
    elif mode == "slow":
        while True:
            time.sleep(0.05)
except KeyboardInterrupt:
    emit({{"event": "run_finished", "summary": {{"argv": argv}}, "cancelled": True}})
"""

HOSTILE = [
    "gpt-tiny; touch {pwned} $(touch {pwned})",
    "`touch {pwned}`",
    "it's \"quoted\" \\back\\slash",
    "two\nlines && touch {pwned}",
    "$HOME ${{PATH}} * ?",
    "|&<>(){{}}#!~",
    "",
    "  padded  ",
    "--looks-like-an-option",
]


@pytest.fixture()
def fakes(tmp_path, monkeypatch):
    """Paths of the fake ssh and the fake remote mfutop, and where the fake ssh logs."""
    ssh = tmp_path / "fake-ssh"
    ssh.write_text(FAKE_SSH.format(python=sys.executable))
    ssh.chmod(0o755)
    program_dir = tmp_path / "dir with 'odd' name"
    program_dir.mkdir()
    program = program_dir / "fake mfutop"
    program.write_text(FAKE_MFUTOP.format(python=sys.executable))
    program.chmod(0o755)
    log = tmp_path / "ssh-argv.jsonl"
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    monkeypatch.setenv("FAKE_MODE", "ok")
    return ssh, program, log


def hostile_values(tmp_path: Path) -> tuple[list[str], Path]:
    pwned = tmp_path / f"pwned-{uuid.uuid4().hex}"
    return [value.format(pwned=pwned) for value in HOSTILE], pwned


# -- the command line ------------------------------------------------------------------------


def test_ssh_argv_passes_the_users_options_and_defaults_to_batch_mode():
    ssh = SshOptions(port=2222, identity="/keys/id", jump="me@bastion", config="/etc/cfg", options=("Compression=yes",))
    argv = ssh_command("me@gpu1", ["mfutop", "profile", "--jsonl"], ssh)
    assert argv[:13] == [
        "ssh", "-F", "/etc/cfg", "-o", "Compression=yes", "-p", "2222", "-i", "/keys/id", "-J", "me@bastion",
        "-o", "BatchMode=yes",
    ]
    assert argv[-4:-2] == ["-T", "--"]
    assert argv[-2] == "me@gpu1"
    assert shlex.split(argv[-1]) == ["sh", "-c", WATCHDOG, SCRIPT_NAME, "mfutop", "profile", "--jsonl"]


def test_users_own_batch_mode_and_keepalive_replace_the_defaults():
    argv = SshOptions(options=("BatchMode=no", "ServerAliveInterval 5"), batch_mode=True).argv()
    assert [a for a in argv if a.lower().startswith("batchmode")] == ["BatchMode=no"]
    assert [a for a in argv if a.lower().startswith("serveraliveinterval")] == ["ServerAliveInterval 5"]
    assert "BatchMode=no" in SshOptions(batch_mode=False).argv()
    assert {"ConnectTimeout=30", "ServerAliveInterval=15", "ServerAliveCountMax=4"} <= set(SshOptions().argv())


def test_ssh_is_detached_from_the_terminal_only_when_it_cannot_prompt():
    assert not SshOptions().may_prompt
    assert SshOptions(batch_mode=False).may_prompt
    assert SshOptions(options=("batchmode no",)).may_prompt
    assert not SshOptions(batch_mode=False, options=("BatchMode=yes",)).may_prompt
    assert RemoteRun("gpu1", ["mfutop"]).detach and not RemoteRun("gpu1", ["mfutop"], SshOptions(batch_mode=False)).detach


@pytest.mark.parametrize("destination", ["-oProxyCommand=touch /tmp/x", "", "host name", "a\nb", "gpu1;touch x",
                                         "$(touch x)@gpu1", "gpu1`id`", "me@gpu|cat"])
def test_destination_that_is_not_a_host_is_refused(destination):  # shell metacharacters included
    with pytest.raises(ConfigError):
        ssh_command(destination, ["mfutop"], SshOptions())


@pytest.mark.parametrize(
    "options",
    [dict(port=0), dict(port=70000), dict(options=("-oProxyCommand=x",)), dict(options=("",)), dict(identity="-x")],
)
def test_bad_ssh_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        SshOptions(**options)


def test_remote_prefix_is_split_and_every_word_quoted():
    argv = remote_profile_argv("'/opt/my venv/bin/python3' -m tui", ["--model", "a b"])
    assert argv == ["/opt/my venv/bin/python3", "-m", "tui", "profile", "--jsonl", "--model", "a b"]
    assert shlex.split(remote_shell_command(argv))[4:] == argv
    for bad in ("", "   ", "'unclosed"):
        with pytest.raises(ConfigError):
            remote_profile_argv(bad, [])


def test_quoted_command_round_trips_hostile_values(tmp_path):
    values, _ = hostile_values(tmp_path)
    assert shlex.split(remote_shell_command(values))[4:] == values


# -- through a real shell ----------------------------------------------------------------------


def test_hostile_arguments_arrive_literally_through_the_shell(fakes, tmp_path):
    ssh, program, log = fakes
    values, pwned = hostile_values(tmp_path)
    source = remote_source(
        "user@host", values, SshOptions(ssh_binary=str(ssh)), remote_mfutop=shlex.quote(str(program)) + " --pre 'x y'"
    )
    events = list(source(threading.Event()))
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert len(finished) == 1
    assert finished[0].summary["argv"] == ["--pre", "x y", "profile", "--jsonl", *values]
    assert not pwned.exists()
    assert json.loads(log.read_text().splitlines()[0])[-2] == "user@host"


def test_cli_forwards_profile_options_and_extra_args_literally(fakes, tmp_path):
    """The run options travel as RunConfig.to_argv writes them; unknown options pass through literally."""
    ssh, program, _ = fakes
    values, pwned = hostile_values(tmp_path)
    out = tmp_path / "run.jsonl"
    result = CliRunner().invoke(app, [
        "remote", "me@gpu1", "--ssh", str(ssh), "--remote-mfutop", shlex.quote(str(program)),
        "--model", "gpt-tiny", "--device", "cpu", "--batch-size", "2", "--seq-len", "64", "--steps", "3",
        "--precision", "fp32", "--no-compile", "--flash", "--memory-limit", "1GiB", "--peak-tflops", "1.5",
        "--nproc", "2", "--out", str(out), "--json", "--future-option", values[3], values[0],
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary.pop("cancelled") is False  # like `mfutop profile --json`
    assert summary.pop("schema_version") == 1
    assert summary["argv"] == [
        "profile", "--jsonl", "--model", "gpt-tiny", "--device", "cpu", "--batch-size", "2", "--seq-len", "64",
        "--steps", "3", "--precision", "fp32", "--memory-limit", f"{2**30}B", "--peak-tflops", "1.5",
        "--nproc", "2", "--future-option", values[3], values[0],
    ]
    assert not pwned.exists()
    recorded = list(read_events(out.read_text().splitlines()))
    assert isinstance(recorded[-1], RunFinished) and recorded[-1].summary == summary
    assert any(isinstance(e, LogMessage) and e.text == "fake started" for e in recorded)


def test_cli_refuses_a_hostile_model_name_before_connecting(fakes, tmp_path):
    ssh, program, log = fakes
    values, pwned = hostile_values(tmp_path)
    result = CliRunner().invoke(app, ["remote", "me@gpu1", "--ssh", str(ssh), "--remote-mfutop",
                                      shlex.quote(str(program)), "--model", values[0], "--json"])
    assert result.exit_code == 2 and "unknown model" in result.stderr
    assert not log.exists() and not pwned.exists()


@pytest.mark.parametrize(
    "args",
    [["--batch-size", "lots"], ["--memory-limit", "much"], ["--port", "0"], ["-o", "-oX"], ["--out", "/no/such/dir/r.jsonl"],
     ["--remote-mfutop", "'unclosed"]],
)
def test_cli_bad_local_syntax_exits_2_before_connecting(fakes, args):
    ssh, program, log = fakes
    result = CliRunner().invoke(app, ["remote", "me@gpu1", "--ssh", str(ssh), "--json", *args])
    assert result.exit_code == 2
    assert not log.exists()


# -- verdicts ------------------------------------------------------------------------------------


def test_missing_remote_mfutop_says_how_to_install_and_exits_2(fakes, tmp_path):
    ssh, _, _ = fakes
    result = CliRunner().invoke(
        app, ["remote", "me@gpu1", "--ssh", str(ssh), "--remote-mfutop", str(tmp_path / "no-such-mfutop"), "--json"]
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "mfutop not found on gpu1" in lines[0] and INSTALL_HINT in lines[0]
    assert "no-such-mfutop" in lines[0]


def test_remote_usage_error_exits_2_with_the_remote_message(fakes, monkeypatch):
    ssh, program, _ = fakes
    monkeypatch.setenv("FAKE_MODE", "usage")
    result = CliRunner().invoke(app, ["remote", "gpu1", "--ssh", str(ssh), "--remote-mfutop", shlex.quote(str(program)), "--json"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["mfutop: error: mfutop on gpu1 (exit 2): unknown model 'x'"]


def test_dropped_connection_keeps_what_arrived_and_says_so(fakes, tmp_path, monkeypatch):
    ssh, program, _ = fakes
    monkeypatch.setenv("FAKE_MODE", "drop")
    out = tmp_path / "run.jsonl"
    run = RemoteRun("me@gpu1", [str(program)], SshOptions(ssh_binary=str(ssh)), record_path=out)
    events = list(run.events())
    assert isinstance(events[-1], RunFailed) and events[-1].error_type == "ConnectionLost"
    assert "connection to gpu1 lost" in events[-1].message
    assert any(isinstance(e, StepSample) for e in events)
    assert [e.to_dict() for e in read_events(out.read_text().splitlines())] == [e.to_dict() for e in events]

    result = CliRunner().invoke(app, ["remote", "gpu1", "--ssh", str(ssh), "--remote-mfutop", shlex.quote(str(program)), "--json"])
    assert result.exit_code == 1
    assert "connection to gpu1 lost" in result.stderr


def test_ssh_that_cannot_connect_is_one_line_exit_2(tmp_path):
    ssh = tmp_path / "failing-ssh"
    ssh.write_text("#!/bin/sh\necho 'ssh: connect to host gpu1 port 22: Connection refused' >&2\nexit 255\n")
    ssh.chmod(0o755)
    result = CliRunner().invoke(app, ["remote", "gpu1", "--ssh", str(ssh), "--json"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "mfutop: error: ssh to gpu1 failed: ssh: connect to host gpu1 port 22: Connection refused"
    ]


def test_missing_ssh_client_is_a_config_error(tmp_path):
    result = CliRunner().invoke(app, ["remote", "gpu1", "--ssh", str(tmp_path / "no-ssh"), "--json"])
    assert result.exit_code == 2
    assert "OpenSSH client" in result.stderr


def test_cancel_closes_stdin_and_the_remote_stops_politely(fakes, monkeypatch):
    """Closing ssh's stdin is the stop signal: the wrapper's watchdog sends SIGINT to mfutop."""
    ssh, program, _ = fakes
    monkeypatch.setenv("FAKE_MODE", "slow")
    cancel = threading.Event()
    run = RemoteRun("gpu1", [str(program), "marker"], SshOptions(ssh_binary=str(ssh)))
    received = []
    for event in run.events(cancel):
        received.append(event)
        if isinstance(event, LogMessage) and event.text == "fake started":
            cancel.set()
    assert isinstance(received[-1], RunFinished) and received[-1].cancelled, (received, list(run.stderr_tail), run.returncode)
    assert received[-1].summary["argv"] == ["marker"]
    assert not run.running and run.returncode == 0


# -- the app contract ------------------------------------------------------------------------------


def test_app_renders_a_remote_run_and_cancel_stops_it(fakes, monkeypatch):
    """`MfutopApp(source=remote_source(...))`: events reach the app's state; `c` ends the remote run."""
    import asyncio

    from tui.app import MfutopApp

    ssh, program, _ = fakes
    monkeypatch.setenv("FAKE_MODE", "slow")
    source = remote_source("me@gpu1", ["--steps", "3"], SshOptions(ssh_binary=str(ssh)), shlex.quote(str(program)))
    assert source.label == "remote · gpu1"  # what the app may show as the source

    async def scenario():
        app = MfutopApp(source=source, title="mfutop remote gpu1")
        async with app.run_test() as pilot:
            for _ in range(400):
                if ("info", "fake started") in app.state.logs:
                    break
                await pilot.pause(0.05)
            await pilot.press("c")
            stopped = await app.wait_for_run(30)
            return app.state, stopped

    state, stopped = asyncio.run(scenario())
    assert stopped
    assert state.status == "cancelled"
    assert state.summary == {"argv": ["profile", "--jsonl", "--steps", "3"]}


@pytest.mark.parametrize("destination", ["gpu1", "me@gpu-1.example.org", "ssh://me@gpu1:2222", "me@[::1]", "a_b"])
def test_ordinary_destinations_are_accepted(destination):
    from tui.remote import check_destination

    assert check_destination(destination) == destination
