"""`TrainSetup`: how a model is trained (batch, precision, recompute, parallelism).

Efficiency factors are named fields with printed defaults, never constants
buried in formulas: a prediction is only as honest as its assumptions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from estimator.errors import ConfigError
from estimator.flops import RECOMPUTE_KINDS
from estimator.precision import get_precision
from estimator.units import check_finite_positive

OPTIMIZERS = ("adamw", "sgd")
MODES = ("train", "infer")
MAX_SETUP_INT = 2**30  # batch, accumulation, parallel sizes: ~1e9, past any cluster; keeps every product finite
MIN_EFFICIENCY = 1e-3  # an efficiency of 5e-324 would make every time infinite


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the hardware peaks a real step reaches (roofline derating)."""

    flops: float = 0.5  # achieved / dense peak for large matmuls in a full step
    memory: float = 0.8  # achieved / peak HBM bandwidth
    interconnect: float = 0.7  # achieved / spec link bandwidth (NCCL bus bandwidth)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainSetup:
    batch_size: int = 1  # micro-batch per GPU (sequences)
    seq_len: int | None = None  # None: the model's context length
    precision: str = "bf16-mixed"
    optimizer: str = "adamw"
    recompute: str = "none"  # none | selective | full
    flash_attention: bool = True
    compile: bool = False
    grad_accum: int = 1
    dp: int = 1
    tp: int = 1
    pp: int = 1
    sp: bool = False  # sequence parallel (with TP)
    ep: int = 1  # expert parallel
    zero: int = 0  # ZeRO stage 0-3 over dp
    vpp: int = 1  # virtual pipeline stages per GPU (interleaved 1F1B); 1: plain 1F1B
    cp: int = 1  # context parallel: the sequence split over cp GPUs (ring attention)
    dropout: float = 0.0  # dropout probability (0: none, as in the profiled GPT)
    efficiency: Efficiency = Efficiency()

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum", "dp", "tp", "pp", "ep", "vpp", "cp"):
            check_finite_positive(getattr(self, name), name.replace("_", "-"), low=1, high=MAX_SETUP_INT, integer=True)
        if self.seq_len is not None:
            check_finite_positive(self.seq_len, "seq-len", low=1, high=MAX_SETUP_INT, integer=True)
        get_precision(self.precision)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.recompute not in RECOMPUTE_KINDS:
            raise ConfigError(f"recompute must be one of {', '.join(RECOMPUTE_KINDS)}, got {self.recompute!r}")
        if not (isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool)
                and 0.0 <= self.dropout < 1.0):
            raise ConfigError(f"dropout must be a probability in [0, 1), got {self.dropout!r}")
        if self.zero not in (0, 1, 2, 3):
            raise ConfigError(f"zero stage must be 0, 1, 2 or 3, got {self.zero!r}")
        for name in ("flops", "memory", "interconnect"):
            value = getattr(self.efficiency, name)
            check_finite_positive(value, f"{name} efficiency", low=MIN_EFFICIENCY, high=1.0)

    @property
    def world_size(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    def to_dict(self) -> dict:
        return asdict(self)
