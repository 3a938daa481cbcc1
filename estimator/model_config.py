"""`ModelConfig`: the shape of a GPT-style decoder, the vocabulary every module shares.

One dataclass describes every family mfutop reads (GPT-2, LLaMA/Mistral/Qwen2,
Gemma/Gemma-2, GPT-NeoX, Falcon, OPT, Phi-3, Mixtral/Qwen2-MoE, DeepSeek-V2/V3):
the differences are fields (bias placement, norm kind and count, MLP kind,
tied head, position embedding, experts, shared experts, dense first layers,
low-rank MLA attention), each defaulting to the GPT-2/LLaMA shape so that a
preset that does not name a field is unchanged. Validation lives here so that every entry
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

MLP_KINDS = ("gelu", "relu", "swiglu", "geglu")  # geglu/swiglu: gated (3 matrices), gelu/relu: 2
GATED_MLPS = ("swiglu", "geglu")
NORM_KINDS = ("layernorm", "rmsnorm")
POSITION_KINDS = ("learned", "rope")
MAX_NAME_CHARS = 200
# Upper bounds of each size: ~64x past the largest public models (vocab 256k, context 10M,
# width 16k, FFN 53k, 126 layers, 128 heads, 256 experts), so no real config is refused, and every
# count stays an exact int and every FLOP/byte figure a finite float.
LIMITS = {
    "vocab_size": 2**24, "context_length": 2**30, "d_model": 2**20, "d_ff": 2**22, "head_dim": 2**16,
    "n_layers": 2**14, "n_heads": 2**14, "n_kv_heads": 2**14, "n_experts": 2**16, "top_k": 2**16,
    "sliding_window": 2**30, "rotary_dim": 2**16, "embed_dim": 2**20, "shared_expert_d_ff": 2**22,
    "dense_d_ff": 2**22, "q_lora_rank": 2**20, "kv_lora_rank": 2**20, "rope_head_dim": 2**16,
    "v_head_dim": 2**16, "position_offset": 2**16, "dense_layers": 2**14,
}
OPTIONAL_SIZES = ("n_kv_heads", "d_ff", "head_dim", "sliding_window", "rotary_dim", "embed_dim",
                  "shared_expert_d_ff", "dense_d_ff", "q_lora_rank", "kv_lora_rank", "rope_head_dim", "v_head_dim")
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
    # Block layout (parameters: the norm count; FLOPs: none)
    parallel_residual: bool = False  # attention and MLP both read the block input (GPT-NeoX, Falcon)
    shared_block_norm: bool = False  # one norm feeds both branches (Falcon-7B); needs parallel_residual
    post_norms: bool = False  # each branch's output normed before its residual add (Gemma-2: 4 norms)
    final_norm: bool = True  # False: no norm before the head (OPT-350m, post-LN)
    rotary_dim: int | None = None  # rotated elements per head (GPT-NeoX rotary_pct); None: the whole head
    # Embeddings
    position_offset: int = 0  # extra rows of the learned position table (OPT: 2)
    embed_dim: int | None = None  # token table width when it is not d_model: project_in/out (OPT-350m)
    # Mixture of experts: every layer past ``dense_layers`` routes to top_k of n_experts of width d_ff
    shared_expert_d_ff: int | None = None  # an always-on expert MLP (Qwen2-MoE; DeepSeek: n_shared x d_ff)
    shared_expert_gate: bool = False  # a sigmoid gate (h -> 1) on the shared expert (Qwen2-MoE)
    router_bias: bool = False  # a per-expert routing bias (DeepSeek-V3's e_score_correction_bias)
    dense_layers: int = 0  # first layers with a dense MLP (DeepSeek first_k_dense_replace)
    dense_d_ff: int | None = None  # their MLP width; None: d_ff
    # Multi-head latent attention (DeepSeek-V2/V3): set by kv_lora_rank; head_dim is nope + rope
    q_lora_rank: int | None = None  # None: a full-rank query projection (DeepSeek-V2-Lite)
    kv_lora_rank: int | None = None
    rope_head_dim: int | None = None  # MLA: the rotary part of head_dim (one key shared by all heads)
    v_head_dim: int | None = None  # None: head_dim

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
        """Query/key head width (MLA: the no-rotary plus the rotary part)."""
        return self.head_dim or self.d_model // self.n_heads

    @property
    def vdh(self) -> int:
        """Value head width: the query/key width except in MLA (DeepSeek: 128 against 192)."""
        return self.v_head_dim or self.dh

    @property
    def gated(self) -> bool:
        """A gated MLP (SwiGLU, GeGLU): gate and up projections, 3 matrices."""
        return self.mlp in GATED_MLPS

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def block_norms(self) -> int:
        """Norms per block: 2 (pre-attention, pre-MLP), 1 shared (Falcon-7B), +2 post-branch (Gemma-2)."""
        return (1 if self.shared_block_norm else 2) + (2 if self.post_norms else 0)

    @property
    def embed_width(self) -> int:
        """Width of the token table and the head (OPT-350m: 512 against d_model 1024)."""
        return self.embed_dim or self.d_model

    @property
    def moe_layers(self) -> int:
        return self.n_layers - self.dense_layers if self.is_moe else 0

    @property
    def dense_ffn(self) -> int:
        """MLP width of a dense layer: d_ff for a dense model, dense_d_ff for DeepSeek's first layers."""
        return self.dense_d_ff or self.ffn

    def kv_cache_width(self, tp: int = 1) -> int:
        """Elements one tensor-parallel rank caches per token per layer.

        K and V of its KV heads; MLA caches the compressed latent (kv_lora_rank) and the
        shared rotary key (rope_head_dim) instead, the same on every TP rank (DeepSeek-V2 §2.1.2).
        """
        if self.is_mla:
            return self.kv_lora_rank + self.rope_head_dim
        return -(-self.kv_heads // tp) * (self.dh + self.vdh)

    @property
    def q_width(self) -> int:
        """Width of all query heads together (a x d_h)."""
        return self.n_heads * self.dh

    @property
    def kv_width(self) -> int:
        """Width of the key heads together (g x d_h)."""
        return self.kv_heads * self.dh

    @property
    def v_width(self) -> int:
        """Width of the value heads together (g x d_v): the attention output projection's input is a x d_v."""
        return self.kv_heads * self.vdh

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
    for field in OPTIONAL_SIZES:
        value = getattr(cfg, field)
        if value is not None:
            _positive(field, value)
    for field in ("position_offset", "dense_layers"):
        value = getattr(cfg, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{field} must be a non-negative integer, got {value!r}"[:120])
        if value:
            _positive(field, value)
    for field in ("parallel_residual", "shared_block_norm", "post_norms", "final_norm", "shared_expert_gate",
                  "router_bias", "norm_bias", "qkv_bias", "proj_bias", "mlp_bias", "tied_embeddings"):
        if not isinstance(getattr(cfg, field), bool):
            raise ConfigError(f"{field} must be true or false, got {getattr(cfg, field)!r}")
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
    _validate_layout(cfg)
    _validate_moe(cfg)
    _validate_mla(cfg)


def _validate_layout(cfg: ModelConfig) -> None:
    if cfg.shared_block_norm and not cfg.parallel_residual:
        raise ConfigError("a shared block norm (one norm for attention and MLP) needs a parallel residual")
    if cfg.rotary_dim is not None and (cfg.position != "rope" or cfg.rotary_dim > cfg.dh or cfg.rotary_dim % 2):
        raise ConfigError(f"rotary_dim ({cfg.rotary_dim}) must be an even width within a rotary head "
                          f"of {cfg.dh}")
    if cfg.position_offset and cfg.position != "learned":
        raise ConfigError("position_offset counts extra rows of a learned position table; this model has none")


def _validate_moe(cfg: ModelConfig) -> None:
    moe_only = {"shared_expert_d_ff": cfg.shared_expert_d_ff, "shared_expert_gate": cfg.shared_expert_gate,
                "router_bias": cfg.router_bias, "dense_layers": cfg.dense_layers, "dense_d_ff": cfg.dense_d_ff}
    if not cfg.is_moe:
        named = [k for k, v in moe_only.items() if v]
        if named:
            raise ConfigError(f"{', '.join(named)} describe a mixture of experts; this model has one expert")
        return
    if cfg.dense_layers >= cfg.n_layers:
        raise ConfigError(f"dense layers ({cfg.dense_layers}) must leave at least one MoE layer of {cfg.n_layers}")
    if cfg.dense_d_ff is not None and not cfg.dense_layers:
        raise ConfigError("dense_d_ff is the width of dense layers, and dense_layers is 0")
    if cfg.shared_expert_gate and not cfg.shared_expert_d_ff:
        raise ConfigError("a shared-expert gate needs a shared expert (shared_expert_d_ff)")


def _validate_mla(cfg: ModelConfig) -> None:
    mla = {"q_lora_rank": cfg.q_lora_rank, "rope_head_dim": cfg.rope_head_dim}
    if not cfg.is_mla:
        named = [k for k, v in mla.items() if v is not None]
        if named:
            raise ConfigError(f"{', '.join(named)} describe latent (MLA) attention, which needs kv_lora_rank")
        return
    if cfg.rope_head_dim is None or cfg.head_dim is None or cfg.rope_head_dim >= cfg.head_dim:
        raise ConfigError("MLA needs head_dim (no-rotary + rotary part) larger than rope_head_dim")
    if cfg.kv_heads != cfg.n_heads:
        raise ConfigError(f"MLA attention has one key/value per query head; got {cfg.kv_heads} kv heads "
                          f"for {cfg.n_heads}")


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
    """Read a local Hugging Face ``config.json`` (offline) into a ModelConfig, by its ``model_type``.

    The per-family readers live in ``estimator.hf_families``; an unknown ``model_type`` is a
    ConfigError naming it (never read as LLaMA). A config without ``model_type`` but with GPT-2's
    ``n_embd`` is read as GPT-2 (the oldest GPT-2 configs carry no model_type).
    """
    # The readers build ModelConfigs, so they import this module: imported here, not at the top.
    from estimator.hf_families import read_family

    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    raw = read_config_file(p)
    if not isinstance(raw, dict):
        raise ConfigError(f"{p} does not hold a JSON object")
    kind = clean_text(str(raw.get("model_type") or ""), MAX_NAME_CHARS)
    if not kind and "n_embd" in raw:
        kind = "gpt2"
    # the checkpoint's name: its own field, else the folder a config.json sits in, else a file's own stem
    stem = p.parent.name if p.name == "config.json" else p.name.removesuffix(".json").removesuffix(".config")
    name = raw.get("_name_or_path") or stem or kind or "hf-model"
    if not isinstance(name, str):
        name = str(name)
    try:
        return read_family(kind, name, raw)
    except ConfigError:
        raise
    except KeyError as exc:
        raise ConfigError(f"{p} lacks the field {exc.args[0]!r} needed for a {kind or 'decoder'} model") from None
    except (TypeError, ValueError):  # e.g. 4 * {"an": "object"} where n_embd goes, float("x") for rotary_pct
        raise ConfigError(f"{p} has a field of the wrong type (sizes must be positive integers)") from None
