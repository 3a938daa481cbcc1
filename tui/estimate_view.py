"""Rich output of `mfutop estimate`: one screen of compact tables; ``--explain`` adds the assumptions.

Reads only the ``predict()`` dict, so the JSON and the tables cannot disagree. The default output must
fit one screen (50 lines at 100 columns for a preset): one row per figure a user acts on, the
cross-checks beside it; the reasoning behind the figures is ``--explain``'s. Units are said: GiB (2^30)
for memory, decimal prefixes for FLOPs and rates. Outside text (names, sources) is plain text.
"""

from __future__ import annotations

import re
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from estimator.units import fmt_bytes, fmt_flops, fmt_pct, fmt_rate, fmt_seconds, fmt_si
from tui.plain_text import join, plain

LONG_TEXT = 2000  # an assumption or a verdict: a sentence or two, never cut mid-thought at 200


def _table(title: str | Text, *columns: str, caption: str | None = None, unnamed: int = 3) -> Table:
    """A borderless table: a title line, a header line only when the columns need naming, then rows
    (``unnamed`` columns when none is named)."""
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, show_edge=False,
                  show_header=bool(columns), header_style="bold", pad_edge=False, caption=caption,
                  caption_justify="left")
    for i, name in enumerate(columns or ("",) * unnamed):
        table.add_column(name, justify="left" if i == 0 else "right")
    return table


def _count(n: float | None) -> str:
    return "n/a" if n is None else f"{n:,.0f}"


def params_table(r: dict) -> Table:
    p, b, layers = r["params"], r["params"]["breakdown"], r["model"]["n_layers"]
    t = _table("Parameters")
    dense = r["model"].get("dense_layers") or 0 if b.get("dense_block") else 0  # DeepSeek's dense first layers
    kind = "MoE blocks" if dense else "blocks"
    rows = [("token embedding", b.get("embedding/token")), ("position embedding", b.get("embedding/position"))]
    if dense:
        rows.append((f"{dense} dense blocks x {b['dense_block']:,}", dense * b["dense_block"]))
    rows.append((f"{layers - dense} {kind} x {b['block']:,} (attention {b['attention']:,}, MLP {b['mlp']:,})",
                 (layers - dense) * b["block"]))
    rows += [("final norm", b.get("ln_f")), ("LM head (untied)", b.get("dense"))]
    for label, value in rows:
        if value:
            t.add_row(label, _count(value), fmt_pct(value / p["total"]))
    t.add_row("[bold]total[/]", f"[bold]{_count(p['total'])}[/]", "")
    t.add_row("non-embedding", _count(p["non_embedding"]), "")
    if p["active"] != p["total"]:
        t.add_row("active per token", _count(p["active"]), fmt_pct(p["active"] / p["total"]))
    return t


def flops_table(r: dict) -> Table:
    """Training FLOPs of one micro-batch, the published closed forms beside them as cross-checks."""
    f, s = r["flops"], r["setup"]
    t = _table(f"FLOPs (batch {f['batch_size']} x seq {f['seq_len']}, whole model)")
    for key, label in (("forward", "forward"), ("backward", "backward (2 x forward)"), ("total", "[bold]total[/]"),
                       ("recompute", "recompute (HFU only)"), ("palm_total", "PaLM 6N + 12LHQT (cross-check)"),
                       ("megatron_total", "Megatron closed form (cross-check)"),
                       ("causal_total", "causal-halved attention (llm.c count)")):
        if key == "recompute" and not f[key]:
            continue
        t.add_row(label, fmt_flops(f[key]), _count(f[key]))
    t.add_row("per token", fmt_flops(f["per_token"]), "")
    if f["global_per_step"] != f["total"] or f["per_gpu_per_step"] != f["total"]:
        t.add_row(f"per step: global (x{s['grad_accum']} accum, x{s['dp']} dp) / per GPU",
                  f"{fmt_flops(f['global_per_step'])} / {fmt_flops(f['per_gpu_per_step'])}", "")
    return t


