"""The screens ``MfutopApp`` opens over its own: compare two runs, plan the model on N GPUs, the ladder.

A mixin of the app (``state``, ``setup_draft``, ``run_config``, ``_source`` are the
app's); each screen is imported when first opened, so start-up does not pay for it.
"""

from __future__ import annotations

from tui.app.setup_draft import check_draft


class OtherScreens:
    """``m``, ``p`` and ``l``: each pushes its screen (escape returns)."""

    def action_compare(self) -> None:
        """Two recorded runs side by side on their own screen (escape returns); the picker lists the
        run files beside this app's recording, else those of the current directory."""
        from tui.app.compare_screen import CompareScreen

        self.push_screen(CompareScreen(directory=self.out_path.parent if self.out_path else None))

    def action_plan(self) -> None:
        """The planner's best setups for this model across GPU counts on its own screen (escape returns);
        without a known GPU here it plans for `mfutop plan`'s default GPU, and says so."""
        from estimator.hardware import get_gpu
        from estimator.presets import PRESETS
        from profiler.resolve import default_model
        from tui.app.plan_screen import PlanScreen
        from tui.cmd_estimate import DEFAULT_GPU

        device = self.state.device
        config, _ = check_draft(self.setup_draft, self.run_config)
        config = config or self.run_config
        recorded = PRESETS.get(self.state.model_name or "") if self._source is not None else None
        model = recorded or config.model or default_model(device.device if device else "cpu")
        gpu = device.spec_key if device is not None and device.device == "cuda" and device.spec_key else None
        if gpu is None:
            self.notify(f"No known GPU here: planning {model.name} for {DEFAULT_GPU}.", markup=False)
        self.push_screen(PlanScreen(model, get_gpu(gpu or DEFAULT_GPU), seq_len=config.seq_len))

    def action_ladder(self) -> None:
        """The optimisation ladder of the current setup on its own screen (escape returns)."""
        if self.running:
            self.notify("A run is in progress; c cancels it first.", severity="warning", markup=False)
            return
        if self._source is not None:
            self.notify("The ladder measures live; this app shows a recorded or remote run.", markup=False)
            return
        config, errors = check_draft(self.setup_draft, self.run_config)
        if config is None:
            self.notify("Fix the setup first: " + next(iter(errors.values())), severity="error", markup=False)
            return
        from tui.app.ladder_screen import LadderScreen
        from tui.event_sources import ladder_source

        # torch.compile of a CPU model takes about a minute: the rung is listed as skipped there.
        skip = ("compile",) if self.state.device is not None and self.state.device.device == "cpu" else ()
        self.push_screen(LadderScreen(source=ladder_source(config, skip=skip)))
