"""``Tracker`` under DDP (2 CPU ranks, gloo): rank 0 writes, tokens/s is all ranks' tokens over the slowest rank."""

from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from estimator.flops import step_flops
from estimator.presets import get_model
from profiler.events import RunFinished, StepSample, read_events

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
WORLD, B, T, STEPS = 2, 2, 16, 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out: str, results: str) -> None:
    from fixtures.tracker_helpers import fake_cpu
    from profiler import Tracker
    from profiler.model import build_model

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        cfg = get_model("gpt-tiny")
        model = torch.nn.parallel.DistributedDataParallel(build_model(cfg, "cpu"))
        opt = torch.optim.AdamW(model.parameters())
        with Tracker(model, tokens_per_step=B * T, out=out, config=cfg, detect=fake_cpu) as t:
            for step in range(STEPS):
                x = torch.randint(0, cfg.vocab_size, (B, T), generator=torch.Generator().manual_seed(rank + step))
                loss = model(x, x)
                loss.backward()
                opt.step()
                opt.zero_grad()
                t.step(loss=loss)
        times = [s.step_time_s for s in t.events if isinstance(s, StepSample)]
        with open(f"{results}.{rank}", "w") as f:
            json.dump({"times": times, "tokens": t.state.tokens_all_ranks, "world": t.state.world_size}, f)
    finally:
        dist.destroy_process_group()


def test_rank_zero_writes_and_tokens_per_s_aggregates_over_ranks(tmp_path):
    out, results = tmp_path / "run.jsonl", tmp_path / "rank"
    mp.spawn(_rank, args=(_free_port(), str(out), str(results)), nprocs=WORLD, join=True)
    ranks = [json.loads((tmp_path / f"rank.{r}").read_text()) for r in range(WORLD)]
    assert all(r["tokens"] == WORLD * B * T and r["world"] == WORLD for r in ranks)
    assert ranks[0]["times"] == ranks[1]["times"]  # every rank records the slowest rank's time
    events = list(read_events(out.read_text().splitlines()))  # one writer: every line whole
    steps = [e for e in events if isinstance(e, StepSample)]
    assert [s.step for s in steps] == list(range(1, STEPS + 1))
    assert all(s.tokens_per_s == pytest.approx(WORLD * B * T / s.step_time_s) for s in steps)
    assert all(s.mfu == pytest.approx(step_flops(get_model("gpt-tiny"), B, T).total / s.step_time_s / 1e11)
               for s in steps)  # MFU per rank: one rank's FLOPs over the slowest rank's time
    summary = events[-1].summary
    assert isinstance(events[-1], RunFinished) and summary["measured"]["world_size"] == WORLD
    assert summary["measured"]["tokens_per_step"] == WORLD * B * T
