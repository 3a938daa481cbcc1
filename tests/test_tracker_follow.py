"""The app following a run file a ``Tracker`` is still writing shows each step as it arrives."""

from __future__ import annotations

import threading

import pytest
import torch

from profiler import Tracker
from profiler.events import StepSample
from tui.app.app import MfutopApp
from tui.event_sources import follow_source

from fixtures.app_helpers import is_number, run, table_cells, wait_until
from fixtures.tracker_helpers import B, T, batches, fake_cpu, hf_train_step, tiny_llama

pytestmark = [pytest.mark.slow, pytest.mark.app]
pytest.importorskip("transformers")

STEPS = 4


def test_follow_shows_tracker_steps_as_they_are_written(tmp_path):
    model, config = tiny_llama(tmp_path / "tiny")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = tmp_path / "run.jsonl"
    out.write_text("")
    go = threading.Semaphore(0)  # the test lets the training loop take one step at a time
    failure: list[BaseException] = []

    def train():
        try:
            with Tracker(model, tokens_per_step=B * T, out=out, config=config, detect=fake_cpu) as t:
                for x in batches(STEPS):
                    if not go.acquire(timeout=120):
                        raise TimeoutError("the test never released the next step")
                    t.step(loss=hf_train_step(model, opt, x))
                go.acquire(timeout=120)  # and holds the run open until the test has looked at the last step
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failure.append(exc)

    writer = threading.Thread(target=train)
    seen_mid_run: list[tuple[int, bool]] = []

    async def follow():
        app = MfutopApp(source=follow_source(out, poll_s=0.02))
        async with app.run_test(size=(120, 40)) as pilot:
            writer.start()
            for k in range(1, STEPS + 1):
                go.release()
                await wait_until(pilot, lambda: len(app.state.samples) >= k or bool(failure))
                assert not failure, failure
                seen_mid_run.append((len(app.state.samples), app.state.done))
            cells_before_end = table_cells(app)
            go.release()
            await wait_until(pilot, lambda: app.state.done and not app.running)
            return app, cells_before_end

    app, mid = run(follow())
    writer.join(timeout=30)
    assert not failure, failure
    assert seen_mid_run == [(k, False) for k in range(1, STEPS + 1)]  # each step on screen before the run ended
    assert [s.step for s in app.state.samples] == list(range(1, STEPS + 1))
    assert all(isinstance(s, StepSample) for s in app.state.samples)
    predicted, measured, _ = mid["tokens_per_s"]
    assert is_number(predicted) and is_number(measured)  # the prediction beside the measurement, live
    assert app.state.summary is not None and app.state.summary["measured"]["steps"] == STEPS - 1
    assert app.state.status == "finished"
