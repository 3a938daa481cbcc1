"""A Lightning ``Callback`` that runs a ``Tracker`` over ``Trainer.fit()``.

    trainer = L.Trainer(callbacks=[MfutopCallback(out="run.jsonl")])

One Tracker step per optimizer step (every ``accumulate_grad_batches``-th
``on_train_batch_end``), with the loss ``training_step`` returned. Tokens per
step come from the first batch's first 2-D integer tensor (B x T) x
accumulation unless given; the precision from ``trainer.precision``; the
config from the module's (or its ``.model``'s) Hugging Face ``.config`` when
``config="auto"``. An exception in ``fit`` ends the run file with what was
measured (``RunFinished(cancelled=True)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

try:
    from lightning.pytorch import Callback
except ImportError:  # the standalone package
    from pytorch_lightning import Callback

from profiler.integrations import model_config_of
from profiler.tracker import Tracker

PRECISIONS = {"bf16-mixed": "bf16-mixed", "16-mixed": "fp16-mixed", "bf16-true": "bf16", "bf16": "bf16-mixed",
              "16": "fp16-mixed"}


class MfutopCallback(Callback):
    def __init__(self, out: str | Path | None = "run.jsonl", config: Any = "auto",
                 tokens_per_step: int | None = None, **tracker_kwargs: Any):
        self.out, self.config, self.tokens_per_step = out, config, tokens_per_step
        self.tracker_kwargs = tracker_kwargs
        self.tracker: Tracker | None = None
        self._accumulate = 1

    def on_train_start(self, trainer, pl_module):
        config, notes = self.config, []
        if config == "auto":
            config, notes = model_config_of(getattr(pl_module, "model", pl_module))
        self._accumulate = max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1))
        kw = {"precision": PRECISIONS.get(str(trainer.precision)), "grad_accum": self._accumulate,
              **self.tracker_kwargs}
        self.tracker = Tracker(pl_module, tokens_per_step=self.tokens_per_step, out=self.out, config=config, **kw)
        self.tracker.__enter__()
        for note in notes:
            self.tracker.note(note)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.tracker is None or (batch_idx + 1) % self._accumulate:
            return
        self.tracker.observe(_token_ids(batch))
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.tracker.step(loss=loss)

    def on_train_end(self, trainer, pl_module):
        self._finish(None)

    def on_exception(self, trainer, pl_module, exception):
        self._finish(exception)

    def _finish(self, exception: BaseException | None) -> None:
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            tracker.__exit__(type(exception) if exception else None, exception, None)


def _token_ids(batch: Any) -> torch.Tensor | None:
    """The first 2-D integer tensor of a batch (a tensor, a tuple/list, or a dict such as ``input_ids``)."""
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else [batch]
    for item in items:
        if isinstance(item, torch.Tensor) and item.dim() == 2 and not item.is_floating_point():
            return item
    return None
