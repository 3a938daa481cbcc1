"""The busy-machine check: others' CPU share from /proc (ours and our parent's ticks left out), the
load average only where /proc cannot tell."""

from pathlib import Path

import pytest

from profiler.load_check import (
    BUSY_OTHERS_SHARE,
    ContentionWatch,
    CpuTicks,
    busy_machine_warning,
    contention_since,
    others_share,
    read_ticks,
)


def fake_proc(root: Path, cpu: list[int], own: tuple[int, int], parent: tuple[int, int] | None) -> Path:
    """A /proc with the machine's cpu line, this process (pid 100) and its parent (pid 50)."""
    (root / "100").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text("cpu  " + " ".join(map(str, cpu)) + "\ncpu0 1 2 3 4\nintr 0\n")
    comm = "(python -m tui) "  # a command name with a space and a parenthesis-free tail, as in the kernel's
    rest = ["S"] + ["0"] * 10 + [str(own[0]), str(own[1])] + ["0"] * 30
    (root / "100" / "stat").write_text("100 " + comm + " ".join(rest) + "\n")
    if parent is not None:
        (root / "50").mkdir(exist_ok=True)
        rest = ["S"] + ["0"] * 10 + [str(parent[0]), str(parent[1])] + ["0"] * 30
        (root / "50" / "stat").write_text("50 (mfutop) " + " ".join(rest) + "\n")
    return root


def test_ticks_are_read_from_proc_with_steal_counted_busy_and_guest_not_twice(tmp_path):
    # user nice system idle iowait irq softirq steal guest guest_nice
    proc = fake_proc(tmp_path, [100, 5, 20, 800, 10, 1, 2, 30, 40, 0], own=(7, 3), parent=(2, 1))
    ticks = read_ticks(proc, pid=100, parent=50)
    assert ticks == CpuTicks(total=968, idle=810, own=13)


def test_a_missing_parent_leaves_only_this_process(tmp_path):
    proc = fake_proc(tmp_path, [100, 0, 0, 900, 0, 0, 0, 0], own=(7, 3), parent=None)
    assert read_ticks(proc, pid=100, parent=50).own == 10


def test_no_proc_reads_as_unknown(tmp_path):
    assert read_ticks(tmp_path / "nothing", pid=100, parent=50) is None


def test_others_share_leaves_out_our_own_ticks():
    before = CpuTicks(total=1000, idle=500, own=100)
    after = CpuTicks(total=1200, idle=560, own=220)  # 200 ticks: 140 busy, 120 of them ours
    assert others_share(before, after) == pytest.approx(20 / 200)
    assert others_share(before, CpuTicks(1010, 505, 105)) is None  # 10 ticks: too short a window


def test_an_idle_machine_with_a_high_load_average_is_not_busy():
    """Load 1.0 from a task waiting on I/O, the cores idle: the measured share decides."""
    assert busy_machine_warning("cpu", load=(1.8, 1.5, 1.0), cores=2, share=0.02) is None


def test_a_busy_machine_names_the_share_and_cores():
    text = busy_machine_warning("cpu", cores=2, share=0.35)
    assert text.startswith("the machine is busy (other processes used 35% of the 2 cores' time")
    assert "MFU will read low" in text


def test_without_proc_the_load_average_decides():
    assert busy_machine_warning("cpu", load=(0.4, 0.3, 0.2), cores=2) is None
    text = busy_machine_warning("cpu", load=(3.5, 2.0, 1.0), cores=2)
    assert "3.50" in text and "2 cores" in text


def test_gpu_runs_are_not_flagged_for_host_load():
    assert busy_machine_warning("cuda", load=(9.0, 9.0, 9.0), cores=2, share=0.9) is None


def test_the_watch_measures_each_window_since_the_last_check():
    readings = iter([CpuTicks(0, 0, 0), CpuTicks(200, 100, 90), CpuTicks(205, 100, 95),
                     CpuTicks(400, 150, 140)])
    watch = ContentionWatch("cpu", read=lambda: next(readings))
    assert watch.check() is None and watch.shares == [pytest.approx(0.05)]  # 10 of 200 ticks others'
    assert watch.check() is None and watch.shares == [pytest.approx(0.05)]  # 5 ticks: the window goes on
    busy = watch.check()  # since the 200-tick reading: 150 of 200 ticks busy, 50 of them ours
    assert busy and "50%" in busy and watch.shares[-1] == pytest.approx(0.5) and watch.shares[-1] > BUSY_OTHERS_SHARE


def test_a_measurement_that_kept_the_cores_busy_itself_is_not_contended(monkeypatch):
    """A profile measured right after a benchmark: the load average remembers the benchmark (1.9 on 2
    cores), the ticks show the cores busy with this process only, so the profile is kept."""
    monkeypatch.setattr("os.getloadavg", lambda: (1.9, 1.5, 1.2))
    start, end = CpuTicks(1000, 200, 50), CpuTicks(2000, 230, 1000)  # 970 busy ticks, 950 ours
    verdict = contention_since(start, read=lambda: end)
    assert not verdict.busy and verdict.others_share == pytest.approx(0.02) and verdict.load_average == 1.9


def test_a_measurement_others_competed_with_is_busy_and_says_so(monkeypatch):
    monkeypatch.setattr("os.getloadavg", lambda: (0.2, 0.2, 0.2))
    verdict = contention_since(CpuTicks(0, 0, 0), read=lambda: CpuTicks(1000, 100, 500))  # 400 ticks others'
    assert verdict.busy and verdict.others_share == pytest.approx(0.4)
    assert verdict.reason().startswith("other processes used 40% of the")


def test_without_ticks_a_measurement_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr("os.getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    verdict = contention_since(None, read=lambda: None)
    assert verdict.busy and verdict.others_share is None and verdict.reason() == "load average 9.0 on 2 CPUs"


def test_a_real_reading_of_this_machine_is_consistent():
    ticks = read_ticks()
    if ticks is None:
        pytest.skip("no /proc here")
    sum(i * i for i in range(300_000))  # some CPU of our own
    later = read_ticks()
    assert later.total >= ticks.total and later.own >= ticks.own and 0 <= later.idle - ticks.idle
