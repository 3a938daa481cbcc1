"""A Hugging Face ``TrainerCallback`` that runs a ``Tracker`` over ``Trainer.train()``.

    trainer = Trainer(model, args, train_dataset=ds, callbacks=[MfutopCallback(out="run.jsonl")])

One Tracker step per optimizer step (``on_step_end``: after the
``gradient_accumulation_steps`` micro-batches). Tokens per step are inferred
from the first forward's ``input_ids`` (B x T) x accumulation unless given;
the precision from ``args.bf16`` / ``args.fp16``; the config from the model's
own ``.config`` (``config="auto"``), so the prediction needs nothing more. The
loss recorded is the latest one the Trainer logged (``logging_steps``): NaN
until the first log.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from profiler.integrations import model_config_of
from profiler.tracker import Tracker


class MfutopCallback(TrainerCallback):
    def __init__(self, out: str | Path | None = "run.jsonl", config: Any = "auto",
                 tokens_per_step: int | None = None, **tracker_kwargs: Any):
        self.out, self.config, self.tokens_per_step = out, config, tokens_per_step
        self.tracker_kwargs = tracker_kwargs
        self.tracker: Tracker | None = None
        self._loss = math.nan

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        config, notes = model_config_of(model) if self.config == "auto" else (self.config, [])
        precision = "bf16-mixed" if args.bf16 else "fp16-mixed" if args.fp16 else None
        kw = {"precision": precision, "grad_accum": args.gradient_accumulation_steps, **self.tracker_kwargs}
        self.tracker = Tracker(model, tokens_per_step=self.tokens_per_step, out=self.out, config=config, **kw)
        self.tracker.__enter__()
        for note in notes:
            self.tracker.note(note)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and isinstance(logs.get("loss"), (int, float)):
            self._loss = float(logs["loss"])

    def on_step_end(self, args, state, control, **kwargs):
        if self.tracker is not None:
            self.tracker.step(loss=self._loss)

    def on_train_end(self, args, state, control, **kwargs):
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            tracker.__exit__(None, None, None)
