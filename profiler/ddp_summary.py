"""What rank 0 reports for a distributed run: aggregate figures, scaling, all-reduce, memory.

Pure Python (no torch), so the rules are tested without launching ranks:

* **Aggregate tokens/s** = all ranks' tokens / the slowest rank's time
  (DESIGN.md). A rank's time is its steady-state time, median step time x
  timed steps, the same statistic the single-process baseline uses, so that
  scaling efficiency compares like with like on a noisy machine.
* **Scaling efficiency** = aggregate / (n x one process's tokens/s).
* **Predicted all-reduce** (ring): 2(n-1)/n · gradient bytes / B + 2(n-1)·α,
  beside the measured step-time difference (distributed − single-process) and
  a bare all-reduce of the same size timed on the ranks.

The summary keeps the ``mfutop profile --json`` keys (``config``, ``device``,
``prediction``, ``measured``, ``errors``, ``compare``) and adds ``distributed``.
"""

from __future__ import annotations

from typing import Any, Sequence

from estimator.mfu import mfu
from estimator.communication import BUS_FRACTION, COLLECTIVE_LATENCY_S, ring_all_reduce_s, tier_class
from estimator.step_time import ZERO3_COMM_FACTOR
from profiler.compare import compare_rows, errors_by_key, lookup


def allreduce_bandwidth(device: str, link_bandwidth: float | None, interconnect_efficiency: float | None,
                        copy_bandwidth: float | None = None, link_kind: str = "nvlink") -> tuple[float, str]:
    """The B of the ring formula, with the assumption behind it spelled out.

    GPU: the spec's intra-node link figure is a bidirectional aggregate and a
    ring sends one way per link: B = link / 2 x interconnect efficiency, or, when
    None, the measured bus fraction of the link's tier (``estimator.communication.
    BUS_FRACTION``, as the estimator's ``link_bandwidth``). CPU (gloo): the ranks
    share one memory and gloo copies through TCP loopback; the measured memcpy
    bandwidth is used and called what it is, an upper bound.
    """
    if device == "cuda":
        if not link_bandwidth:
            raise ValueError("no intra-node bandwidth for this GPU")
        if interconnect_efficiency is None:
            tier = tier_class(link_kind)
            fraction, why = BUS_FRACTION[tier], f"measured {tier} bus fraction"
        else:
            fraction, why = interconnect_efficiency, "interconnect efficiency"
        return link_bandwidth / 2 * fraction, (
            f"intra-node link {link_bandwidth / 1e9:.0f} GB/s (bidirectional) / 2 per direction "
            f"x {fraction:.2f} {why}")
    if copy_bandwidth:
        return copy_bandwidth, (f"gloo on one host: assumed to move data at the measured memcpy bandwidth "
                                f"{copy_bandwidth / 1e9:.1f} GB/s (an upper bound: gloo copies through TCP loopback)")
    from estimator.device_specs import CPU_DEFAULT_BANDWIDTH

    return CPU_DEFAULT_BANDWIDTH, (f"gloo on one host: assumed {CPU_DEFAULT_BANDWIDTH / 1e9:.0f} GB/s "
                                   "(the estimator's default CPU memory bandwidth)")


