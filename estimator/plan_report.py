"""A planner row from a full ``predict()``: the figures, the `mfutop estimate` command line, the winner's reason.

Every figure in a row is read from the prediction dict, never recomputed, so a
row and `mfutop estimate --json` run with its command line agree exactly.
"""

from __future__ import annotations

import shlex

from estimator.setup import TrainSetup
from estimator.units import fmt_bytes

# The step-time breakdown terms that add up to step.time_s, and what to call them in a sentence.
STEP_TERMS = {
    "forward_s": "forward compute",
    "backward_s": "backward compute",
    "recompute_s": "recomputation",
    "tp_comm_s": "TP all-reduces",
    "cp_comm_s": "CP K/V exchange",
    "ep_comm_s": "expert all-to-all",
    "op_overhead_s": "exposed host overhead",
    "pp_bubble_s": "pipeline bubble",
    "pp_p2p_s": "pipeline sends",
    "dp_exposed_s": "exposed DP gradient all-reduce",
    "optimizer_s": "optimizer step",
}
EXPOSED_COMM_TERMS = ("tp_comm_s", "cp_comm_s", "ep_comm_s", "pp_p2p_s", "dp_exposed_s")  # not hidden behind compute in the model
SETUP_FIELDS = ("tp", "cp", "pp", "vpp", "dp", "ep", "sp", "zero", "recompute", "precision", "flash_attention",
                "batch_size", "grad_accum")


def estimate_argv(model_flags: tuple[str, ...], gpu: str, setup: TrainSetup, seq_len: int,
                  tokens: int | None, gpu_hour_cost: float | None, memory_limit_bytes: int | None) -> list[str]:
    """The `mfutop estimate` arguments that reproduce ``setup`` (efficiencies at their defaults)."""
    argv = ["mfutop", "estimate", *model_flags, "--gpu", gpu, "--seq-len", str(seq_len),
            "--batch-size", str(setup.batch_size), "--grad-accum", str(setup.grad_accum),
            "--dp", str(setup.dp), "--tp", str(setup.tp), "--pp", str(setup.pp)]
    if setup.sp:
        argv.append("--sp")
    if setup.cp > 1:
        argv += ["--cp", str(setup.cp)]
    if setup.vpp > 1:
        argv += ["--vpp", str(setup.vpp)]
    if setup.ep > 1:
        argv += ["--ep", str(setup.ep)]
    argv += ["--zero", str(setup.zero), "--recompute", setup.recompute, "--precision", setup.precision]
    if not setup.flash_attention:
        argv.append("--no-flash-attention")
    if tokens is not None:
        argv += ["--tokens", str(tokens)]
    if gpu_hour_cost is not None:
        argv += ["--gpu-hour-cost", repr(float(gpu_hour_cost))]
    if memory_limit_bytes is not None:
        argv += ["--memory-limit", str(memory_limit_bytes)]
    return argv


def plan_row(prediction: dict, argv: list[str] | None) -> dict:
    """The figures a plan shows for one setup, all read from ``prediction``."""
    setup, mem, step = prediction["setup"], prediction["memory"], prediction["step"]
    br = step["breakdown"]
    train = prediction.get("train") or {}
    return {
        "setup": {k: setup[k] for k in SETUP_FIELDS},
        "gpus": setup["world_size"],
        "seq_len": setup["seq_len"],
        "global_batch": setup["batch_size"] * setup["grad_accum"] * setup["dp"],
        "global_batch_tokens": step["tokens_per_step"],
        "memory_bytes": mem["total"],
        "memory_limit_bytes": mem["limit"],
        "fits": mem["fits"],
        "step_time_s": step["time_s"],
        "tokens_per_s": step["tokens_per_s"],
        "tokens_per_s_per_gpu": step["tokens_per_s_per_gpu"],
        "mfu": step["mfu"],
        "pp_bubble_s": br["pp_bubble_s"],
        "pp_bubble_fraction": br["pp_bubble_s"] / step["time_s"],
        "exposed_comm_s": sum(br[k] for k in EXPOSED_COMM_TERMS),
        "train_time_s": train.get("time_s"),
        "gpu_hours": train.get("gpu_hours"),
        "cost": train.get("cost"),
        "breakdown": {k: br[k] for k in STEP_TERMS},
        "command": shlex.join(argv) if argv else None,
        "argv": argv,
        "warnings": list(prediction.get("warnings", [])),
    }


def label(setup: dict) -> str:
    """'TP8+SP PP2 DP64 Z1 selective bf16-master 2x4': a setup in one short line
    (ZeRO stage, recompute, precision, micro-batch x gradient accumulation)."""
    parts = [f"TP{setup['tp']}" + ("+SP" if setup["sp"] else "")]
    if setup["cp"] > 1:
        parts.append(f"CP{setup['cp']}")
    parts += [f"PP{setup['pp']}" + (f"x{setup['vpp']}v" if setup["vpp"] > 1 else ""), f"DP{setup['dp']}"]
    if setup["ep"] > 1:
        parts.append(f"EP{setup['ep']}")
    parts += [f"Z{setup['zero']}", setup["recompute"], setup["precision"]]
    if not setup["flash_attention"]:
        parts.append("no-flash")
    parts.append(f"{setup['batch_size']}x{setup['grad_accum']}")
    return " ".join(parts)


def _fmt_value(key: str, value: object) -> str:
    if key == "flash_attention":
        return "flash" if value else "no flash"
    if key == "sp":
        return "SP" if value else "no SP"
    names = {"tp": "TP", "cp": "CP", "pp": "PP", "vpp": "virtual stages ", "dp": "DP", "ep": "EP", "zero": "ZeRO-", "batch_size": "micro-batch ",
             "grad_accum": "grad-accum "}
    return f"{names.get(key, '')}{value}"


def winner_reason(best: dict, runner: dict) -> str:
    """One line: the setup difference and the step-time term that differs most between the two rows
    (the runner-up's terms scaled to the winner's tokens per step when their batches differ)."""
    scale = best["global_batch_tokens"] / runner["global_batch_tokens"]
    diffs = {k: runner["breakdown"][k] * scale - best["breakdown"][k] for k in STEP_TERMS}
    gain, loss = max(diffs, key=diffs.get), min(diffs, key=diffs.get)
    changed = [k for k in SETUP_FIELDS if best["setup"][k] != runner["setup"][k]]
    what = ", ".join(f"{_fmt_value(k, best['setup'][k])} vs {_fmt_value(k, runner['setup'][k])}"
                     for k in changed) or "same setup"
    ahead = runner["step_time_s"] * scale / best["step_time_s"] - 1
    if ahead == 0:
        return (f"ties with #2 ({what}) on step time and needs {fmt_bytes(best['memory_bytes'])} per GPU "
                f"where #2 needs {fmt_bytes(runner['memory_bytes'])}")
    per = "per step" if scale == 1 else "per step at the winner's batch"
    text = (f"{ahead:.1%} faster than #2 ({what}): {STEP_TERMS[gain]} {best['breakdown'][gain]:.4g} s vs "
            f"{runner['breakdown'][gain] * scale:.4g} s {per}, the term that differs most")
    if diffs[loss] < 0 and -diffs[loss] > 0.1 * diffs[gain]:
        text += (f"; it pays {-diffs[loss]:.3g} s more in {STEP_TERMS[loss]}")
    return text
