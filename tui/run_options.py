"""The options every run command shares (`profile`, `search`, `ladder`, `tui`, `remote`), declared once.

A command takes them with the ``@run_options(...)`` decorator, which adds the
named options to its signature and hands their values to it as one ``opts``
dict; ``run_config(**opts)`` builds the validated ``RunConfig`` — so a flag is
spelled, documented and parsed in one place. The flag names of the run's own fields come from
``profiler.run_config.CLI_FLAGS``, the same table ``RunConfig.to_argv`` writes
them back with for a child process or a remote host. No torch import.
"""

from __future__ import annotations

import functools
import inspect
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from estimator.errors import ConfigError
from profiler.run_config import CLI_FLAGS, MODEL_JSON_FLAG, RunConfig, model_from_json

F = CLI_FLAGS
O = typer.Option

# parameter name -> (type, option): every shared option, declared here once
PARAMS: dict[str, tuple[Any, Any]] = {
    # the model
    "model": (Optional[str], O(None, "--model", "-m", help="Preset (default: gpt2 on a GPU, gpt-tiny on a CPU).")),
    "hf_config": (Optional[Path], O(None, "--hf-config",
                                    help="A local Hugging Face config.json (random weights; nothing downloaded).")),
    "model_json": (Optional[str], O(None, MODEL_JSON_FLAG, hidden=True,
                                    help="The exact model as JSON (mfutop's own child processes).")),
    "layers": (Optional[int], O(None, "--layers", help="Override: transformer layers.")),
    "d_model": (Optional[int], O(None, "--d-model", help="Override: width.")),
    "heads": (Optional[int], O(None, "--heads", help="Override: attention heads.")),
    "kv_heads": (Optional[int], O(None, "--kv-heads", help="Override: KV heads (GQA).")),
    "d_ff": (Optional[int], O(None, "--d-ff", help="Override: FFN width.")),
    "head_dim": (Optional[int], O(None, "--head-dim", help="Override: head dimension.")),
    "vocab": (Optional[int], O(None, "--vocab", help="Override: vocabulary size.")),
    "context": (Optional[int], O(None, "--context", help="Override: context length.")),
    # the run
    "device": (str, O("auto", F["device"], help="auto | cuda | cpu.")),
    "batch_size": (str, O("auto", F["batch_size"], "-b", help="Sequences per step, or 'auto' to search the max.")),
    "seq_len": (Optional[int], O(None, F["seq_len"], "-T", min=1, help="Tokens per sequence (default: the context).")),
    "steps": (int, O(20, F["steps"], min=1, max=100_000,
                     help="Timed steps (more are added while the spread is > 10 %).")),
    "warmup": (Optional[int], O(None, F["warmup"], min=0, max=10_000,
                                help="Warm-up steps (default 3, 10 with --compile).")),
    "precision": (str, O("bf16-mixed", F["precision"], help="fp32 | tf32 | bf16-mixed | bf16.")),
    "compile_": (bool, O(False, "/".join(F["compile"]), help="torch.compile the model.")),
    "flash": (bool, O(True, "/".join(F["flash_attention"]), help="scaled_dot_product_attention vs explicit matmuls.")),
    "fused_adamw": (Optional[bool], O(None, "/".join(F["fused_adamw"]), help="Fused AdamW (default: where torch has it: CUDA, CPU from torch 2.4) vs foreach.")),
    "pin_memory": (bool, O(True, "/".join(F["pin_memory"]), help="Pinned host batches (GPU).")),
    "vocab_pad": (int, O(1, F["vocab_pad_multiple"], min=1, max=1 << 20,
                         help="Pad the vocabulary to a multiple (64: 50257 -> 50304).")),
    "memory_limit": (Optional[str], O(None, F["memory_limit_bytes"], help="Cap usable memory, e.g. 40GiB.")),
    "peak_tflops": (Optional[float], O(None, F["peak_tflops"], help="Override the peak MFU divides by (TFLOP/s).")),
    "seed": (int, O(0, F["seed"], help="Seed for weights and synthetic tokens.")),
    # torchrun's multi-node options
    "nnodes": (Optional[str], O(None, "--nnodes", help="torchrun: nodes (N or MIN:MAX).")),
    "node_rank": (Optional[int], O(None, "--node-rank", min=0, help="torchrun: this node's rank.")),
    "rdzv_endpoint": (Optional[str], O(None, "--rdzv-endpoint", help="torchrun: HOST:PORT of the rendezvous.")),
    "rdzv_backend": (Optional[str], O(None, "--rdzv-backend", help="torchrun: rendezvous backend (c10d).")),
    "rdzv_id": (Optional[str], O(None, "--rdzv-id", help="torchrun: job id shared by the nodes.")),
}