_MEMORY_TERMS = ("weights", "gradients", "optimizer", "activations", "logits", "weight_casts", "zero3_buffers",
                 "kv_cache")
# predict()'s ``memory.at_peak`` key for each term above (logits: the buffers alive at that phase),
# + the optimizer's / tied embedding's scratch, which only a phase has.
_AT_PEAK_KEYS = {"logits": "logit_buffers"}
_PHASE_NAMES = {"forward_end": "forward end", "loss_backward": "loss backward", "head_backward": "head backward",
                "backward_top": "top of backward", "backward_end": "end of backward",
                "optimizer_step": "optimizer step"}
_SCRATCH = {"optimizer_step": "AdamW sqrt(v) scratch", "backward_end": "tied embedding grad sum"}


def _size(n: int) -> str:
    return fmt_bytes(n) if n else "0"


def _memory_title(r: dict) -> Text:
    verdict = Text("fits", style="green") if r["memory"]["fits"] else Text("does not fit", style="bold red")
    return join(Text("Memory per GPU (GiB = 2^30 B): "), verdict, style="bold")


def _limit_rows(t: Table, r: dict, blanks: int) -> None:
    m, pad = r["memory"], ("",) * blanks
    t.add_row("limit", fmt_bytes(m["limit"]), _count(m["limit"]), *pad)
    batch = r.get("max_batch_size")
    t.add_row("largest batch that fits", _count(batch) if batch else "[red]none[/]", "", *pad)


def _phase_memory_table(r: dict) -> Table:
    """Training, phase-aware peak: the terms alive at the peak phase add up to the total;
    the every-term-at-once sum sits beside them."""
    m, at_peak = r["memory"], r["memory"]["at_peak"]
    phase = _PHASE_NAMES.get(m["peak_phase"], m["peak_phase"])
    t = _table(_memory_title(r), "term", f"at peak ({phase})", "bytes", "all at once",
               caption="at peak: alive at the peak phase, adds up to the total; all at once: every term")
    for key in _MEMORY_TERMS:
        now, every = at_peak.get(_AT_PEAK_KEYS.get(key, key), 0), m.get(key) or 0
        if now or every:
            t.add_row(key.replace("_", " "), _size(now), _count(now), _size(every))
    if at_peak.get("transient"):
        label = _SCRATCH.get(m["peak_phase"], "scratch")
        t.add_row(label, _size(at_peak["transient"]), _count(at_peak["transient"]), "-")
    t.add_row("[bold]total[/]", f"[bold]{fmt_bytes(m['total'])}[/]", _count(m["total"]), fmt_bytes(m["sum_of_terms"]))
    _limit_rows(t, r, 1)
    return t


def memory_table(r: dict) -> Table:
    m = r["memory"]
    if m.get("at_peak"):
        return _phase_memory_table(r)
    caption = "total = every term co-resident" if m.get("peak_model") == "sum" else None
    t = _table(_memory_title(r), "term", "size", "bytes", caption=caption)
    for key in _MEMORY_TERMS:
        if m.get(key):
            t.add_row(key.replace("_", " "), fmt_bytes(m[key]), _count(m[key]))
    t.add_row("[bold]total[/]", f"[bold]{fmt_bytes(m['total'])}[/]", _count(m["total"]))
    _limit_rows(t, r, 0)
    if m.get("kv_cache_per_token"):
        t.add_row("KV cache per token", fmt_bytes(m["kv_cache_per_token"]), _count(m["kv_cache_per_token"]))
    return t


def _peak(r: dict) -> str:
    hw = r["hardware"]
    return f"{fmt_rate(hw['peak_flops'])} {hw['peak_dtype']} dense, {'derived' if hw['derived'] else 'datasheet'}"


