"""`mfutop estimate`'s rich output: one screen (50 lines at 100 columns), `--explain` readable."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console
from typer.testing import CliRunner

from estimator.units import fmt_flops, fmt_pct, fmt_seconds, fmt_si
from tui.cli import app
from tui.estimate_view import print_estimate, readable

SCREEN_LINES = 50


def _prediction(*args: str) -> dict:
    """What `estimate` hands the view (verdict and fit change included), read back from its JSON."""
    result = CliRunner().invoke(app, ["estimate", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _render(r: dict, explain: bool = False) -> list[str]:
    console = Console(width=100, record=True, file=io.StringIO())
    print_estimate(r, console, explain=explain)
    return [line.rstrip() for line in console.export_text().splitlines()]


def _row(lines: list[str], label: str) -> list[str]:
    """The cells of the first line starting with ``label`` (cells are 2+ spaces apart)."""
    line = next(line for line in lines if line.startswith(label))
    return re.split(r"\s{2,}", line.strip())


def test_train_fits_one_screen_with_its_figures():
    r = _prediction("--model", "gpt2")
    lines = _render(r)
    assert len(lines) <= SCREEN_LINES
    assert lines[0].startswith("gpt2 on NVIDIA H100 SXM5 80GB - train, batch 1 x seq 1024, bf16-mixed")
    assert _row(lines, "total")[1] == "124,439,808"
    assert _row(lines, "forward") == ["forward", fmt_flops(r["flops"]["forward"]), "291,648,307,200"]
    label, value = _row(lines, "step time")
    assert label == "step time (datasheet)" and value.startswith(f"{fmt_seconds(r['step']['time_s'])} (")
    assert f"{r['step']['bound']['layer']}-" in value and value.endswith("-bound)")
    assert _row(lines, "tokens/s")[1] == fmt_si(r["step"]["tokens_per_s"], " tok/s")
    mfu = _row(lines, "MFU")[1]
    assert mfu == f"{fmt_pct(r['step']['mfu'])} ({fmt_pct(r['step']['mfu_causal'])}, {fmt_pct(r['step']['hfu'])})"
    assert "Memory per GPU (GiB = 2^30 B): fits" in lines
    assert _row(lines, "largest batch that fits")[1] == f"{r['max_batch_size']:,}"
    assert not any(line.startswith("Assumptions") for line in lines)


def test_time_and_cost_to_train_when_tokens_are_given():
    r = _prediction("--model", "gpt2", "--tokens", "10B", "--gpu-hour-cost", "2")
    lines = _render(r)
    assert len(lines) <= SCREEN_LINES
    train = r["train"]
    assert _row(lines, "train 10.00 G tokens")[1] == f"{fmt_seconds(train['time_s'])} ({train['steps']:,} steps)"
    assert _row(lines, "  GPU-hours / cost")[1] == f"{train['gpu_hours']:,.1f} / ${train['cost']:,.2f}"


def test_infer_fits_one_screen_without_the_training_flops():
    r = _prediction("--model", "gpt2", "--mode", "infer")
    lines = _render(r)
    assert len(lines) <= SCREEN_LINES
    text = "\n".join(lines)
    assert "FLOPs (batch" not in text and "backward (2 x forward)" not in text and "MFU" not in text
    assert _row(lines, "prefill (512 tokens)")[1:] == [fmt_flops(r["flops"]["infer_prefill"]),
                                                       fmt_seconds(r["prefill"]["time_s"]),
                                                       fmt_si(r["prefill"]["tokens_per_s"], " tok/s"), "memory"]
    decode = _row(lines, "decode per token")
    assert decode[1] == fmt_flops(r["flops"]["infer_decode_per_step"])
    assert decode[3] == fmt_si(r["decode"]["tokens_per_s"], " tok/s")
    assert _row(lines, "latency (128 generated)")[1] == fmt_seconds(r["latency_s"])
    assert _row(lines, "kv cache")[2] == f"{r['memory']['kv_cache']:,}"


def test_a_setup_that_does_not_fit_says_its_verdict_and_change_on_the_screen():
    r = _prediction("--model", "llama-2-70b", "--gpu", "a100-sxm-80gb")
    lines = _render(r)
    assert len(lines) <= SCREEN_LINES
    assert lines[1] == "llama-2-70b does not fit at batch 1: needs 1,029.33 GiB, limit 75.50 GiB"
    assert lines[2].startswith("nothing fits on 1 GPUs") and "count that fits is" in lines[2] + lines[3]
    assert r["fit_change"]["summary"] in " ".join(lines[2:4]).replace("  ", " ")
    assert not any(line.startswith("! batch 1 does not fit") for line in lines)  # the verdict already says it
    assert "Memory per GPU (GiB = 2^30 B): does not fit" in lines
    assert _row(lines, "largest batch that fits")[1] == "none"


def test_the_smallest_change_that_fits_is_named_with_its_flags():
    r = _prediction("--model", "llama-2-7b", "--gpu", "a100-sxm-80gb", "--dp", "2")
    lines = _render(r)
    assert len(lines) <= SCREEN_LINES
    assert r["fit_change"]["flags"] == ["--zero", "3"]
    assert f"smallest change that fits: {r['fit_change']['summary']}" in lines


def test_explain_adds_every_assumption_readably():
    r = _prediction("--model", "gpt2")
    screen, explained = _render(r), _render(r, explain=True)
    assert explained[:len(screen)] == screen
    tail = explained[len(screen):]
    text = "\n".join(tail)
    assert tail[1] == "Assumptions"
    # no pointer into our own reference files (a public source's path, e.g. a README.md on GitHub, is a citation)
    assert not any(doc in text for doc in ("formulas.md", "gpu-specs.md", "DESIGN.md", "reference/", "§"))
    assert "{" not in text and '"' not in text  # no JSON blob
    groups = {key.rpartition(".")[0] for key in r["assumptions"]} - {""}
    assert {line.strip() for line in tail} >= groups
    assert "tuning.cc" in _row(tail, "  model")[1]  # comm.model: NCCL's own cost model, cited
    assert _row(tail, "  intra node bandwidth")[1] == "450.00 GB/s"
    assert _row(tail, "precision")[1] == "name: bf16-mixed"
    assert "H100 whitepaper v1.04" in _row(tail, "gpu figures")[1]


def test_readable_names_the_formula_not_the_file():
    assert readable("7.5 µs (formulas.md §4.1: kernel ~5 µs)") == "7.5 µs (roofline per op: kernel ~5 µs)"
    assert readable("NCCL, formulas.md §4.3") == "NCCL, ring collectives (NCCL)"
    assert readable("H100-DS; SMI 81,559 MiB; via reference/gpu-specs.md") == "H100 datasheet; nvidia-smi 81,559 MiB"
    assert readable("derived: gpu-specs.md section 5, Ampere") == "derived: per-architecture FLOPs/clock/SM, Ampere"
    assert readable("memory 85520809984 B minus 5%") == "memory 85,520,809,984 B minus 5%"


def test_outside_names_stay_plain_text():
    """A model name from a config.json is printed as it is, its brackets not read as markup."""
    r = _prediction("--model", "gpt2")
    r["model"]["name"] = "[bold red]x[/] [@click=app.quit]"
    lines = _render(r)
    assert lines[0].startswith("[bold red]x[/] [@click=app.quit] on NVIDIA H100 SXM5 80GB")


def test_dense_first_layers_get_their_own_parameter_row():
    """DeepSeek-V3: 3 dense blocks then 58 MoE blocks; the rows add up to the total the JSON gives."""
    from pathlib import Path

    config = Path(__file__).parent / "data" / "deepseek-v3.config.json"
    r = _prediction("--hf-config", str(config), "--gpu", "h100-sxm", "--tp", "8", "--pp", "16", "--ep", "8",
                    "--dp", "8", "-T", "4096")
    lines = _render(r)
    assert lines[0].startswith("deepseek-v3 on NVIDIA H100")  # named from the file, not its folder
    b = r["params"]["breakdown"]
    dense = _row(lines, "3 dense blocks")
    moe = _row(lines, "58 MoE blocks")
    assert dense[1] == f"{3 * b['dense_block']:,}" and moe[1] == f"{58 * b['block']:,}"
    assert 3 * b["dense_block"] + 58 * b["block"] == b["transformer"]
