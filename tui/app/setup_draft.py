"""The setup form's values as typed, and their check against `RunConfig` before a run starts.

Kept apart from the widget so the rules are testable without Textual and the
draft survives the form being rebuilt when the layout changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from estimator.errors import ConfigError
from estimator.presets import get_model
from profiler.run_config import RunConfig
from profiler.run_config import parse_batch, parse_memory

DEVICE_DEFAULT = "device default"  # model None: gpt2 on a GPU, gpt-tiny on a CPU

# which form field a RunConfig message is about, by the option name it starts with
_MESSAGE_FIELDS = (("seq-len", "seq_len"), ("batch-size", "batch"), ("steps", "steps"),
                   ("memory-limit", "memory_limit"), ("the profiler runs", "precision"))


@dataclass(frozen=True)
class SetupDraft:
    model: str = DEVICE_DEFAULT
    seq_len: str = ""  # "" = the model's context length
    batch: str = "auto"
    steps: str = "20"
    precision: str = "bf16-mixed"
    compile: bool = False
    flash: bool = True
    memory_limit: str = ""  # "" = no cap
    hf_config: str = ""  # a local config.json: the architecture profiled instead of the model preset

    def with_(self, **changes) -> "SetupDraft":
        return replace(self, **changes)


def draft_from_config(config: RunConfig) -> SetupDraft:
    return SetupDraft(
        model=config.model.name if config.model else DEVICE_DEFAULT,
        seq_len="" if config.seq_len is None else str(config.seq_len),
        batch="auto" if config.batch_size is None else str(config.batch_size),
        steps=str(config.steps),
        precision=config.precision,
        compile=config.compile,
        flash=config.flash_attention,
        memory_limit=size_text(config.memory_limit_bytes),
    )


def size_text(size: int | None) -> str:
    """Bytes back to what a person would type: 40GiB, 512MiB, or the byte count."""
    if size is None:
        return ""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def _positive_int(text: str, option: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"{option} must be a positive integer, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"{option} must be a positive integer, got {text!r}")
    return value


def check_draft(draft: SetupDraft, base: RunConfig) -> tuple[RunConfig | None, dict[str, str]]:
    """(config, {}) when the draft is valid; (None, {field: message}) otherwise.

    ``base`` supplies what the form does not show (device, warm-up, peak override...);
    a model not among the presets (a customised one) is taken from ``base``.
    """
    errors: dict[str, str] = {}
    values: dict[str, object] = {}

    def attempt(field: str, parse) -> None:
        try:
            values[field] = parse()
        except ConfigError as exc:
            errors[field] = str(exc)

    def model():
        if draft.hf_config.strip():
            from estimator.model_choice import choose_model

            return choose_model(None, draft.hf_config.strip())
        if draft.model == DEVICE_DEFAULT:
            return None
        if base.model is not None and draft.model == base.model.name:
            return base.model
        return get_model(draft.model)

    attempt("hf_config" if draft.hf_config.strip() else "model", model)
    if "hf_config" in values:
        values["model"] = values.pop("hf_config")
    attempt("seq_len", lambda: None if not draft.seq_len.strip() else _positive_int(draft.seq_len, "seq-len"))
    attempt("batch", lambda: parse_batch(draft.batch.strip() or "auto"))
    attempt("steps", lambda: _positive_int(draft.steps, "steps"))
    attempt("memory_limit", lambda: parse_memory(draft.memory_limit) if draft.memory_limit.strip() else None)
    if errors:
        return None, errors
    try:
        config = base.with_(
            model=values["model"], seq_len=values["seq_len"], batch_size=values["batch"],
            steps=values["steps"], precision=draft.precision, compile=draft.compile,
            flash_attention=draft.flash, memory_limit_bytes=values["memory_limit"],
        )
    except ConfigError as exc:
        message = str(exc)
        field = next((f for prefix, f in _MESSAGE_FIELDS if message.startswith(prefix)), "form")
        return None, {field: message}
    return config, {}