def _step_rows(t: Table, r: dict) -> None:
    step, world = r["step"], r["setup"]["world_size"]
    spec = step.get("spec")
    source = "from the device profile" if step.get("source") == "measured" else "datasheet"
    layer, head = step["bound"]["layer"], step["bound"]["head"]
    bound = f"{layer}-bound" if head in (None, layer) else f"layers {layer}-, head {head}-bound"
    t.add_row(f"[bold]step time[/] ({source})", f"[bold]{fmt_seconds(step['time_s'])}[/] ({bound})")
    if spec:  # measured kernels: the profile's categories, the datasheet prediction beside them
        for category, seconds in (step.get("categories") or {}).items():
            if seconds:
                t.add_row(f"  {category}", f"{fmt_seconds(seconds)} ({fmt_pct(seconds / step['time_s'])})")
        t.add_row("datasheet step time / MFU", f"{fmt_seconds(spec['time_s'])} / {fmt_pct(spec['mfu'])}")
    else:  # the datasheet roofline's parts
        parts = dict(step["breakdown"])
        dp_comm, dp_exposed = parts.pop("dp_comm_s"), parts.pop("dp_exposed_s")
        for key, value in parts.items():
            if value:
                t.add_row(f"  {key.removesuffix('_s').replace('_', ' ')}", fmt_seconds(value))
        if dp_comm:
            t.add_row("  dp all-reduce exposed", f"{fmt_seconds(dp_exposed)} of {fmt_seconds(dp_comm)}")
    per_gpu = f" ({fmt_si(step['tokens_per_s_per_gpu'], ' tok/s')} per GPU)" if world > 1 else ""
    t.add_row("tokens/s", fmt_si(step["tokens_per_s"], " tok/s") + per_gpu)
    if step["mfu"] is None:
        t.add_row("[bold]MFU[/]", "n/a (unknown peak; --peak-tflops)")
        t.add_row("achieved per GPU", fmt_rate(step["achieved_flops_per_gpu"]))
        return
    dtype = r["hardware"].get("peak_dtype")
    of_peak = f" vs the {dtype} peak" if dtype == "fp8" else ""  # fp8 MFU is not comparable with a bf16 one
    t.add_row(f"[bold]MFU[/]{of_peak} (causal-halved count, HFU)",
              f"[bold]{fmt_pct(step['mfu'])}[/] ({fmt_pct(step['mfu_causal'])}, {fmt_pct(step['hfu'])})")
    t.add_row("achieved per GPU / peak", f"{fmt_rate(step['achieved_flops_per_gpu'])} / {_peak(r)}")


def time_table(r: dict) -> Table:
    """Training: step time, tokens/s, MFU, and with --tokens the time and cost to train."""
    t = _table("Time", unnamed=2)
    if r.get("step"):
        _step_rows(t, r)
    else:
        t.add_row("step time", "n/a (no peak FLOP/s; --peak-tflops)")
    train = r.get("train")
    if train:
        t.add_row(f"[bold]train {fmt_si(train['tokens'], ' tokens')}[/]",
                  f"[bold]{fmt_seconds(train['time_s'])}[/] ({_count(train['steps'])} steps)")
        t.add_row("  6ND check", fmt_seconds(train["six_nd_time_s"]))
        if train["gpu_hours"] is not None:
            cost = f" / ${train['cost']:,.2f}" if train["cost"] is not None else ""
            t.add_row("  GPU-hours" + (" / cost" if cost else ""), f"{train['gpu_hours']:,.1f}{cost}")
    return t


def _roofline(hw: dict) -> str:
    """What inference time was computed against (a card without the precision's peak runs at another)."""
    peak = f"{fmt_rate(hw['time_peak_flops'])} {hw['time_peak_dtype']}" if hw["time_peak_flops"] else "n/a"
    return (f"roofline: {peak} dense peak, {fmt_si(hw['memory_bandwidth'], 'B/s')} memory "
            f"({'derived' if hw['derived'] else 'datasheet'})")