NPROC = typer.Option(1, "--nproc", min=1, max=1024, help="Processes (DDP under torchrun; gloo on CPU, NCCL on GPU).")

# ---- output
JSON = typer.Option(False, "--json", help="Print the final summary as JSON only.")
JSONL = typer.Option(False, "--jsonl", help="Stream every event as one JSON line (flushed).")
OUT = typer.Option(None, "--out", help="Also record the event stream to this JSONL file (mfutop replay reads it).")


MODEL_PARAMS = ("model", "hf_config", "model_json", "layers", "d_model", "heads", "kv_heads", "d_ff", "head_dim",
                "vocab", "context")
RUN_PARAMS = ("device", "batch_size", "seq_len", "steps", "warmup", "precision", "compile_", "flash", "fused_adamw",
              "pin_memory", "vocab_pad", "memory_limit", "peak_tflops", "seed")
TORCHRUN_PARAMS = ("nnodes", "node_rank", "rdzv_endpoint", "rdzv_backend", "rdzv_id")


def run_options(*names: str, **replaced: tuple[Any, Any]) -> Callable[[Callable], Callable]:
    """Decorator: add the shared options ``names`` to a Typer command, passed to it as ``opts`` (a dict).

    ``replaced`` gives a command its own (type, option) for a shared name (the
    ladder's ``--steps`` defaults to 10, say).
    """
    table = {**PARAMS, **replaced}

    def decorate(func: Callable) -> Callable:
        own = inspect.signature(func, eval_str=True)
        hints = typing.get_type_hints(func)
        params = [p for p in own.parameters.values() if p.name != "opts"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=table[name][1],
                                   annotation=table[name][0]) for name in names]

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            opts = {name: kwargs.pop(name) for name in names}
            return func(*args, opts=opts, **kwargs)

        command.__signature__ = own.replace(parameters=[*params, *added])  # type: ignore[attr-defined]
        command.__annotations__ = {**{k: v for k, v in hints.items() if k != "opts"},
                                   **{name: table[name][0] for name in names}}
        del command.__wrapped__  # typer must read the signature above, not the function's own
        return command

    return decorate


def torchrun_passthrough(opts: dict[str, Any]) -> list[str]:
    """torchrun's multi-node options out of ``opts`` (removed from it)."""
    from profiler.ddp import torchrun_args

    return torchrun_args(*(opts.pop(name) for name in TORCHRUN_PARAMS))


def run_config(*, model: Optional[str] = None, hf_config: Optional[Path] = None, model_json: Optional[str] = None,
               layers: Optional[int] = None, d_model: Optional[int] = None, heads: Optional[int] = None,
               kv_heads: Optional[int] = None, d_ff: Optional[int] = None, head_dim: Optional[int] = None,
               vocab: Optional[int] = None, context: Optional[int] = None, compile_: bool = False,
               flash: bool = True, vocab_pad: int = 1, memory_limit: Optional[str] = None,
               batch_size: Any = "auto", **values: Any) -> RunConfig:
    """A validated ``RunConfig`` from the shared options' values (ConfigError for bad input)."""
    from estimator.model_choice import choose_model

    if model_json is not None:
        if model or hf_config:
            raise ConfigError(f"give one of --model, --hf-config, {MODEL_JSON_FLAG}")
        cfg = model_from_json(model_json)
    else:
        shape = dict(layers=layers, d_model=d_model, heads=heads, kv_heads=kv_heads, d_ff=d_ff, head_dim=head_dim,
                     vocab=vocab, context=context)
        default = None
        if not (model or hf_config) and any(v is not None for v in shape.values()):
            from profiler.resolve import default_model, likely_device_kind  # overrides of the device's default

            default = default_model(likely_device_kind(str(values.get("device", "auto")))).name
        cfg = choose_model(model, hf_config, default, **shape)
    return RunConfig.from_options(model=cfg, batch_size=batch_size, memory_limit=memory_limit, compile=compile_,
                                  flash_attention=flash, vocab_pad_multiple=vocab_pad, **values)


def exclusive_json(json_: bool, jsonl: bool) -> None:
    if json_ and jsonl:
        raise ConfigError("give --json or --jsonl, not both")
