from profiler.load_check import busy_machine_warning


def test_idle_cpu_gives_no_warning():
    assert busy_machine_warning("cpu", load=(0.4, 0.3, 0.2), cores=2) is None


def test_busy_cpu_names_the_load_and_cores():
    text = busy_machine_warning("cpu", load=(3.5, 2.0, 1.0), cores=2)
    assert "3.50" in text and "2 cores" in text


def test_gpu_runs_are_not_flagged_for_host_load():
    assert busy_machine_warning("cuda", load=(9.0, 9.0, 9.0), cores=2) is None
