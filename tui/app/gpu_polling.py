"""The hardware panel's live GPU figures in ``MfutopApp``: NVML sampled in a worker while a GPU run lasts.

A mixin of the app (``state``, ``_dirty`` and ``_gpu_timer`` are the app's): the
poll starts with a live GPU run and stops with it; a sample arrives as a call on the
app's thread; NVML failing keeps the last figures.
"""

from __future__ import annotations

from textual import work

GPU_POLL_S = 1.0  # NVML refresh of the hardware panel during a live GPU run


class GpuPolling:
    """Samples the GPUs every ``GPU_POLL_S`` into the app's state while started."""

    def _start_gpu_poll(self) -> None:
        if self._gpu_timer is None:
            self._gpu_timer = self.set_interval(GPU_POLL_S, self._poll_gpus)

    def _stop_gpu_poll(self) -> None:
        if self._gpu_timer is not None:
            self._gpu_timer.stop()
            self._gpu_timer = None

    @work(thread=True, exclusive=True, exit_on_error=False, group="nvml")
    def _poll_gpus(self) -> None:
        from profiler import nvml_probe

        try:
            gpus = list(nvml_probe.sample_gpus())
        except Exception:  # NVML unsupported / gone: keep the last figures
            return
        self.call_from_thread(self._set_gpus, [g for g in gpus if isinstance(g, dict)])

    def _set_gpus(self, gpus: list[dict]) -> None:
        self.state.gpus = gpus
        self._dirty = True