def aggregate_ranks(per_rank: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """All ranks' tokens / the slowest rank's time, plus which rank was slowest and by how much.

    Each entry needs ``rank``, ``tokens`` (timed tokens) and ``seconds`` (its
    steady-state time); ``step_time_s`` and ``peak_memory_bytes`` are used when present.
    """
    if not per_rank:
        raise ValueError("no rank results to aggregate")
    slowest = max(per_rank, key=lambda r: r["seconds"])
    fastest = min(per_rank, key=lambda r: r["seconds"])
    tokens = sum(int(r["tokens"]) for r in per_rank)
    peaks = [r["peak_memory_bytes"] for r in per_rank if r.get("peak_memory_bytes") is not None]
    medians = [r["step_time_s"] for r in per_rank if r.get("step_time_s") is not None]
    return {
        "tokens": tokens,
        "seconds": slowest["seconds"],
        "tokens_per_s": tokens / slowest["seconds"] if slowest["seconds"] > 0 else None,
        "slowest_rank": slowest["rank"],
        "rank_time_spread": (slowest["seconds"] / fastest["seconds"] - 1) if fastest["seconds"] > 0 else None,
        "step_time_s": max(medians) if medians else None,
        "peak_memory_bytes": max(peaks) if peaks else None,
    }


def scaling_efficiency(aggregate_tokens_per_s: float | None, baseline_tokens_per_s: float | None,
                       nranks: int) -> float | None:
    """Aggregate / (n x one process): 1.0 is perfect linear scaling."""
    if not aggregate_tokens_per_s or not baseline_tokens_per_s or nranks < 1:
        return None
    return aggregate_tokens_per_s / (nranks * baseline_tokens_per_s)


def allreduce_block(*, device: str, strategy: str, nranks: int, grad_bytes: int, link_bandwidth: float | None,
                    interconnect_efficiency: float | None, copy_bandwidth: float | None, measured_s: float | None,
                    step_time_s: float | None, single_step_time_s: float | None,
                    estimator_dp_comm_s: float | None, link_kind: str = "nvlink") -> dict[str, Any]:
    """Predicted gradient all-reduce beside the measured step-time difference and a bare all-reduce."""
    bandwidth, source = allreduce_bandwidth(device, link_bandwidth, interconnect_efficiency, copy_bandwidth,
                                            link_kind)
    volume = ZERO3_COMM_FACTOR if strategy == "fsdp" else 1.0
    formula = "ring: 2(n-1)/n x gradient bytes / bandwidth + 2(n-1) x latency"
    if strategy == "fsdp":
        formula += (f"; FSDP (ZeRO-3) moves {ZERO3_COMM_FACTOR} x that volume: parameters all-gathered in "
                    "forward and backward, gradients reduce-scattered")
    overhead = step_time_s - single_step_time_s if step_time_s and single_step_time_s else None
    note = ("overhead = distributed step time - single-process step time: the exposed communication plus "
            "the wrapper's own work (DDP overlaps the all-reduce with backward)")
    if overhead is not None and overhead < 0:  # no communication costs less than none: timing noise
        overhead = None
        note += ("; not shown: the distributed step measured faster than one process alone, which only noise "
                 "(a busy machine, a warmer cache) explains")
    return {
        "grad_bytes": grad_bytes, "bandwidth": bandwidth, "bandwidth_source": source, "formula": formula,
        "latency_s": COLLECTIVE_LATENCY_S,
        "predicted_s": ring_all_reduce_s(grad_bytes * volume, nranks, bandwidth),
        "estimator_dp_comm_s": estimator_dp_comm_s,
        "measured_allreduce_s": measured_s,
        "step_time_overhead_s": overhead,
        "note": note,
    }


def distributed_summary(*, config: dict[str, Any], device: dict[str, Any], prediction: dict[str, Any],
                  per_rank: Sequence[dict[str, Any]], baseline: dict[str, Any] | None, rank0: dict[str, Any],
                  allreduce: dict[str, Any], strategy: str, backend: str, run_id: str,
                  threads_per_rank: int | None, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """The ``mfutop profile --nproc N --json`` object.

    ``rank0`` holds rank 0's own facts: params, batch_size (per rank),
    seq_len, steps, warmup_steps, step_time_relative_spread, loss_first,
    loss_last, peak_flops, peak_dtype, memory_method.
    """
    ranks = sorted(per_rank, key=lambda r: r["rank"])
    world = len(ranks)
    agg = aggregate_ranks(ranks)
    flops = lookup(prediction, "flops.total")  # one rank's micro-batch, forward + backward
    peak = rank0.get("peak_flops")
    step = agg["step_time_s"]
    measured = {
        "params": rank0.get("params"), "flops_analytic": flops, "flops_thop": None, "flops_counter": None,
        "batch_size": rank0.get("batch_size"), "seq_len": rank0.get("seq_len"),
        "tokens_per_step": rank0["batch_size"] * rank0["seq_len"] * world,
        "steps": rank0.get("steps"), "warmup_steps": rank0.get("warmup_steps"),
        "step_time_s": step, "step_time_relative_spread": rank0.get("step_time_relative_spread"),
        "tokens_per_s": agg["tokens_per_s"],
        "achieved_flops_per_s": flops * world / step if flops and step else None,
        "mfu": mfu(flops, step, peak),  # per rank = of the whole job
        "peak_flops": peak, "peak_dtype": rank0.get("peak_dtype"),
        "peak_memory_bytes": agg["peak_memory_bytes"],
        "memory_reserved_bytes": max((r.get("rss_bytes") or 0 for r in ranks), default=None) or None,
        "memory_method": rank0.get("memory_method"),
        "loss_first": rank0.get("loss_first"), "loss_last": rank0.get("loss_last"),
        "max_batch_size": None,
    }
    rows = compare_rows(prediction, measured)
    distributed = {
        "nproc": world, "backend": backend, "strategy": strategy, "run_id": run_id,
        "threads_per_rank": threads_per_rank,
        "per_rank": ranks,
        "aggregate": agg,
        "aggregate_rule": "all ranks' timed tokens / the slowest rank's steady-state time (median step x steps)",
        "baseline": baseline,
        "scaling_efficiency": scaling_efficiency(agg["tokens_per_s"], (baseline or {}).get("tokens_per_s"), world),
        "allreduce": allreduce,
        "memory": {
            "predicted_per_rank_bytes": lookup(prediction, "memory.total"),
            "predicted_setup": f"dp={world}, zero={3 if strategy == 'fsdp' else 0}",
            "measured_per_rank_bytes": [r.get("peak_memory_bytes") for r in ranks],
        },
    }
    return {"config": config, "device": device, "prediction": prediction, "measured": measured, "search": None,
            "errors": errors_by_key(rows), "compare": rows, "warnings": list(warnings), "distributed": distributed}


def describe_distributed(summary: dict[str, Any]) -> list[str]:
    """The distributed figures as text lines, for ``mfutop profile --nproc N``'s table output."""
    from estimator.units import fmt_bytes, fmt_pct, fmt_seconds

    d = summary.get("distributed")
    if not d:
        return []
    lines = [f"{d['nproc']} ranks ({d['strategy'].upper()}, {d['backend']}): {summary['measured']['tokens_per_s']:,.0f} "
             f"tok/s aggregate ({d['aggregate_rule']}); slowest rank {d['aggregate']['slowest_rank']}"]
    for r in d["per_rank"]:
        lines.append(f"  rank {r['rank']} ({r['host']}, {r['device']}): {r['tokens_per_s']:,.0f} tok/s, step "
                     f"{fmt_seconds(r['step_time_s'])}, peak {fmt_bytes(r['peak_memory_bytes'])}")
    base = d.get("baseline")
    if base:
        eff = d.get("scaling_efficiency")
        lines.append(f"one process: {base['tokens_per_s']:,.0f} tok/s ({base['source']}); scaling efficiency "
                     f"{fmt_pct(eff) if eff is not None else 'n/a'}")
    ar = d["allreduce"]
    lines.append(f"gradient all-reduce of {fmt_bytes(ar['grad_bytes'])}: predicted {fmt_seconds(ar['predicted_s'])}, "
                 f"bare all-reduce measured {fmt_seconds(ar['measured_allreduce_s'])}, step-time overhead "
                 f"{fmt_seconds(ar['step_time_overhead_s'])} ({ar['bandwidth_source']})")
    mem = d["memory"]
    lines.append(f"memory per rank: predicted {fmt_bytes(mem['predicted_per_rank_bytes'])} ({mem['predicted_setup']}), "
                 f"measured {', '.join(fmt_bytes(m) for m in mem['measured_per_rank_bytes'])}")
    return lines
