"""Run ``mfutop profile --jsonl`` on another machine through the system's ``ssh`` and stream its events.

SSH itself is never re-implemented: the user's ``ssh`` binary, ``~/.ssh/config``,
agent, ProxyJump and known hosts all apply; we only add options to its command line.

Every word of the remote command is quoted with ``shlex.quote`` and the whole is
run by the remote login shell (which must be POSIX-like: sh, bash, dash, zsh,
ksh), so hostile values arrive as literal arguments.

Ending the remote run when the connection goes (no orphans). Without a pty,
sshd sends the remote process no signal when the client disappears; it only
closes the session's pipes, and a process that is busy computing notices a
closed stdout only when it next writes. So the remote command is wrapped in a
small ``sh`` script (``WATCHDOG``): it keeps the channel's stdin on fd 3, starts
a background watchdog that blocks in ``cat`` on that stdin, then ``exec``s
mfutop (same pid, SIGINT not ignored). The local side never writes to ssh's
stdin and never closes it while the run should go on, so ``cat`` returns only
when the channel's stdin ends: the local ssh exited or was killed, the
connection dropped (sshd closes the session), or we closed ssh's stdin to
cancel. The watchdog then sends SIGINT to mfutop (Python raises
KeyboardInterrupt: a clean stop), waits up to ``REMOTE_GRACE_S``, then SIGTERM
and SIGKILL to the session's process group (sshd makes each session its own
group), which also reaps whatever mfutop started. After a normal exit the same
sequence runs against an empty group and the watchdog ends itself.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from estimator.errors import ConfigError
from profiler.event_pump import EventPump
from profiler.events import Event, JsonlWriter, LogMessage, RunFailed, RunFinished

DEFAULT_REMOTE_MFUTOP = "mfutop"
INSTALL_HINT = "pip install mfutop (or from a checkout: pip install -e .)"
REMOTE_GRACE_S = 10  # remote: seconds between SIGINT and SIGTERM once the channel's stdin ends
LOCAL_GRACE_S = REMOTE_GRACE_S + 5  # local: how long a cancel waits for ssh to end by itself
# Defaults the user's own -o options replace: give up on an unreachable host after 30 s, and on
# a link that went silent after ~1 min (ssh then exits 255 and we say the connection was lost).
DEFAULT_OPTIONS = ("ConnectTimeout=30", "ServerAliveInterval=15", "ServerAliveCountMax=4")
READER_DRAIN_S = 5.0  # after ssh exits: how long its output may still be read (a ProxyJump child can hold it)
SSH_FAILURE = 255  # ssh's own exit status for connection / authentication errors
NOT_FOUND = 127  # POSIX shells: command not found
SCRIPT_NAME = "mfutop-remote"  # $0 of the wrapper script: shows in the remote shell's error messages

# One line, so that even a csh-family login shell passes it to sh intact (hostile arguments with
# newlines still need a POSIX login shell).
WATCHDOG = (
    "exec 3<&0 </dev/null; "
    "(stop_run() { "
    "kill -INT $$ 2>/dev/null; "
    "i=0; while kill -0 $$ 2>/dev/null && [ $i -lt %d ]; do sleep 1; i=$((i+1)); done; "
    'trap "" TERM; kill -TERM 0 2>/dev/null; sleep 1; kill -KILL 0 2>/dev/null; }; '
    "cat <&3 >/dev/null 2>&1; stop_run) >/dev/null 2>&1 & "
    'exec "$@" 3<&-'
) % REMOTE_GRACE_S

_NOT_FOUND_PATTERNS = re.compile(r"command not found|: not found|No such file or directory|No module named", re.I)


@dataclass(frozen=True)
class SshOptions:
    """What is passed to the local ``ssh``; the user's own options come first so they win."""

    port: int | None = None
    identity: str | None = None
    jump: str | None = None
    config: str | None = None
    options: tuple[str, ...] = ()  # "Key=Value", as for ssh -o
    batch_mode: bool = True  # fail fast instead of prompting for a password or passphrase
    ssh_binary: str = "ssh"

    def __post_init__(self) -> None:
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ConfigError(f"port must be 1-65535, got {self.port}")
        for option in self.options:
            if not option.strip() or option.lstrip().startswith("-") or "\n" in option:
                raise ConfigError(f"ssh option must look like Key=Value, got {option!r}")
        for name in ("identity", "jump", "config"):
            value = getattr(self, name)
            if value is not None and (not value.strip() or value.startswith("-")):
                raise ConfigError(f"ssh {name} must not be empty or start with '-', got {value!r}")

    @property
    def may_prompt(self) -> bool:
        """Whether ssh may ask on the terminal (password, passphrase, host key): BatchMode off."""
        for option in self.options:
            if _option_key(option) == "batchmode":
                return option.strip()[len("batchmode"):].strip(" =\t").lower() not in ("yes", "true")
        return not self.batch_mode

    def argv(self) -> list[str]:
        """Options for ``ssh``, before the destination. ``-T``: no pty, stdout stays pure JSONL."""
        out: list[str] = []
        if self.config:
            out += ["-F", self.config]
        for option in self.options:
            out += ["-o", option]
        if self.port is not None:
            out += ["-p", str(self.port)]
        if self.identity:
            out += ["-i", self.identity]
        if self.jump:
            out += ["-J", self.jump]
        given = {_option_key(option) for option in self.options}
        for option in (f"BatchMode={'yes' if self.batch_mode else 'no'}", *DEFAULT_OPTIONS):
            if _option_key(option) not in given:
                out += ["-o", option]
        return out + ["-T"]