def inference_table(r: dict) -> Table:
    """Inference: prefill of the prompt and decode per generated token, FLOPs beside their time."""
    f, pre, dec = r["flops"], r["prefill"], r["decode"]
    t = _table("Inference", "phase", "FLOPs", "time", "tokens/s", "bound", caption=_roofline(r["hardware"]))
    t.add_row(f"prefill ({r['prompt_len']} tokens)", fmt_flops(f.get("infer_prefill")), fmt_seconds(pre["time_s"]),
              fmt_si(pre["tokens_per_s"], " tok/s"), pre["bound"] or "-")
    t.add_row(f"decode per token (context {dec['mean_context']:,.0f})", fmt_flops(f.get("infer_decode_per_step")),
              fmt_seconds(dec["time_s"]), fmt_si(dec["tokens_per_s"], " tok/s"), dec["bound"] or "-")
    if r.get("latency_s") is not None:
        t.add_row(f"[bold]latency[/] ({r['gen_len']} generated)", "", f"[bold]{fmt_seconds(r['latency_s'])}[/]",
                  "", "")
    cost = r.get("cost")
    if cost:
        t.add_row("cost per 1k tokens (prefill / decode)", "",
                  f"${cost['prefill_per_1k_tokens']:.3g} / ${cost['decode_per_1k_tokens']:.3g}", "", "")
    return t


# Reference-file citations in the estimator's sentences, said as the formula or its published source:
# the user has the output, not the repository's notes.
_FORMULAS = {"3.1": "model states per parameter, ZeRO paper (Rajbhandari et al. 2020)",
             "3.2": "activation memory, Korthikanti et al. 2022",
             "3.3": "logits and cross-entropy memory",
             "3.4": "KV cache size",
             "4.1": "roofline per op",
             "4.2": "inference roofline",
             "4.3": "ring collectives (NCCL)",
             "4.4": "tensor parallel, Megatron-LM (Shoeybi et al. 2019)",
             "4.5": "pipeline parallel, 1F1B",
             "4.6": "data parallel",
             "4.7": "training step time model"}
_GPU_SPECS = {"3": "per-GPU datasheet notes", "4": "dense-peak cross-check", "5": "per-architecture FLOPs/clock/SM"}
_REFERENCES = (
    (re.compile(r"(?:reference/)?formulas\.md,?\s*§\s*(\d+(?:\.\d+)?)"),
     lambda m: _FORMULAS.get(m.group(1), "the estimator's formulas")),
    (re.compile(r"(?:reference/)?formulas\.md"), "the estimator's formulas"),
    (re.compile(r";?\s*via (?:reference/)?gpu-specs\.md"), ""),
    (re.compile(r"(?:reference/)?gpu-specs\.md,? sections? (\d)(?:/\d)*"),
     lambda m: _GPU_SPECS.get(m.group(1), "vendor datasheets")),
    (re.compile(r"(?:reference/)?gpu-specs\.md"), "vendor datasheets"),
    (re.compile(r"\b([A-Z][A-Za-z0-9]*)-DS\b"), r"\1 datasheet"),  # the source keys of the GPU table
    (re.compile(r"\b([A-Z][A-Za-z0-9]*)-WP\b"), r"\1 whitepaper"),
    (re.compile(r"\bSMI\b"), "nvidia-smi"),
    (re.compile(r"\b(\d{5,}) B\b"), lambda m: f"{int(m.group(1)):,} B"),
)


def readable(text: str) -> str:
    """``text`` with citations of the repository's reference notes replaced by what they name."""
    for pattern, words in _REFERENCES:
        text = pattern.sub(words, text)
    return text


