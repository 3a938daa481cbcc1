"""`plan()`: the best ways to train a model on N GPUs, ranked; every shown row is a full ``predict()``.

Three passes, each cheaper than the next is exact:
1. enumerate layouts (``plan_space``) and knobs; for each (layout, knobs) the
   per-GPU memory of the estimator (``training_memory``, as ``predict`` calls
   it) is non-decreasing in the micro-batch at a fixed global batch (every
   batch term scales with b, and the pipeline's in-flight count min(pp, m)
   times b only grows), so a bisection over the micro-batch sizes finds the
   fitting ones and a group whose smallest micro-batch does not fit is dropped;
2. every fitting candidate is timed on the op graph with ``DatasheetCost`` (what
   ``predict`` does) and ranked by the objective;
3. the best ``top + margin`` are predicted in full and re-ranked on the
   prediction's own figures, so the shown ranking is predict()'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from estimator.errors import ConfigError
from estimator.hardware import HardwareSpec
from estimator.max_batch import default_memory_limit
from estimator.memory import training_memory
from estimator.model_config import ModelConfig
from estimator.plan_report import estimate_argv, label, plan_row, winner_reason
from estimator.precision import get_precision
from estimator.plan_space import (
    MAX_GPUS,
    Knobs,
    Layout,
    check_gpus,
    check_toolset,
    gaps,
    knob_options,
    layouts,
    micro_batches,
    precision_options,
    smallest_dp,
)
from estimator.cost_model import DatasheetCost
from estimator.op_graph import stages, step_graph
from estimator.step_compose import compose, time_stages
from estimator.predict import predict
from estimator.setup import TrainSetup
from estimator.step_overheads import default_overheads

OBJECTIVES = ("throughput", "time", "cost")
PREDICT_MARGIN = 5  # candidates predicted in full beyond --top, so re-ranking on predict() can reorder them
Progress = Callable[[int, int], None]  # (groups done, groups in all)


@dataclass(frozen=True)
class PlanRequest:
    model: ModelConfig
    hardware: HardwareSpec
    gpus: int
    gpus_per_node: int = 8
    seq_len: int | None = None  # None: the model's context length
    global_batch: int | None = None  # sequences; exact
    global_batch_tokens: int | None = None  # rounded per layout to a multiple of dp sequences
    tokens: int | None = None
    gpu_hour_cost: float | None = None
    memory_limit_bytes: int | None = None
    top: int = 10
    objective: str = "throughput"
    uneven_pp: bool = False
    model_flags: tuple[str, ...] | None = None  # how `mfutop estimate` names the model; None: --model name
    precisions: tuple[str, ...] | None = None  # None: plan_space.precision_options (bf16-master, fp8 where it runs)
    toolset: str = "all"  # plan_space.TOOLSETS: every knob, or only those a published run had
    # One row per parallel layout (TP, PP, DP, CP, EP) at its best knobs: the top K are K different ways to
    # lay the model out, not one layout's micro-batch / ZeRO / recompute variants. False lists those too.
    distinct_layouts: bool = True

    @property
    def seq(self) -> int:
        return self.seq_len or self.model.context_length


@dataclass
class Candidate:
    layout: Layout
    knobs: Knobs
    micro_batch: int
    memory_bytes: int | None  # None where the bisection did not need to evaluate it
    step_time_s: float = 0.0

    @property
    def grad_accum(self) -> int:
        return self.layout.per_replica // self.micro_batch


    def setup(self, seq_len: int) -> TrainSetup:
        k, lay = self.knobs, self.layout
        return TrainSetup(batch_size=self.micro_batch, seq_len=seq_len, precision=k.precision,
                          recompute=k.recompute, flash_attention=k.flash_attention, grad_accum=self.grad_accum,
                          dp=lay.dp, tp=lay.tp, pp=lay.pp, sp=k.sp, ep=lay.ep, zero=k.zero, vpp=k.vpp, cp=lay.cp)


@dataclass
class Plan:
    request: PlanRequest
    rows: list[dict]
    reason: str | None
    gaps: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        r = self.request
        return {
            "model": r.model.name, "gpu": r.hardware.key, "gpus": r.gpus, "gpus_per_node": r.gpus_per_node,
            "seq_len": r.seq, "global_batch": r.global_batch, "global_batch_tokens": r.global_batch_tokens,
            "tokens": r.tokens, "gpu_hour_cost": r.gpu_hour_cost, "memory_limit_bytes": r.memory_limit_bytes,
            "objective": r.objective, "top": r.top, "uneven_pp": r.uneven_pp, "toolset": r.toolset,
            "distinct_layouts": r.distinct_layouts,
            "rows": self.rows, "winner_reason": self.reason, "gaps": self.gaps,
            "candidates": dict(self.counts), "elapsed_s": self.elapsed_s,
        }


class SearchContext:
    """What every candidate shares: the memory limit, the peak, the device model predict() picks."""

    def __init__(self, req: PlanRequest):
        self.req = req
        self.seq = req.seq
        self.limit = (default_memory_limit(req.hardware) if req.memory_limit_bytes is None
                      else req.memory_limit_bytes)
        self.overheads = default_overheads(req.hardware)
        self.mem_kw = dict(peak="phases", device_kind=self.overheads.device_kind,
                           optimizer_impl=self.overheads.optimizer_impl)
        self.precisions = req.precisions or precision_options(req.hardware)
        self.op_costs: dict = {}
        self.graphs: dict = {}  # setup without vpp -> (graphs, their costed micro-batches)

    def memory(self, cand_setup: TrainSetup) -> int:
        return training_memory(self.req.model, cand_setup, cand_setup.batch_size, self.seq, **self.mem_kw).total

    def step_time(self, cand_setup: TrainSetup) -> float:
        """predict()'s datasheet step time (``predict_step``'s op graph and costs), sharing op costs across
        candidates, and the costed graphs across those that differ only in their virtual stages."""
        cost = DatasheetCost(self.req.hardware, cand_setup, self.overheads, self.op_costs)
        key = replace(cand_setup, vpp=1)
        if key not in self.graphs:
            graphs = {stage: step_graph(self.req.model, cand_setup, cand_setup.batch_size, self.seq, stage)
                      for stage in stages(cand_setup)}
            self.graphs[key] = (graphs, time_stages(graphs, cost))
        graphs, timed = self.graphs[key]
        return compose(graphs, cost, cand_setup, timed=timed)["time_s"]


def validate_request(req: PlanRequest) -> None:
    check_toolset(req.toolset)
    check_gpus(req.gpus, req.gpus_per_node)
    if req.objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {req.objective!r}")
    if (req.global_batch is None) == (req.global_batch_tokens is None):
        raise ConfigError("give the global batch as sequences or as tokens, exactly one of the two")
    for name, value in (("global-batch-size", req.global_batch), ("global-batch-tokens", req.global_batch_tokens),
                        ("top", req.top)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if req.seq > req.model.context_length:
        raise ConfigError(f"seq-len {req.seq} exceeds {req.model.name}'s context length {req.model.context_length}")
    for name in req.precisions or ():
        if req.hardware.peak(get_precision(name).matmul_dtype) is None:
            raise ConfigError(f"precision {name}: {req.hardware.name} has no {get_precision(name).matmul_dtype} peak")
    if req.memory_limit_bytes is not None and req.memory_limit_bytes <= 0:
        raise ConfigError(f"memory limit must be positive, got {req.memory_limit_bytes!r} bytes")
    if req.global_batch_tokens is not None and req.global_batch_tokens < req.seq:
        raise ConfigError(f"global batch of {req.global_batch_tokens} tokens is less than one sequence "
                          f"of {req.seq} tokens")


def _gpu_counts(req: PlanRequest) -> list[int]:
    """The GPU counts searched: N, and for the cost objective also N/2, N/4, ... in whole nodes."""
    counts = [req.gpus]
    if req.objective == "cost":
        n = req.gpus
        while n % 2 == 0 and n > 1:
            n //= 2
            if n <= req.gpus_per_node or n % req.gpus_per_node == 0:
                counts.append(n)
    return counts


def search_groups(req: PlanRequest, ctx: SearchContext, gpus: int) -> list[tuple[Layout, Knobs]]:
    lays = layouts(req.model, gpus, req.gpus_per_node, ctx.seq, req.global_batch, req.global_batch_tokens,
                   req.uneven_pp)
    gpu = req.hardware.vendor != "cpu"
    return [(lay, k) for lay in lays for k in knob_options(req.model, lay, ctx.precisions, gpu, req.toolset)]


def fitting_candidates(ctx: SearchContext, lay: Layout, knobs: Knobs, counts: dict[str, int]) -> list[Candidate]:
    """The candidates of one group whose memory fits: a bisection over the (monotonic) micro-batch sizes."""
    sizes = micro_batches(lay)
    counts["enumerated"] += len(sizes)
    base = Candidate(lay, knobs, sizes[0], None).setup(ctx.seq)
    memo: dict[int, int] = {}

    def mem(i: int) -> int:
        if i not in memo:
            b = sizes[i]
            memo[i] = ctx.memory(replace(base, batch_size=b, grad_accum=lay.per_replica // b))
            counts["memory_checked"] += 1
        return memo[i]

    if mem(0) > ctx.limit:
        return []
    good, bad = 0, len(sizes)
    while bad - good > 1:
        mid = (good + bad) // 2
        if mem(mid) <= ctx.limit:
            good = mid
        else:
            bad = mid
    out = []
    for i in range(good + 1):
        b = sizes[i]
        out.append(Candidate(lay, knobs, b, memo.get(i)))
    return out


def _score(req: PlanRequest, gpus: int, step_time_s: float, tokens_per_step: int) -> float:
    """Lower is better: seconds per token (throughput), time for --tokens, GPU-seconds per token (cost)."""
    if req.objective == "cost":
        return gpus * step_time_s / tokens_per_step
    if req.objective == "time" and req.tokens is not None:
        return -(-req.tokens // tokens_per_step) * step_time_s
    return step_time_s / tokens_per_step


def _model_flags(req: PlanRequest) -> tuple[str, ...] | None:
    if req.model_flags is not None:
        return req.model_flags
    from estimator.presets import PRESETS

    return ("--model", req.model.name) if PRESETS.get(req.model.name) == req.model else None


def _search(req: PlanRequest, ctx: SearchContext, progress: Progress | None) -> tuple[list[Candidate], dict[str, int]]:
    counts = {"layout_groups": 0, "enumerated": 0, "memory_checked": 0, "fitting": 0, "timed": 0, "predicted": 0}
    groups = [(g, n) for n in _gpu_counts(req) for g in search_groups(req, ctx, n)]
    counts["layout_groups"] = len(groups)
    if not groups:
        batch = (f"{req.global_batch} sequences" if req.global_batch is not None
                 else f"{req.global_batch_tokens} tokens")
        raise ConfigError(f"no TP x PP x DP layout of {req.gpus} GPUs has a DP degree that divides the global "
                          f"batch of {batch}: pick a batch that is a multiple of a power of two")
    timed: list[Candidate] = []
    for i, ((lay, knobs), _gpus) in enumerate(groups):
        for cand in fitting_candidates(ctx, lay, knobs, counts):
            cand.step_time_s = ctx.step_time(cand.setup(ctx.seq))
            counts["timed"] += 1
            timed.append(cand)
        if progress is not None and i % 64 == 0:
            progress(i, len(groups))
    if progress is not None:
        progress(len(groups), len(groups))
    counts["fitting"] = len(timed)
    return timed, counts


def ranked_layouts(req: PlanRequest) -> list[tuple[tuple[int, int, int, int, int], float, int]]:
    """Each fitting (tp, pp, dp, ep, cp) layout with the step time of its fastest candidate and the GPU
    count, best first by the objective (the screening pass, not full predictions): where a given
    layout stands among all that fit."""
    validate_request(req)
    ctx = SearchContext(req)
    timed, _ = _search(req, ctx, None)
    best: dict[tuple[int, int, int, int, int], Candidate] = {}
    for c in timed:
        key = (c.layout.tp, c.layout.pp, c.layout.dp, c.layout.ep, c.layout.cp)
        score = _score(req, c.layout.world, c.step_time_s, c.layout.batch * ctx.seq)
        if key not in best or score < _score(req, best[key].layout.world, best[key].step_time_s,
                                             best[key].layout.batch * ctx.seq):
            best[key] = c
    order = sorted(best.items(), key=lambda kv: _score(req, kv[1].layout.world, kv[1].step_time_s,
                                                       kv[1].layout.batch * ctx.seq))
    return [(key, c.step_time_s, c.layout.world) for key, c in order]


def plan(req: PlanRequest, progress: Progress | None = None) -> Plan:
    """The ``req.top`` best setups by ``req.objective``, each a full ``predict()`` row. ConfigError when
    the input is impossible or no setup fits (naming the smallest GPU count that would)."""
    start = time.perf_counter()
    validate_request(req)
    ctx = SearchContext(req)
    _check_batch_covers_dp(req, ctx)
    timed, counts = _search(req, ctx, progress)
    if not timed:
        raise _nothing_fits(req, ctx)
    timed.sort(key=lambda c: _score(req, c.layout.world, c.step_time_s, c.layout.batch * ctx.seq))
    flags = _model_flags(req)
    rows: list[dict] = []
    per_layout: dict[tuple, int] = {}
    for cand in timed:
        if len(_shown(req, rows)) >= req.top + PREDICT_MARGIN:
            break
        key = _layout_key(cand.layout)
        if req.distinct_layouts and per_layout.get(key, 0) >= LAYOUT_VARIANTS_PREDICTED:
            continue
        per_layout[key] = per_layout.get(key, 0) + 1
        setup = cand.setup(ctx.seq)
        pred = predict(req.model, req.hardware, setup, tokens=req.tokens, gpu_hour_cost=req.gpu_hour_cost,
                       memory_limit_bytes=req.memory_limit_bytes)
        counts["predicted"] += 1
        argv = (estimate_argv(flags, req.hardware.key, setup, ctx.seq, req.tokens, req.gpu_hour_cost,
                              req.memory_limit_bytes) if flags is not None else None)
        rows.append(plan_row(pred, argv))
    rows.sort(key=lambda r: (_score(req, r["gpus"], r["step_time_s"], r["global_batch_tokens"]), r["memory_bytes"]))
    kept = _shown(req, rows)
    counts["dominated_dropped"] = len(rows) - len(kept)
    rows = kept[:req.top]
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
        row["label"] = label(row["setup"])
    reason = winner_reason(rows[0], rows[1]) if len(rows) > 1 else None
    return Plan(req, rows, reason, gaps(req.model, req.hardware, req.uneven_pp, req.gpus_per_node), counts,
                time.perf_counter() - start)


LAYOUT_VARIANTS_PREDICTED = 3  # per layout, its fastest screened candidates predicted in full (re-ranking margin)


def _layout_key(lay: Layout) -> tuple[int, ...]:
    return lay.world, lay.tp, lay.pp, lay.dp, lay.cp, lay.ep


def _row_layout(row: dict) -> tuple[int, ...]:
    s = row["setup"]
    return row["gpus"], s["tp"], s["pp"], s["dp"], s["cp"], s["ep"]


def _shown(req: PlanRequest, rows: list[dict]) -> list[dict]:
    """The rows that can be shown, best first: twins dropped, and with ``distinct_layouts`` only the best
    row of each layout (``rows`` sorted best first)."""
    kept = _drop_dominated(rows)
    if not req.distinct_layouts:
        return kept
    seen: set[tuple[int, ...]] = set()
    out = []
    for row in sorted(kept, key=lambda r: (_score(req, r["gpus"], r["step_time_s"], r["global_batch_tokens"]),
                                           r["memory_bytes"])):
        if _row_layout(row) not in seen:
            seen.add(_row_layout(row))
            out.append(row)
    return out


def _drop_dominated(rows: list[dict]) -> list[dict]:
    """Drop a row as fast as an earlier one (same step time and batch) that needs at least as much
    memory: a knob that changes nothing the estimator sees (e.g. flash attention under selective
    recompute) would otherwise fill the table with twins."""
    kept: list[dict] = []
    for row in rows:
        if not any(k["step_time_s"] == row["step_time_s"] and k["global_batch_tokens"] == row["global_batch_tokens"]
                   and k["gpus"] == row["gpus"] and k["memory_bytes"] <= row["memory_bytes"] for k in kept):
            kept.append(row)
    return kept


def _check_batch_covers_dp(req: PlanRequest, ctx: SearchContext) -> None:
    dp, tp, pp = smallest_dp(req.model, req.gpus, req.gpus_per_node, req.uneven_pp)
    seqs = req.global_batch if req.global_batch is not None else req.global_batch_tokens // ctx.seq
    if seqs < dp:
        raise ConfigError(f"global batch of {seqs} sequences is smaller than the smallest DP degree {dp} "
                          f"({req.gpus} GPUs / TP{tp} x PP{pp}): raise the global batch or use fewer GPUs")


def fits_on(req: PlanRequest, gpus: int) -> bool:
    """Whether any setup fits in memory on ``gpus`` GPUs at the request's global batch."""
    try:
        check_gpus(gpus, req.gpus_per_node)
    except ConfigError:
        return False
    ctx = SearchContext(req)
    counts = {"enumerated": 0, "memory_checked": 0}
    return any(fitting_candidates(ctx, lay, k, counts) for lay, k in search_groups(req, ctx, gpus))


def smallest_fitting_gpus(req: PlanRequest) -> int | None:
    """The smallest power-of-two count (whole nodes past one) above ``req.gpus`` on which a setup fits."""
    n = req.gpus * 2
    while n <= MAX_GPUS:
        if fits_on(req, n):
            return n
        n *= 2
    return None


def _nothing_fits(req: PlanRequest, ctx: SearchContext) -> ConfigError:
    where = f"{req.model.name} (seq-len {ctx.seq}) on {req.gpus} x {req.hardware.key}"
    limit = f"{ctx.limit / 2**30:,.2f} GiB per GPU"
    n = smallest_fitting_gpus(req)
    if n is None:
        return ConfigError(f"no setup of {where} fits in {limit}, nor on up to {MAX_GPUS} GPUs at this global batch")
    return ConfigError(f"no setup of {where} fits in {limit}; the smallest GPU count that fits is {n}")