def _option_key(option: str) -> str:
    """``"BatchMode=no"`` / ``"BatchMode no"`` -> ``"batchmode"`` (ssh keywords are case-insensitive)."""
    return re.split(r"[\s=]", option.strip(), maxsplit=1)[0].lower()


_DESTINATION = re.compile(r"(ssh://)?([A-Za-z0-9._%+-]+@)?([A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


def check_destination(destination: str) -> str:
    """``[user@]host`` or ``ssh://[user@]host[:port]``; never an option in disguise, and no shell
    metacharacters (a current OpenSSH refuses them, an older one would let a shell expand them)."""
    if not destination or destination.startswith("-") or not _DESTINATION.fullmatch(destination):
        raise ConfigError(f"not an ssh destination: {destination!r} (expected user@host, letters, digits, '.-_')")
    return destination


def remote_program(remote_mfutop: str) -> list[str]:
    """The remote command prefix ("mfutop", "/opt/venv/bin/mfutop", "python3 -m tui") as words."""
    try:
        words = shlex.split(remote_mfutop)
    except ValueError as exc:
        raise ConfigError(f"cannot parse --remote-mfutop {remote_mfutop!r}: {exc}") from None
    if not words:
        raise ConfigError("--remote-mfutop must not be empty")
    return words


def remote_profile_argv(remote_mfutop: str, profile_args: Sequence[str]) -> list[str]:
    """``<remote_mfutop words> profile --jsonl <profile_args>``: what the remote shell finally runs."""
    return [*remote_program(remote_mfutop), "profile", "--jsonl", *profile_args]


def remote_shell_command(argv: Sequence[str]) -> str:
    """The string ssh hands to the remote login shell: the watchdog wrapper around ``argv``."""
    return shlex.join(["sh", "-c", WATCHDOG, SCRIPT_NAME, *argv])


def ssh_command(destination: str, remote_argv: Sequence[str], ssh: SshOptions) -> list[str]:
    """The full local argv: ``ssh [options] -- destination 'sh -c ... mfutop profile --jsonl ...'``."""
    return [ssh.ssh_binary, *ssh.argv(), "--", check_destination(destination), remote_shell_command(remote_argv)]


def host_of(destination: str) -> str:
    """``user@gpu1`` -> ``gpu1``, for messages."""
    host = destination.removeprefix("ssh://").rsplit("@", 1)[-1]
    return host.split(":", 1)[0] if host.count(":") == 1 else host


class RemoteRun:
    """One ssh subprocess running the remote profile, read as an event stream.

    ``start()`` launches ssh (a password prompt, if BatchMode is off, still has
    the terminal); ``wait_started()`` blocks until the first stdout line or the
    end of ssh, so a CLI can report early failures before opening the app;
    ``events(cancel)`` yields the remote events, then at most one verdict of our
    own (mfutop missing, ssh failed, connection lost) when the remote sent none.
    """

    def __init__(
        self,
        destination: str,
        remote_argv: Sequence[str],
        ssh: SshOptions | None = None,
        record_path: Path | None = None,
    ):
        ssh = ssh or SshOptions()
        self.remote_argv = list(remote_argv)
        self.command = ssh_command(destination, self.remote_argv, ssh)
        # In BatchMode ssh never reads the terminal, so it gets its own session: a Ctrl-C in the
        # terminal reaches only us, and we stop the remote run gracefully (its summary still arrives).
        # When ssh may prompt it must stay on the terminal (then Ctrl-C ends it, and the watchdog the run).
        self.detach = not ssh.may_prompt
        self.host = host_of(destination)
        self.record_path = record_path
        self.remote_events = 0
        self.cancelled = False
        self._proc: subprocess.Popen[str] | None = None
        self._pump: EventPump | None = None
        self._stop_lock = threading.Lock()

    # -- process ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._proc is not None:
            return
        try:
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.PIPE,  # kept open: closing it is how the remote run is told to stop
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                start_new_session=self.detach,
            )
        except FileNotFoundError:
            raise ConfigError(f"{self.command[0]!r} not found: install an OpenSSH client (apt install openssh-client)") from None
        self._pump = EventPump(self._proc, drain_s=READER_DRAIN_S)

    @property
    def returncode(self) -> int | None:
        return self._pump.returncode if self._pump else None

    @property
    def stderr_tail(self) -> Sequence[str]:
        return self._pump.stderr_tail if self._pump else ()

    def wait_started(self, timeout: float | None = None) -> bool:
        """True once the remote wrote its first line or ssh ended (then ``returncode`` is set)."""
        return self._pump.first_output.wait(timeout) if self._pump else False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace_s: float = LOCAL_GRACE_S) -> None:
        """End the run: close ssh's stdin (the remote watchdog stops mfutop), then end ssh itself.

        Closing stdin lets the remote send its last events (mfutop answers SIGINT
        with RunFinished(cancelled=True)); terminating ssh drops the connection,
        which the watchdog also sees. Either way the remote run ends. Safe to
        call from several threads (a second, impatient call with ``grace_s=0``).
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self.cancelled = True
        with self._stop_lock:
            try:
                if proc.stdin is not None and not proc.stdin.closed:
                    proc.stdin.close()
            except OSError:
                pass
        for action, wait_s in ((None, grace_s), (proc.terminate, 5.0), (proc.kill, 5.0)):
            if action is not None and proc.poll() is None:
                action()
            try:
                proc.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    # -- events ----------------------------------------------------------------------------
    def events(self, cancel: threading.Event | None = None) -> Iterator[Event]:
        """The event stream for the app (``source(cancel)``); recorded to ``record_path`` as it goes."""
        record = open(self.record_path, "w", encoding="utf-8") if self.record_path else None
        writer = JsonlWriter(record) if record else None
        try:
            self.start()
        except BaseException:
            if record:
                record.close()
            raise
        cancel = cancel or threading.Event()
        finished = threading.Event()
        watcher = threading.Thread(target=self._watch_cancel, args=(cancel, finished), name="remote-cancel", daemon=True)
        watcher.start()
        verdict_seen = False
        try:
            yield self._emit(writer, LogMessage("info", f"ssh {self.host}: {shlex.join(self.remote_argv)}"))
            while True:
                kind, payload = self._pump.get()
                if kind == "end":
                    break
                if kind == "stderr":
                    if not self.cancelled:  # after a cancel: the stopped process's traceback, noise
                        yield self._emit(writer, LogMessage("warning", f"{self.host}: {payload}"))
                    continue
                self.remote_events += 1
                verdict_seen = verdict_seen or isinstance(payload, (RunFinished, RunFailed))
                yield self._emit(writer, payload)  # type: ignore[arg-type]
            if not verdict_seen:
                for event in self._verdict():
                    yield self._emit(writer, event)
        finally:
            finished.set()
            self.stop()  # a consumer that walked away mid-run ends the remote run too
            if record:
                record.close()

    @staticmethod
    def _emit(writer: JsonlWriter | None, event: Event) -> Event:
        if writer:
            writer.write(event)
        return event

    def _watch_cancel(self, cancel: threading.Event, finished: threading.Event) -> None:
        while not finished.is_set() and self._proc is not None and self._proc.poll() is None:
            if cancel.wait(0.2):
                if self._proc.poll() is None:
                    self.stop()
                return

    def _verdict(self) -> list[Event]:
        """Our own last word when the remote sent no RunFinished / RunFailed."""
        rc = self.returncode
        detail = self.stderr_tail[-1] if self.stderr_tail else ""
        said = f": {detail}" if detail else ""
        if self.cancelled:
            return [LogMessage("info", f"cancelled: the run on {self.host} was stopped")]
        if rc == NOT_FOUND or (self.remote_events == 0 and rc not in (0, SSH_FAILURE) and _NOT_FOUND_PATTERNS.search(detail)):
            return [RunFailed(f"mfutop not found on {self.host}{said}; install it there: {INSTALL_HINT}, "
                              "or point --remote-mfutop at it", "RemoteMfutopNotFound")]
        if rc == SSH_FAILURE and self.remote_events == 0:
            return [RunFailed(f"ssh to {self.host} failed{said}{_ssh_hint(detail)}", "SshFailed")]
        if rc is not None and rc > 0 and rc != SSH_FAILURE:  # ssh got the remote's exit status: mfutop stopped
            error_type = "ConfigError" if rc == 2 else "RemoteError"
            remote_said = f": {detail.removeprefix('mfutop: error: ')}" if detail else ""
            return [RunFailed(f"mfutop on {self.host} (exit {rc}){remote_said}", error_type)]
        if rc == SSH_FAILURE:
            why = "the connection dropped or the remote process was killed"
        elif rc is not None and rc < 0:
            why = f"ssh was killed by signal {-rc}"
        else:
            why = "the stream ended without a result"
        kept = f"; kept the {self.remote_events} events received" if self.remote_events else ""
        return [
            LogMessage("error", f"connection to {self.host} lost (ssh exit {rc}: {why}){said}"),
            RunFailed(f"connection to {self.host} lost before the run finished (ssh exit {rc}: {why}){kept}", "ConnectionLost"),
        ]


def _ssh_hint(detail: str) -> str:
    """What to do about the usual BatchMode failures."""
    if "Host key verification failed" in detail:
        return " (connect once with plain ssh to check and accept the host key)"
    if "Permission denied" in detail:
        return " (load your key with ssh-add or give --identity; --no-batch-mode allows a password prompt)"
    return ""


def remote_source(
    destination: str,
    profile_args: Sequence[str],
    ssh: SshOptions | None = None,
    remote_mfutop: str = DEFAULT_REMOTE_MFUTOP,
    record_path: Path | None = None,
) -> Callable[[threading.Event], Iterator[Event]]:
    """An app event source: each call runs ``<remote_mfutop> profile --jsonl <profile_args>`` on the host."""
    argv = remote_profile_argv(remote_mfutop, profile_args)
    ssh_command(destination, argv, ssh or SshOptions())  # bad input fails here, not in the app's worker

    def start(cancel: threading.Event) -> Iterator[Event]:
        return RemoteRun(destination, argv, ssh, record_path).events(cancel)

    start.label = f"remote · {host_of(destination)}"  # type: ignore[attr-defined]  # the app's subtitle
    return start
