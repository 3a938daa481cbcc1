"""The trainer adapters, each driving a real trainer over a tiny model: Hugging Face Trainer and Lightning."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from estimator.flops import step_flops
from estimator.model_config import from_hf_config
from profiler.events import FlopsCounted, PredictionReady, RunFinished, StepSample, read_events

from fixtures.tracker_helpers import B, T, VOCAB, batches, fake_cpu, tiny_llama

pytestmark = pytest.mark.slow  # runs real trainers
STEPS = 4


def test_importing_the_integrations_package_imports_no_trainer():
    code = ("import sys, profiler, profiler.integrations; "
            "print(any(m in sys.modules for m in ('transformers', 'lightning', 'pytorch_lightning', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class TokenDataset(torch.utils.data.Dataset):
    def __init__(self, n):
        self.rows = list(batches(1, b=n))[0]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return {"input_ids": self.rows[i], "labels": self.rows[i]}


def read(path):
    return list(read_events(path.read_text().splitlines()))


def test_hf_trainer_callback_tracks_every_optimizer_step_with_the_models_own_config(tmp_path):
    transformers = pytest.importorskip("transformers")
    from profiler.integrations.hf_trainer import MfutopCallback

    model, config = tiny_llama(tmp_path / "tiny")
    out = tmp_path / "run.jsonl"
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=B,
                                          gradient_accumulation_steps=2, max_steps=STEPS, report_to=[],
                                          no_cuda=True, save_strategy="no", logging_steps=1, disable_tqdm=True)
    callback = MfutopCallback(out=out, detect=fake_cpu)
    transformers.Trainer(model=model, args=args, train_dataset=TokenDataset(4 * B * STEPS),
                         callbacks=[callback]).train()
    events = read(out)
    steps = [e for e in events if isinstance(e, StepSample)]
    assert [s.step for s in steps] == list(range(1, STEPS + 1))
    assert any(isinstance(e, PredictionReady) for e in events)  # from model.config, no file given
    flops = next(e for e in events if isinstance(e, FlopsCounted))
    assert flops.analytic == 2 * step_flops(from_hf_config(config), B, T).total  # two micro-batches per step
    summary = events[-1].summary
    assert isinstance(events[-1], RunFinished) and summary["measured"]["tokens_per_step"] == 2 * B * T
    assert math.isfinite(summary["measured"]["mfu"]) and summary["measured"]["mfu"] > 0
    assert math.isfinite(steps[-1].loss)  # the Trainer's logged loss
    assert callback.tracker is None


def test_lightning_callback_tracks_fit_and_counts_flops_without_a_config(tmp_path):
    lightning = pytest.importorskip("lightning")
    from profiler.integrations.lightning import MfutopCallback

    model, config = tiny_llama(tmp_path / "tiny")

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            return self.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    out = tmp_path / "run.jsonl"
    callback = MfutopCallback(out=out, config=None, detect=fake_cpu)
    trainer = lightning.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                callbacks=[callback])
    loader = torch.utils.data.DataLoader(TokenDataset(B * STEPS), batch_size=B)
    trainer.fit(Module(), loader)
    events = read(out)
    steps = [e for e in events if isinstance(e, StepSample)]
    assert [s.step for s in steps] == list(range(1, STEPS + 1))
    assert all(math.isfinite(s.loss) and s.batch_size == B for s in steps)
    m = events[-1].summary["measured"]
    assert m["flops_source"].startswith("FlopCounterMode")
    assert m["flops_per_step"] == step_flops(from_hf_config(config), B, T).total
    assert m["tokens_per_step"] == B * T and m["tokens_per_s"] > 0


def test_lightning_callback_ends_the_run_file_when_fit_raises(tmp_path):
    lightning = pytest.importorskip("lightning")
    from profiler.integrations.lightning import MfutopCallback

    model, _ = tiny_llama(tmp_path / "tiny")

    class Failing(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            if batch_idx == 2:
                raise RuntimeError("diverged")
            return self.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=1e-3)

    out = tmp_path / "run.jsonl"
    trainer = lightning.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                callbacks=[MfutopCallback(out=out, detect=fake_cpu)])
    with pytest.raises(RuntimeError, match="diverged"):
        trainer.fit(Failing(), torch.utils.data.DataLoader(TokenDataset(B * STEPS), batch_size=B))
    last = read(out)[-1]
    assert isinstance(last, RunFinished) and last.cancelled and last.summary["measured"]["steps"] == 1
