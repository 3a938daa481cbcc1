"""Is the machine busy? CPU timings mean little while other work shares the cores.

torch runs one thread per core; when another process holds a core, the threads
wait on each other at every op and a step can take four to ten times longer. A
run cannot prevent that, but it can say so next to the figures it reports.

What is measured is the CPU time *others* used while the run measured: the
machine's busy ticks (``/proc/stat``: every state but idle and iowait, the
hypervisor's steal included) less this process's and its parent's (the app
that started the run, whose redraws are kept to a few percent of a core). The
load average is the fallback where ``/proc`` is missing: it lags a minute
behind, counts tasks waiting on I/O that use no CPU, and so flags a machine
that has just gone idle, or one that never was busy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BUSY_LOAD_PER_CORE = 0.5  # fallback: 1-minute load average per core above which timings are flagged
BUSY_OTHERS_SHARE = 0.10  # others' share of all cores' time over which timings are flagged
MIN_WINDOW_TICKS = 20  # all cores' ticks (USER_HZ) a window needs before its share means anything
ADVICE = "CPU step times, tokens/s and MFU will read low; profile an idle machine or set OMP_NUM_THREADS"


@dataclass(frozen=True)
class CpuTicks:
    """Cumulative clock ticks (USER_HZ) at one instant: all cores', their idle part, and ours."""

    total: int
    idle: int
    own: int  # this process (every thread) and its parent


def _machine_ticks(stat: str) -> tuple[int, int]:
    """(total, idle + iowait) from ``/proc/stat``'s first line; guest time is already inside user/nice."""
    fields = [int(v) for v in stat.splitlines()[0].split()[1:]]
    if len(fields) < 4:
        raise ValueError("short cpu line")
    counted = fields[:8]  # user nice system idle iowait irq softirq steal
    return sum(counted), sum(counted[3:5])


def _process_ticks(stat: str) -> int:
    """utime + stime of one process (all its threads) from ``/proc/<pid>/stat``."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def read_ticks(proc: Path = Path("/proc"), pid: int | None = None, parent: int | None = None) -> CpuTicks | None:
    """Now's ticks, or None where ``/proc`` cannot tell (not Linux, a locked-down container)."""
    pid = os.getpid() if pid is None else pid
    parent = os.getppid() if parent is None else parent
    try:
        total, idle = _machine_ticks((proc / "stat").read_text())
        own = _process_ticks((proc / str(pid) / "stat").read_text())
        try:
            own += _process_ticks((proc / str(parent) / "stat").read_text()) if parent > 1 else 0
        except OSError:  # the parent is gone or hidden: only this process is ours
            pass
    except (OSError, ValueError, IndexError):
        return None
    return CpuTicks(total, idle, own)


def others_share(before: CpuTicks, after: CpuTicks) -> float | None:
    """The share of all cores' time that other processes (and steal) used between two readings; None
    for a window too short to tell."""
    total = after.total - before.total
    if total < MIN_WINDOW_TICKS:
        return None
    others = (total - (after.idle - before.idle)) - (after.own - before.own)
    return min(1.0, max(0.0, others / total))


def busy_machine_warning(device_kind: str, load: tuple[float, float, float] | None = None,
                         cores: int | None = None, share: float | None = None) -> str | None:
    """One warning line when other work competed for the CPU, else None.

    ``share`` is others' measured share of the cores over the window that matters (``others_share``);
    without it the 1-minute load average decides.
    """
    if device_kind != "cpu":
        return None  # GPU steps are timed on the device; host load matters far less there
    cores = cores or os.cpu_count() or 1
    if share is not None:
        if share <= BUSY_OTHERS_SHARE:
            return None
        return (f"the machine is busy (other processes used {share:.0%} of the {cores} cores' time "
                f"while this run measured): {ADVICE}")
    try:
        load = load if load is not None else os.getloadavg()
    except OSError:  # not available on this platform
        return None
    if load[0] <= BUSY_LOAD_PER_CORE * cores:
        return None
    return f"the machine is busy (1-min load average {load[0]:.2f} on {cores} cores): {ADVICE}"


def load_average_1min() -> float | None:
    """The 1-minute load average (two decimals), recorded beside a measurement; None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class Contention:
    """Whether other work competed with one measurement (a device profile, a peak), and what said so."""

    busy: bool
    others_share: float | None  # others' share of all cores' time over the measurement; None: /proc can't tell
    load_average: float | None  # 1-minute, at its end: the fallback signal, recorded either way

    def reason(self) -> str:
        cores = os.cpu_count() or 1
        if self.others_share is not None:
            return f"other processes used {self.others_share:.0%} of the {cores} CPUs' time while it measured"
        return f"load average {self.load_average} on {cores} CPUs"


def contention_since(start: CpuTicks | None, read=read_ticks) -> Contention:
    """Others' CPU use from ``start`` (``read_ticks()`` as the measurement began) until now. The measurement's
    own threads are not counted, so a machine that was busy only with this process (a run a moment ago,
    which the load average remembers for minutes) is idle here; without ``/proc`` the load average decides."""
    now = read()
    share = others_share(start, now) if start is not None and now is not None else None
    return Contention(busy_machine_warning("cpu", share=share) is not None, share, load_average_1min())


class ContentionWatch:
    """Others' CPU share over successive windows of one run: ``check()`` ends the current window (its
    warning, if any) and starts the next; ``shares`` keeps every window's figure."""

    def __init__(self, device_kind: str, read=read_ticks) -> None:
        self.device_kind, self._read = device_kind, read
        self._last = read() if device_kind == "cpu" else None
        self.shares: list[float] = []

    def check(self) -> str | None:
        if self.device_kind != "cpu":
            return None
        now = self._read()
        if self._last is None or now is None:  # no /proc: the load average says what it can
            self._last = now
            return busy_machine_warning(self.device_kind)
        share = others_share(self._last, now)
        if share is None:
            return None  # too short to tell: the window goes on
        self._last = now
        self.shares.append(share)
        return busy_machine_warning(self.device_kind, share=share)
