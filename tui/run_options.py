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

# ---- the model
MODEL = typer.Option(None, "--model", "-m", help="Preset (default: gpt2 on a GPU, gpt-tiny on a CPU).")
HF_CONFIG = typer.Option(None, "--hf-config", help="A local Hugging Face config.json (random weights; nothing downloaded).")
MODEL_JSON = typer.Option(None, MODEL_JSON_FLAG, hidden=True, help="The exact model as JSON (mfutop's own child processes).")
LAYERS = typer.Option(None, "--layers", help="Override: transformer layers.")
D_MODEL = typer.Option(None, "--d-model", help="Override: width.")
HEADS = typer.Option(None, "--heads", help="Override: attention heads.")
KV_HEADS = typer.Option(None, "--kv-heads", help="Override: KV heads (GQA).")
D_FF = typer.Option(None, "--d-ff", help="Override: FFN width.")
HEAD_DIM = typer.Option(None, "--head-dim", help="Override: head dimension.")
VOCAB = typer.Option(None, "--vocab", help="Override: vocabulary size.")
CONTEXT = typer.Option(None, "--context", help="Override: context length.")

# ---- the run
DEVICE = typer.Option("auto", F["device"], help="auto | cuda | cpu.")
BATCH_SIZE = typer.Option("auto", F["batch_size"], "-b", help="Sequences per step, or 'auto' to search the max.")
SEQ_LEN = typer.Option(None, F["seq_len"], "-T", min=1, help="Tokens per sequence (default: the model's context).")
STEPS = typer.Option(20, F["steps"], min=1, max=100_000, help="Timed steps (more are added while the spread is > 10 %).")
WARMUP = typer.Option(None, F["warmup"], min=0, max=10_000, help="Warm-up steps (default 3, 10 with --compile).")
PRECISION = typer.Option("bf16-mixed", F["precision"], help="fp32 | tf32 | bf16-mixed | bf16.")
COMPILE = typer.Option(False, "/".join(F["compile"]), help="torch.compile the model.")
FLASH = typer.Option(True, "/".join(F["flash_attention"]), help="scaled_dot_product_attention vs explicit matmuls.")
FUSED_ADAMW = typer.Option(None, "/".join(F["fused_adamw"]), help="Fused AdamW (default: on CUDA) vs foreach.")
PIN_MEMORY = typer.Option(True, "/".join(F["pin_memory"]), help="Pinned host batches (GPU).")
VOCAB_PAD = typer.Option(1, F["vocab_pad_multiple"], min=1, max=1 << 20,
                         help="Pad the vocabulary to a multiple (64: 50257 -> 50304).")
MEMORY_LIMIT = typer.Option(None, F["memory_limit_bytes"], help="Cap usable memory, e.g. 40GiB.")
PEAK_TFLOPS = typer.Option(None, F["peak_tflops"], help="Override the peak MFU divides by (TFLOP/s).")
SEED = typer.Option(0, F["seed"], help="Seed for weights and synthetic tokens.")

# ---- several processes
NPROC = typer.Option(1, "--nproc", min=1, max=1024, help="Processes (DDP under torchrun; gloo on CPU, NCCL on GPU).")
NNODES = typer.Option(None, "--nnodes", help="torchrun: nodes (N or MIN:MAX).")
NODE_RANK = typer.Option(None, "--node-rank", min=0, help="torchrun: this node's rank.")
RDZV_ENDPOINT = typer.Option(None, "--rdzv-endpoint", help="torchrun: HOST:PORT of the rendezvous.")
RDZV_BACKEND = typer.Option(None, "--rdzv-backend", help="torchrun: rendezvous backend (c10d).")
RDZV_ID = typer.Option(None, "--rdzv-id", help="torchrun: job id shared by the nodes.")

# ---- output
JSON = typer.Option(False, "--json", help="Print the final summary as JSON only.")
JSONL = typer.Option(False, "--jsonl", help="Stream every event as one JSON line (flushed).")
OUT = typer.Option(None, "--out", help="Also record the event stream to this JSONL file (mfutop replay reads it).")


# parameter name -> (type, option); the groups commands take
PARAMS: dict[str, tuple[Any, Any]] = {
    "model": (Optional[str], MODEL), "hf_config": (Optional[Path], HF_CONFIG), "model_json": (Optional[str], MODEL_JSON),
    "layers": (Optional[int], LAYERS), "d_model": (Optional[int], D_MODEL), "heads": (Optional[int], HEADS),
    "kv_heads": (Optional[int], KV_HEADS), "d_ff": (Optional[int], D_FF), "head_dim": (Optional[int], HEAD_DIM),
    "vocab": (Optional[int], VOCAB), "context": (Optional[int], CONTEXT),
    "device": (str, DEVICE), "batch_size": (str, BATCH_SIZE), "seq_len": (Optional[int], SEQ_LEN),
    "steps": (int, STEPS), "warmup": (Optional[int], WARMUP), "precision": (str, PRECISION),
    "compile_": (bool, COMPILE), "flash": (bool, FLASH), "fused_adamw": (Optional[bool], FUSED_ADAMW),
    "pin_memory": (bool, PIN_MEMORY), "vocab_pad": (int, VOCAB_PAD), "memory_limit": (Optional[str], MEMORY_LIMIT),
    "peak_tflops": (Optional[float], PEAK_TFLOPS), "seed": (int, SEED),
    "nnodes": (Optional[str], NNODES), "node_rank": (Optional[int], NODE_RANK),
    "rdzv_endpoint": (Optional[str], RDZV_ENDPOINT), "rdzv_backend": (Optional[str], RDZV_BACKEND),
    "rdzv_id": (Optional[str], RDZV_ID),
}
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
