"""`mfutop estimate`: JSON figures, human tables, one-line errors with exit 2, no torch import."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from estimator.units import fmt_si
from tui.cli import app

runner = CliRunner()


def _json(*args: str) -> dict:
    result = runner.invoke(app, ["estimate", *args, "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_nanogpt_json_reference_figures():
    r = _json("--model", "nanogpt-124m", "--seq-len", "1024", "--batch-size", "1")
    assert r["params"]["total"] == 124_337_664
    assert r["flops"]["forward"] == 291_648_307_200
    assert r["flops"]["palm_total"] == 875_062_886_400
    assert r["hardware"]["key"] == "h100-sxm"
    assert r["warnings"][0] == "no --gpu given: assuming h100-sxm (NVIDIA H100 SXM5 80GB)"


def test_llm_analysis_style_aliases_and_auto_batch():
    ours = _json("--model", "gpt2", "--gpu", "a100-80gb", "--tp", "2", "--dp", "4", "--zero", "1",
                 "--tokens", "1B", "--gpu-hour-cost", "2")
    theirs = _json("--model-name", "gpt2", "--gpu-name", "a100-80gb", "--tp-size", "2", "--dp-size", "4",
                   "--ds-zero", "1", "--total-num-tokens", "1e9", "--cost-per-gpu-hour", "2")
    assert ours == theirs
    assert ours["train"]["tokens"] == 10**9 and ours["train"]["cost"] > 0
    auto = _json("--model", "gpt2", "--gpu", "a100-80gb", "--batch-size", "auto", "--recompute", "2")
    assert auto["setup"]["batch_size"] == auto["max_batch_size"] > 1
    assert auto["setup"]["recompute"] == "full"


def test_custom_shape_and_infer_mode():
    r = _json("--model", "gpt2", "--layers", "4", "--d-model", "256", "--heads", "8", "--vocab", "1000",
              "--mode", "infer", "--prompt-len", "100", "--gen-len", "20", "--weight-bits", "8")
    assert r["model"]["n_layers"] == 4 and r["model"]["name"] == "gpt2-custom"
    assert r["memory"]["kv_cache"] == 2 * 4 * 1 * 120 * 256 * 2
    assert r["decode"]["tokens_per_s"] > 0


def test_hf_config(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8,
           "num_key_value_heads": 2, "intermediate_size": 1024, "vocab_size": 1000, "max_position_embeddings": 256}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    r = _json("--hf-config", str(path), "--seq-len", "128")
    assert r["model"]["mlp"] == "swiglu" and r["model"]["n_kv_heads"] == 2


def test_human_output_has_the_tables():
    args = ["estimate", "--model", "gpt2", "--gpu", "a100-80gb", "--batch-size", "8", "--tokens", "1B",
            "--gpu-hour-cost", "1.5"]
    result = runner.invoke(app, args, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.stderr
    r = _json(*args[1:])
    for title in ("Parameters", "FLOPs", "Memory per GPU", "Time", "MFU", "124,439,808", "largest batch that fits",
                  f"{r['max_batch_size']:,}", "train 1.00 G tokens", f"${r['train']['cost']:,.2f}"):
        assert title in result.stdout
    assert "Assumptions" not in result.stdout and len(result.stdout.splitlines()) <= 50


def test_explain_adds_the_assumptions_as_text():
    plain = runner.invoke(app, ["estimate", "--model", "gpt2"], env={"COLUMNS": "100"})
    result = runner.invoke(app, ["estimate", "--model", "gpt2", "--explain"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(plain.stdout)  # the same screen, the assumptions after it
    tail = result.stdout[len(plain.stdout):]
    assert tail.lstrip().startswith("Assumptions")
    rows = [re.split(r"\s{2,}", line.strip()) for line in tail.splitlines()]
    assert ["efficiency"] in rows and ["memory", "0.8"] in rows  # efficiency.memory, under its group
    assert ["precision", "name: bf16-mixed"] in rows and ["matmul dtype: bf16"] in rows  # a nested value
    assert "formulas.md" not in tail and "gpu-specs.md" not in tail and "{" not in tail
    text = " ".join(" ".join(row) for row in rows)
    assert "7.5 µs per dispatched op (roofline per op, kernel launch ~5–10 µs for small ops)" in text


def test_human_output_infer_and_unknown_peak():
    result = runner.invoke(app, ["estimate", "--model", "gpt2", "--gpu", "t4", "--mode", "infer"])
    assert result.exit_code == 0, result.stderr
    r = _json("--model", "gpt2", "--gpu", "t4", "--mode", "infer")
    decode = next(line for line in result.stdout.splitlines() if line.startswith("decode per token"))
    assert fmt_si(r["decode"]["tokens_per_s"], " tok/s") in decode and "KV cache per token" in result.stdout
    train = runner.invoke(app, ["estimate", "--model", "gpt2", "--gpu", "t4", "--seq-len", "256"])
    assert "MFU n/a (unknown peak; --peak-tflops)" in train.stdout
    fixed = _json("--model", "gpt2", "--gpu", "t4", "--seq-len", "256", "--peak-tflops", "65")
    assert fixed["step"]["mfu"] is not None and fixed["hardware"]["peak_flops"] == 65e12


@pytest.mark.parametrize("args,needle", [
    (["--model", "gpt3"], "unknown model 'gpt3'; did you mean: gpt2"),
    (["--gpu", "h1000"], "unknown GPU 'h1000'; did you mean: h100"),
    (["--d-model", "770"], "heads (12) must divide the width d_model (770)"),
    (["--batch-size", "0"], "batch-size must be a positive integer"),
    (["--tokens", "-5"], "must be positive"),
    (["--seq-len", "2048"], "seq-len 2048 exceeds gpt2's context length 1024"),
    (["--memory-limit", "40XB"], "cannot read '40XB' as a size"),
    (["--tp", "5"], "tp (5) must divide the attention heads (12)"),
    (["--precision", "fp64"], "unknown precision 'fp64'"),
    (["--mode", "infer", "--weight-bits", "3"], "weight-bits must be one of"),
    (["--peak-tflops", "0"], "peak-tflops must be a positive"),
    (["--hf-config", "/nonexistent/config.json"], "no config.json at"),
    (["--model", "llama-2-7b", "--pp", "4", "--vpp", "3"],
     "vpp (3) must divide the layers per pipeline stage: 32 layers / pp 4 = 8 per stage"),
    (["--model", "llama-2-7b", "--vpp", "2"], "--vpp 2 (interleaved 1F1B) needs pipeline parallel"),
    (["--model", "llama-2-7b", "--cp", "3", "--seq-len", "4096"],
     "cp (3) needs a sequence divisible by 2 x cp = 6 (load-balanced ring attention); seq-len 4096 is not"),
    (["--model", "gpt2", "--gpu", "a100-sxm-80gb", "--precision", "fp8"], "NVIDIA A100 SXM4 80GB has no fp8 peak"),
    (["--dropout", "1"], "dropout must be a probability in [0, 1)"),
    (["--dp", "8", "--global-batch-size", "12"], "global batch 12 sequences is not a multiple of micro-batch x dp"),
    (["--dp", "8", "--global-batch-size", "4"], "smaller than dp (8)"),
    (["--global-batch-size", "8", "--grad-accum", "2"], "the global batch sets grad-accum"),
    (["--global-batch-size", "8", "--global-batch-tokens", "8k"], "not both"),
    (["--global-batch-tokens", "lots"], "cannot read 'lots' as a global batch token count"),
])
def test_bad_input_one_line_exit_2(args, needle):
    result = runner.invoke(app, ["estimate", *args])
    assert result.exit_code == 2
    err = result.stderr
    assert err.startswith("mfutop: error: ") and err.count("\n") == 1
    assert needle in err
    assert "Traceback" not in err + result.stdout
    assert result.stdout == ""


def test_cli_estimate_imports_no_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from tui.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['estimate', '--model', 'gpt2', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(app, ['estimate', '--model', 'llama-3-8b', '--tp', '8', '--mode', 'infer'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'thop', 'pynvml') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_memory_table_shows_the_peak_phase_terms_that_add_up():
    """Training: the 'at peak' column is memory.at_peak (its bytes sum to the total), the old sum beside it."""
    import io

    from rich.console import Console

    from estimator.units import fmt_bytes
    from tui.estimate_view import memory_table

    r = _json("--model", "gpt2", "--gpu", "h100", "--batch-size", "8")
    m = r["memory"]
    out = io.StringIO()
    Console(file=out, width=110).print(memory_table(r))
    text = out.getvalue()
    assert m["peak_phase"] == "loss_backward"
    cells = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()[3:]]  # title, header, rule
    rows = {row[0]: row[1:] for row in cells if len(row) > 1}
    at_peak_bytes = [int(cells[1].replace(",", "")) for name, cells in rows.items()
                     if name not in ("total", "limit", "largest batch that fits")]
    assert sum(at_peak_bytes) == m["total"] == sum(m["at_peak"].values())
    assert text.splitlines()[1].split()[:5] == ["term", "at", "peak", "(loss", "backward)"]
    assert rows["gradients"] == ["0", "0", fmt_bytes(m["gradients"])]  # no gradient exists in the loss backward
    assert rows["logits"][1] == f"{m['at_peak']['logit_buffers']:,}"
    assert rows["total"][1:] == [f"{m['total']:,}", fmt_bytes(m["sum_of_terms"])]
    assert rows["largest batch that fits"] == [f"{r['max_batch_size']:,}"]
    assert "at peak: alive at the peak phase, adds up to the total; all at once: every term" in text


def test_meaningless_combinations_are_said_and_empty_names_refused():
    zero = json.loads(runner.invoke(app, ["estimate", "--model", "gpt2", "--zero", "3", "--json"]).stdout)
    assert any("with dp 1 it changes nothing" in w for w in zero["warnings"])
    infer = json.loads(runner.invoke(app, ["estimate", "--model", "gpt2", "--mode", "infer", "--recompute", "full",
                                           "--json"]).stdout)
    assert any("do not apply in inference mode" in w for w in infer["warnings"])
    for flag in ("--model", "--gpu"):
        result = runner.invoke(app, ["estimate", flag, ""])
        assert result.exit_code == 2 and f"{flag} is empty" in result.stderr


def test_a_setup_that_does_not_fit_is_an_answer_with_its_verdict():
    """issue 15: the full estimate, fits false, the verdict and the smallest change that fits; exit 0."""
    result = runner.invoke(app, ["estimate", "--model", "llama-2-70b", "--gpu", "a100", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["fits"] is False and r["params"]["total"] == 68_976_648_192
    assert r["memory"]["total"] > r["memory"]["limit"]
    assert r["verdict"].startswith("llama-2-70b does not fit at batch 1: needs 1,029.33 GiB")
    assert "smallest GPU count that fits is 16" in r["verdict"] and r["fit_change"]["smallest_gpus"] == 16
    infer = json.loads(runner.invoke(app, ["estimate", "--model", "llama-2-70b", "--gpu", "t4", "--mode", "infer",
                                           "--json"]).stdout)
    assert infer["fits"] is False and "does not fit at batch 1" in infer["verdict"]
    assert "--weight-bits 8 or 4" in infer["verdict"] and "--zero" not in infer["verdict"]  # inference's levers
    fits = json.loads(runner.invoke(app, ["estimate", "--model", "gpt2", "--json"]).stdout)
    assert fits["fits"] is True and "verdict" not in fits


def test_a_short_gpu_alias_says_which_row_it_picked():
    data = _json("--model", "gpt2", "--gpu", "a100")
    assert data["assumptions"]["gpu"] == "a100-sxm-80gb"
    assert data["gpu_note"].startswith("a100 -> NVIDIA A100 SXM4 80GB (also: ")
    assert "a100-pcie-40gb" in data["gpu_note"]
    assert _json("--model", "gpt2", "--gpu", "a100-sxm-40gb")["gpu_note"] is None
    rich = runner.invoke(app, ["estimate", "--model", "gpt2", "--gpu", "a100"], env={"COLUMNS": "100"})
    assert rich.exit_code == 0 and "a100 -> NVIDIA A100 SXM4 80GB" in rich.stderr


def test_parallel_flags_reach_the_setup_and_the_header():
    """--vpp/--cp/--dropout/--precision fp8 and a global batch in tokens: the setup, the derived grad-accum
    (4M tokens / 4096 = 976.6 sequences -> the multiple of micro-batch 1 x dp 8 nearest it, 976 = 8 x 122)."""
    args = ("--model", "llama-2-7b", "--gpu", "h100-sxm", "--seq-len", "4096", "--dp", "8", "--pp", "4", "--vpp", "2",
            "--cp", "2", "--dropout", "0.1", "--precision", "fp8", "--global-batch-tokens", "4M")
    r = _json(*args)
    s = r["setup"]
    assert (s["vpp"], s["cp"], s["dropout"], s["precision"], s["grad_accum"]) == (2, 2, 0.1, "fp8", 122)
    assert r["hardware"]["peak_dtype"] == "fp8" and "fp8 dense peak" in r["assumptions"]["mfu.peak"]
    assert r["memory"]["breakdown"]["model_chunks_in_flight"] == 11  # pp·vpp + pp − 1
    human = runner.invoke(app, ["estimate", *args], env={"COLUMNS": "200"})
    assert human.exit_code == 0, human.stderr
    assert "x accum 122, fp8" in human.stdout and "pp=4 vpp=2 cp=2" in human.stdout and "dropout 0.1" in human.stdout
    assert "MFU vs the fp8 peak (causal-halved count, HFU)" in human.stdout


def test_global_batch_in_sequences_and_auto_micro_batch():
    r = _json("--model", "gpt2", "--gpu", "a100-80gb", "--dp", "4", "--batch-size", "2", "--global-batch-size", "64")
    assert r["setup"]["grad_accum"] == 64 // (2 * 4)
    auto = _json("--model", "gpt2", "--gpu", "a100-80gb", "--dp", "4", "--batch-size", "auto",
                 "--global-batch-size", "96")
    b = auto["setup"]["batch_size"]
    assert 96 % (b * 4) == 0 and auto["setup"]["grad_accum"] == 96 // (b * 4) and b <= auto["max_batch_size"]
