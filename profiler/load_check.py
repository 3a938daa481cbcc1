"""Is the machine busy? CPU timings mean little while other work shares the cores.

torch runs one thread per core; when another process holds a core, the threads
wait on each other at every op and a step can take ten times longer. A run
cannot prevent that, but it can say so next to the figures it reports.
"""

from __future__ import annotations

import os

BUSY_LOAD_PER_CORE = 0.5  # 1-minute load average per core above which timings are flagged


def busy_machine_warning(device_kind: str, load: tuple[float, float, float] | None = None,
                         cores: int | None = None) -> str | None:
    """One warning line when the load average says other work competes for the CPU, else None."""
    if device_kind != "cpu":
        return None  # GPU steps are timed on the device; host load matters far less there
    try:
        load = load if load is not None else os.getloadavg()
    except OSError:  # not available on this platform
        return None
    cores = cores or os.cpu_count() or 1
    if load[0] <= BUSY_LOAD_PER_CORE * cores:
        return None
    return (f"the machine is busy (1-min load average {load[0]:.2f} on {cores} cores): CPU step times, "
            f"tokens/s and MFU will read low; profile an idle machine or set OMP_NUM_THREADS")
