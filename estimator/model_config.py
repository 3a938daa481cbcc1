"""`ModelConfig`: the shape of a GPT-style decoder, the vocabulary every module shares.

One dataclass describes GPT-2, nanoGPT, LLaMA, Mistral and Mixtral alike: the
differences are flags (bias placement, norm kind, MLP kind, tied head,
position embedding, experts). Validation lives here so that every entry
point (presets, CLI flags, a Hugging Face ``config.json``) fails the same way.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from estimator.errors import ConfigError
from estimator.safe_text import clean_text

MLP_KINDS = ("gelu", "swiglu")
NORM_KINDS = ("layernorm", "rmsnorm")
POSITION_KINDS = ("learned", "rope")
MAX_NAME_CHARS = 200
# Upper bounds of each size: ~64x past the largest public models (vocab 256k, context 10M,
# width 16k, FFN 53k, 126 layers, 128 heads, 256 experts), so no real config is refused, and every
# count stays an exact int and every FLOP/byte figure a finite float.
LIMITS = {
    "vocab_size": 2**24, "context_length": 2**30, "d_model": 2**20, "d_ff": 2**22, "head_dim": 2**16,
    "n_layers": 2**14, "n_heads": 2**14, "n_kv_heads": 2**14, "n_experts": 2**16, "top_k": 2**16,
    "sliding_window": 2**30,
}
MAX_CONFIG_BYTES = 16 * 2**20  # a config.json is a few kB; this refuses a weights file given by mistake
MAX_CONFIG_DEPTH = 64  # real configs nest < 5 levels
MAX_INT_DIGITS = 4300  # Python's own int-from-text limit, checked first so the message is ours


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer. Widths are element counts, not bytes."""

    name: str
    vocab_size: int
    context_length: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None  # None: same as n_heads (MHA)
    d_ff: int | None = None  # None: 4 x d_model
    head_dim: int | None = None  # None: d_model // n_heads
    mlp: str = "gelu"
    norm: str = "layernorm"
    norm_bias: bool = True
    qkv_bias: bool = True
    proj_bias: bool = True  # attention output projection
    mlp_bias: bool = True
    tied_embeddings: bool = True
    position: str = "learned"
    n_experts: int = 1
    top_k: int = 1
    sliding_window: int | None = None  # informational (Mistral); FLOPs use full context

    def __post_init__(self) -> None:
        validate(self)
        # The name is shown in tables and JSON: from a config.json it is outside text.
        object.__setattr__(self, "name", clean_text(self.name, MAX_NAME_CHARS) or "model")

    # Derived sizes -------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def dh(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    def kv_cache_width(self, tp: int = 1) -> int:
        """Elements one tensor-parallel rank caches per token per layer: K and V of its KV heads."""
        return 2 * -(-self.kv_heads // tp) * self.dh

    @property
    def q_width(self) -> int:
        """Width of all query heads together (a x d_h)."""
        return self.n_heads * self.dh

    @property
    def kv_width(self) -> int:
        """Width of the key (or value) heads together (g x d_h)."""
        return self.kv_heads * self.dh

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    def with_vocab_padded(self, multiple: int) -> ModelConfig:
        """The same model with its vocabulary rounded up (nanoGPT's 50257 -> 50304)."""
        if multiple <= 1:
            return self
        padded = -(-self.vocab_size // multiple) * multiple
        return replace(self, vocab_size=padded)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(n_kv_heads=self.kv_heads, d_ff=self.ffn, head_dim=self.dh)
        return out


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ConfigError(f"{name} must be a positive integer, got {shown}")
    if value > LIMITS[name]:
        raise ConfigError(f"{name} must be at most {LIMITS[name]:,} (far past any real model), got "
                          f"{value if value < 10**30 else f'a {len(str(value))}-digit number'}")


def validate(cfg: ModelConfig) -> None:
    """Raise ConfigError for a shape no real model could have."""
    if not isinstance(cfg.name, str) or not cfg.name.strip():
        raise ConfigError(f"model name must be a non-empty string, got {cfg.name!r}")
    for field in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads", "n_experts", "top_k"):
        _positive(field, getattr(cfg, field))
    for field in ("n_kv_heads", "d_ff", "head_dim", "sliding_window"):
        value = getattr(cfg, field)
        if value is not None:
            _positive(field, value)
    if cfg.head_dim is None and cfg.d_model % cfg.n_heads:
        raise ConfigError(
            f"heads ({cfg.n_heads}) must divide the width d_model ({cfg.d_model}); "
            f"try {', '.join(str(h) for h in _divisors_near(cfg.d_model, cfg.n_heads))} heads"
        )
    if cfg.n_heads % cfg.kv_heads:
        raise ConfigError(f"kv heads ({cfg.kv_heads}) must divide the query heads ({cfg.n_heads})")
    if cfg.top_k > cfg.n_experts:
        raise ConfigError(f"top-k ({cfg.top_k}) cannot exceed the number of experts ({cfg.n_experts})")
    if cfg.mlp not in MLP_KINDS:
        raise ConfigError(f"mlp must be one of {', '.join(MLP_KINDS)}, got {cfg.mlp!r}")
    if cfg.norm not in NORM_KINDS:
        raise ConfigError(f"norm must be one of {', '.join(NORM_KINDS)}, got {cfg.norm!r}")
    if cfg.position not in POSITION_KINDS:
        raise ConfigError(f"position must be one of {', '.join(POSITION_KINDS)}, got {cfg.position!r}")


def _divisors_near(width: int, heads: int) -> list[int]:
    divisors = [d for d in range(1, min(width, 256) + 1) if width % d == 0]
    return sorted(divisors, key=lambda d: (abs(d - heads), d))[:3]


# Hugging Face config.json -------------------------------------------------

def read_config_file(path: Path, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """The JSON value of a small regular file, or one ConfigError saying why not.

    Outside input: the file may be a FIFO (opened non-blocking, so no writer
    means no hang), a device such as /dev/zero (refused before reading), huge
    (read at most ``max_bytes + 1``), not UTF-8, nested thousands deep or hold
    a 5000-digit integer; each is a message, none a traceback.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"no config.json at {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path} is not a regular file (a pipe, device or socket); give a config.json")
        if info.st_size > max_bytes:
            raise ConfigError(f"{path} is {info.st_size:,} bytes; a config.json is under {max_bytes // 2**20} MiB")
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigError(f"{path} grew past {max_bytes // 2**20} MiB while being read")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})") from None
    try:
        value = json.loads(text, parse_int=_bounded_int)
    except RecursionError:
        raise ConfigError(f"{path}: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    _check_depth(value, path)
    return value


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ConfigError(f"config.json holds a {len(digits):,}-digit integer; no model field is that large")
    return int(digits)


def _check_depth(value: Any, path: Path) -> None:
    """ConfigError when containers nest deeper than ``MAX_CONFIG_DEPTH`` (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > MAX_CONFIG_DEPTH:
                    raise ConfigError(f"{path}: JSON nested deeper than {MAX_CONFIG_DEPTH} levels")
                stack.append((child, depth + 1))


def from_hf_config(path: str | Path) -> ModelConfig:
    """Read a local Hugging Face ``config.json`` (offline) into a ModelConfig."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    raw = read_config_file(p)
    if not isinstance(raw, dict):
        raise ConfigError(f"{p} does not hold a JSON object")
    kind = clean_text(str(raw.get("model_type", "")), MAX_NAME_CHARS).lower()
    name = raw.get("_name_or_path") or p.parent.name or kind or "hf-model"
    if not isinstance(name, str):
        name = str(name)
    try:
        if kind == "gpt2" or "n_embd" in raw:
            return _gpt2_from_hf(name, raw)
        if kind == "gpt_neox":
            return _neox_from_hf(name, raw)
        return _llama_from_hf(name, raw, kind)
    except KeyError as exc:
        raise ConfigError(f"{p} lacks the field {exc.args[0]!r} needed for a {kind or 'decoder'} model") from None
    except TypeError:  # e.g. 4 * {"an": "object"} where n_embd goes
        raise ConfigError(f"{p} has a field of the wrong type (sizes must be positive integers)") from None


def _gpt2_from_hf(name: str, raw: dict[str, Any]) -> ModelConfig:
    d_model = raw["n_embd"]
    return ModelConfig(
        name=str(name),
        vocab_size=raw["vocab_size"],
        context_length=raw.get("n_positions", raw.get("n_ctx", 1024)),
        d_model=d_model,
        n_layers=raw["n_layer"],
        n_heads=raw["n_head"],
        d_ff=raw.get("n_inner") or 4 * d_model,
        tied_embeddings=raw.get("tie_word_embeddings", True),
    )


def _neox_from_hf(name: str, raw: dict[str, Any]) -> ModelConfig:
    """GPT-NeoX / Pythia: LayerNorm with bias, GELU MLP with bias, biased attention, untied head, rotary."""
    bias = bool(raw.get("attention_bias", True))
    return ModelConfig(
        name=str(name), vocab_size=raw["vocab_size"], context_length=raw.get("max_position_embeddings", 2048),
        d_model=raw["hidden_size"], n_layers=raw["num_hidden_layers"], n_heads=raw["num_attention_heads"],
        d_ff=raw.get("intermediate_size") or 4 * raw["hidden_size"], mlp="gelu", norm="layernorm", norm_bias=True,
        qkv_bias=bias, proj_bias=bias, mlp_bias=True, tied_embeddings=bool(raw.get("tie_word_embeddings", False)),
        position="rope",
    )


def _llama_from_hf(name: str, raw: dict[str, Any], kind: str) -> ModelConfig:
    attention_bias = bool(raw.get("attention_bias", kind in ("qwen2", "qwen2_moe")))
    return ModelConfig(
        name=str(name),
        vocab_size=raw["vocab_size"],
        context_length=raw.get("max_position_embeddings", 2048),
        d_model=raw["hidden_size"],
        n_layers=raw["num_hidden_layers"],
        n_heads=raw["num_attention_heads"],
        n_kv_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"],
        d_ff=raw["intermediate_size"],
        head_dim=raw.get("head_dim"),
        mlp="swiglu",
        norm="rmsnorm",
        norm_bias=False,
        qkv_bias=attention_bias,
        proj_bias=bool(raw.get("attention_bias", False)) and kind not in ("qwen2", "qwen2_moe"),
        mlp_bias=bool(raw.get("mlp_bias", False)),
        tied_embeddings=bool(raw.get("tie_word_embeddings", kind == "gemma")),  # Gemma ties by default
        position="rope",
        n_experts=raw.get("num_local_experts") or raw.get("num_experts") or 1,
        top_k=raw.get("num_experts_per_tok") or 1,
        sliding_window=raw.get("sliding_window"),
    )