def _value(key: str, v: Any) -> str:
    """One assumption value as text: nested mappings as 'key: value' lines, numbers with their unit."""
    if isinstance(v, dict):
        return "\n".join(f"{k.replace('_', ' ')}: {_value(k, item)}" for k, item in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(key, item) for item in v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "n/a"
    if isinstance(v, (int, float)):
        if key.endswith("bandwidth"):
            return fmt_si(v, "B/s")
        if key.endswith("_s"):
            return fmt_seconds(v)
        if key.endswith("_bytes") and v >= 1024:
            return f"{v:,} B ({fmt_bytes(v)})"
        return f"{v:,}" if isinstance(v, int) else f"{v:.6g}"
    return readable(str(v))


def assumptions_table(r: dict) -> Table:
    """``--explain``: every assumption, grouped by its prefix (memory., time., ...), as readable text."""
    t = _table("Assumptions", unnamed=2)
    t.columns[1].justify = "left"
    groups: dict[str, list[tuple[str, Any]]] = {}
    for key, value in r["assumptions"].items():
        group, _, name = key.rpartition(".")
        groups.setdefault(group, []).append((name, value))
    groups.setdefault("", []).append(("gpu figures", readable(r["hardware"]["source"])))
    for group, items in groups.items():
        if group:
            t.add_row(plain(group, style="bold"), "")
        for name, value in items:
            label = ("  " if group else "") + name.replace("_", " ")
            t.add_row(plain(label), plain(_value(name, value), max_chars=LONG_TEXT))
    return t


def header(r: dict) -> Text:
    """One line: model, GPU, mode and shape, precision, the setup's switches and parallelism."""
    s = r["setup"]
    par = " ".join(f"{k}={s[k]}" for k in ("dp", "tp", "pp", "vpp", "cp", "ep") if s.get(k, 1) > 1)
    extra = ((" sp" if s["sp"] else "") + (f" zero-{s['zero']}" if s["zero"] else "")
             + (f" dropout {s['dropout']:g}" if s.get("dropout") else ""))
    shape = (f"batch {s['batch_size']} x prompt {r['prompt_len']} + gen {r['gen_len']}" if r["mode"] == "infer"
             else f"batch {s['batch_size']} x seq {s['seq_len']}"
             + (f" x accum {s['grad_accum']}" if s["grad_accum"] > 1 else ""))
    switches = (f", recompute {s['recompute']}" if r["mode"] == "train" else "") + (
        ", flash" if s["flash_attention"] else "")
    return join(plain(r["model"]["name"], style="bold"), " on ", plain(r["hardware"]["name"], style="bold"),
                f" - {r['mode']}, {shape}, {s['precision']}{switches}{', ' + par if par else ''}{extra}")


def _verdict_lines(r: dict) -> list[Text]:
    """A setup that does not fit: the verdict, then the smallest change that fits on its own line."""
    verdict, change = r.get("verdict"), r.get("fit_change")
    if not verdict:
        return []
    summary = change["summary"] if change else ""
    lines = [plain(verdict.removesuffix(summary).rstrip("; ") if summary else verdict, style="bold red",
                   max_chars=LONG_TEXT)]
    if summary:
        lead = "smallest change that fits: " if change["flags"] else ""
        lines.append(plain(lead + summary, style="bold", max_chars=LONG_TEXT))
    return lines


def print_estimate(r: dict, console: Console | None = None, explain: bool = False) -> None:
    """The estimate on one screen; with ``explain`` the assumptions after it."""
    console = console or Console()
    console.print(header(r))
    for line in _verdict_lines(r):  # a setup that does not fit: said first
        console.print(line)
    said = f"batch {r['setup']['batch_size']} does not fit" if r.get("verdict") else None
    for warning in r["warnings"]:
        if said and warning.startswith(said):  # the verdict above says it, with the change that fits
            continue
        console.print(plain(f"! {warning}", style="yellow", max_chars=LONG_TEXT))
    tables = [params_table(r)]
    if r["mode"] == "infer":
        tables += [inference_table(r), memory_table(r)]
    else:
        tables += [flops_table(r), memory_table(r), time_table(r)]
    if explain:
        tables.append(assumptions_table(r))
    for table in tables:
        console.print()
        console.print(table)
