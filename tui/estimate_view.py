"""Rich tables for `mfutop estimate`: params, FLOPs, memory, time, assumptions.

Reads only the ``predict()`` dict, so the JSON and the tables cannot disagree.
Units are said: GiB (2^30) for memory, decimal prefixes for FLOPs and rates.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from estimator.units import fmt_bytes, fmt_flops, fmt_pct, fmt_rate, fmt_seconds, fmt_si
from tui.plain_text import plain, plain_str

_PARAM_ROWS = ("embedding/token", "embedding/position", "attention", "mlp", "block", "transformer", "ln_f", "dense")


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=bool(columns), header_style="bold")
    for i, name in enumerate(columns or ("", "")):
        table.add_column(name, justify="left" if i == 0 else "right")
    return table


def _count(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,}"


def params_table(r: dict) -> Table:
    p = r["params"]
    t = _table("Parameters", "component", "count", "share")
    for key in _PARAM_ROWS:
        value = p["breakdown"].get(key)
        if value:
            t.add_row(key, _count(value), fmt_pct(value / p["total"]))
    t.add_row("[bold]total[/]", f"[bold]{_count(p['total'])}[/]", "")
    t.add_row("non-embedding", _count(p["non_embedding"]), "")
    if p["active"] != p["total"]:
        t.add_row("active per token", _count(p["active"]), "")
    return t


def flops_table(r: dict) -> Table:
    f = r["flops"]
    t = _table(f"FLOPs (batch {f['batch_size']} x seq {f['seq_len']}, whole model)", "figure", "FLOPs", "exact")
    for key, label in (("forward", "forward"), ("backward", "backward (2 x forward)"), ("total", "total (model)"),
                       ("recompute", "recompute (HFU only)"), ("palm_total", "PaLM 6N + 12LHQT"),
                       ("megatron_total", "Megatron closed form"), ("causal_total", "causal-halved attention")):
        if key == "recompute" and not f[key]:
            continue
        t.add_row(label, fmt_flops(f[key]), _count(f[key]))
    t.add_row("per token", fmt_flops(f["per_token"]), "")
    t.add_row("per GPU per step", fmt_flops(f["per_gpu_per_step"]), "")
    t.add_row("global per step", fmt_flops(f["global_per_step"]), "")
    for key in ("infer_prefill", "infer_decode_per_step"):
        if key in f:
            t.add_row(key.replace("infer_", "inference ").replace("_", " "), fmt_flops(f[key]), _count(f[key]))
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


def _fit_rows(t: Table, r: dict, blanks: int) -> None:
    m = r["memory"]
    pad = ("",) * blanks
    t.add_row("limit", fmt_bytes(m["limit"]), _count(m["limit"]), *pad)
    t.add_row("fits", "[green]yes[/]" if m["fits"] else "[red]no[/]", "", *pad)
    t.add_row("largest batch that fits", _count(r.get("max_batch_size")), "", *pad)


def _phase_memory_table(r: dict) -> Table:
    """Training, phase-aware peak: the terms alive at the peak phase add up to the total;
    the every-term-at-once sum (the previous figure) sits beside them."""
    m, at_peak = r["memory"], r["memory"]["at_peak"]
    phase = _PHASE_NAMES.get(m["peak_phase"], m["peak_phase"])
    t = _table("Memory per GPU (GiB = 2^30 B)", "term", "at peak", "bytes", "all at once")
    t.caption = "total = terms alive at the peak phase; all at once = old co-resident sum"
    t.caption_justify = "left"
    t.add_row("[bold]peak phase[/]", f"[bold]{phase}[/]", "", "")
    for key in _MEMORY_TERMS:
        now, every = at_peak.get(_AT_PEAK_KEYS.get(key, key), 0), m.get(key) or 0
        if now or every:
            t.add_row(key.replace("_", " "), _size(now), _count(now), _size(every))
    if at_peak.get("transient"):
        label = _SCRATCH.get(m["peak_phase"], "scratch")
        t.add_row(label, _size(at_peak["transient"]), _count(at_peak["transient"]), "-")
    t.add_row("[bold]total[/]", f"[bold]{fmt_bytes(m['total'])}[/]", _count(m["total"]), fmt_bytes(m["sum_of_terms"]))
    _fit_rows(t, r, 1)
    return t


def memory_table(r: dict) -> Table:
    m = r["memory"]
    if m.get("at_peak"):
        return _phase_memory_table(r)
    t = _table("Memory per GPU (GiB = 2^30 B)", "term", "size", "bytes")
    for key in _MEMORY_TERMS:
        if m.get(key):
            t.add_row(key.replace("_", " "), fmt_bytes(m[key]), _count(m[key]))
    t.add_row("[bold]total[/]", f"[bold]{fmt_bytes(m['total'])}[/]", _count(m["total"]))
    if m.get("peak_model") == "sum":
        t.caption, t.caption_justify = "total = every term co-resident (memory peak model: sum)", "left"
    _fit_rows(t, r, 0)
    if m.get("kv_cache_per_token"):
        t.add_row("KV cache per token", fmt_bytes(m["kv_cache_per_token"]), _count(m["kv_cache_per_token"]))
    return t


def time_table(r: dict) -> Table:
    t = _table("Time", "figure", "value")
    step = r.get("step")
    if r["mode"] == "train" and step:
        source = "from the device profile" if step.get("source") == "measured" else "datasheet"
        t.add_row(f"[bold]step time[/] ({source})", f"[bold]{fmt_seconds(step['time_s'])}[/]")
        spec = step.get("spec")
        if spec:
            t.add_row("  spec (datasheet) step time", fmt_seconds(spec["time_s"]))
            t.add_row("  spec tokens/s / MFU", f"{fmt_si(spec['tokens_per_s'], ' tok/s')} / {fmt_pct(spec['mfu'])}")
        for category, seconds in (step.get("categories") or {}).items() if spec else ():
            if seconds:
                t.add_row(f"  {category}", f"{fmt_seconds(seconds)} ({fmt_pct(seconds / step['time_s'])})")
        if spec:
            t.add_row("datasheet roofline parts", "")
        parts = dict(step["breakdown"])
        dp_comm, dp_exposed = parts.pop("dp_comm_s"), parts.pop("dp_exposed_s")
        for key, value in parts.items():
            if value:
                t.add_row(f"  {key.removesuffix('_s').replace('_', ' ')}", fmt_seconds(value))
        if dp_comm:
            t.add_row("  dp all-reduce exposed", f"{fmt_seconds(dp_exposed)} (of {fmt_seconds(dp_comm)}, "
                      "rest hidden behind backward)")
        t.add_row("bound (layer / head)", f"{step['bound']['layer']} / {step['bound']['head'] or '-'}")
        t.add_row("tokens/s (global)", fmt_si(step["tokens_per_s"], " tok/s"))
        t.add_row("tokens/s per GPU", fmt_si(step["tokens_per_s_per_gpu"], " tok/s"))
        t.add_row("achieved per GPU", fmt_rate(step["achieved_flops_per_gpu"]))
        t.add_row("[bold]MFU[/]", f"[bold]{fmt_pct(step['mfu'])}[/]" if step["mfu"] is not None else "n/a")
        t.add_row("HFU", fmt_pct(step["hfu"]))
        t.add_row("MFU (causal-halved count)", fmt_pct(step["mfu_causal"]))
    elif r["mode"] == "train":
        t.add_row("step time", "n/a (no peak FLOP/s; --peak-tflops)")
    train = r.get("train")
    if train:
        t.add_row(f"train {fmt_si(train['tokens'], ' tokens')}", fmt_seconds(train["time_s"]))
        t.add_row("  steps", _count(train["steps"]))
        t.add_row("  6ND check", fmt_seconds(train["six_nd_time_s"]))
        if train["gpu_hours"] is not None:
            t.add_row("  GPU-hours", f"{train['gpu_hours']:,.1f}")
        if train["cost"] is not None:
            t.add_row("  cost", f"${train['cost']:,.2f}")
    if r["mode"] == "infer":
        pre, dec = r["prefill"], r["decode"]
        t.add_row(f"prefill ({r['prompt_len']} tokens)", f"{fmt_seconds(pre['time_s'])} ({pre['bound'] or '-'})")
        t.add_row("prefill tokens/s", fmt_si(pre["tokens_per_s"], " tok/s"))
        t.add_row("decode per token", f"{fmt_seconds(dec['time_s'])} ({dec['bound'] or '-'})")
        t.add_row("decode tokens/s", fmt_si(dec["tokens_per_s"], " tok/s"))
        if r.get("latency_s") is not None:
            t.add_row(f"latency ({r['gen_len']} generated)", fmt_seconds(r["latency_s"]))
        cost = r.get("cost")
        if cost:
            t.add_row("prefill cost / 1k tokens", f"${cost['prefill_per_1k_tokens']:.3g}")
            t.add_row("decode cost / 1k tokens", f"${cost['decode_per_1k_tokens']:.3g}")
    return t


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return json.dumps(v, default=str)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def assumptions_table(r: dict) -> Table:
    t = _table("Assumptions", "name", "value")
    t.columns[1].justify = "left"
    for key, value in r["assumptions"].items():
        t.add_row(plain(key), plain(_value(value), max_chars=400))  # the model's name from a config.json
    return t


def header(r: dict) -> str:
    hw, s = r["hardware"], r["setup"]
    peak = fmt_rate(hw["peak_flops"]) if hw["peak_flops"] else "n/a"
    par = " ".join(f"{k}={s[k]}" for k in ("dp", "tp", "pp", "ep") if s[k] > 1)
    extra = (" sp" if s["sp"] else "") + (f" zero-{s['zero']}" if s["zero"] else "")
    shape = (f"batch {s['batch_size']} x prompt {r['prompt_len']} + gen {r['gen_len']}" if r["mode"] == "infer"
             else f"batch {s['batch_size']} x seq {s['seq_len']}")
    return (f"[bold]{escape(plain_str(r['model']['name']))}[/] on [bold]{escape(plain_str(hw['name']))}[/] "
            f"({hw['peak_dtype']} dense peak {peak}, {'derived' if hw['derived'] else 'datasheet'}) - "
            f"{r['mode']}, {shape}, {s['precision']}, "
            f"recompute {s['recompute']}{', flash' if s['flash_attention'] else ''}"
            f"{', ' + par if par else ''}{extra}")


def print_estimate(r: dict, console: Console | None = None) -> None:
    console = console or Console()
    console.print(header(r))
    if r.get("verdict"):  # a setup that does not fit: said first, with the smallest change that fits
        console.print(plain(f"does not fit: {r['verdict']}", style="bold red", max_chars=2000))
    for warning in r["warnings"]:
        console.print(plain(f"! {warning}", style="yellow", max_chars=2000))
    for table in (params_table(r), flops_table(r), memory_table(r), time_table(r), assumptions_table(r)):
        console.print(table)
