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

    # achieved / dense peak for every GEMM and attention kernel; None: by the kernel's shape on a GPU
    # (estimator.gpu_kernels), the measured (or theoretical) CPU rate on a CPU
    flops: float | None = None
    memory: float = 0.8  # achieved / peak HBM bandwidth
    # achieved bus bandwidth / per-direction line rate; None: the measured fraction of each link tier
    # (estimator.communication.BUS_FRACTION: NVLink 0.80, PCIe 0.44, InfiniBand 0.94)
    interconnect: float | None = None

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
            if value is None and name in ("flops", "interconnect"):
                continue
            check_finite_positive(value, f"{name} efficiency", low=MIN_EFFICIENCY, high=1.0)

    @property
    def world_size(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    def to_dict(self) -> dict:
        return asdict(self)


def check_global_batch(global_batch: int | None, global_batch_tokens: int | None) -> None:
    """At most one of ``--global-batch-size`` (sequences) and ``--global-batch-tokens``."""
    if global_batch is not None and global_batch_tokens is not None:
        raise ConfigError("give either --global-batch-size or --global-batch-tokens, not both")
    if global_batch is not None:
        check_finite_positive(global_batch, "global-batch-size", low=1, high=MAX_SETUP_INT, integer=True)


def grad_accum_for(micro_batch: int, dp: int, seq_len: int, global_batch: int | None = None,
                   global_batch_tokens: int | None = None) -> tuple[int, int]:
    """(global batch in sequences, gradient accumulation) with grad-accum = global batch / (micro-batch x dp),
    as llm-analysis derives it. In sequences the global batch must be a multiple of micro-batch x dp; in
    tokens it is the multiple of micro-batch x dp nearest to tokens / seq-len (as ``mfutop plan`` rounds).
    ConfigError when the global batch is smaller than dp or does not divide."""
    check_global_batch(global_batch, global_batch_tokens)
    per_step = micro_batch * dp
    if global_batch is None:
        target = global_batch_tokens / seq_len
        if target < dp:
            raise ConfigError(f"global batch of {global_batch_tokens:,} tokens is {target:,.2f} sequences of "
                              f"{seq_len}, fewer than dp ({dp}): every data-parallel replica needs a sequence")
        global_batch = per_step * max(1, round(target / per_step))
    if global_batch < dp:
        raise ConfigError(f"global batch {global_batch:,} sequences is smaller than dp ({dp}): every data-parallel "
                          "replica needs at least one sequence")
    if global_batch % per_step:
        raise ConfigError(f"global batch {global_batch:,} sequences is not a multiple of micro-batch x dp = "
                          f"{micro_batch} x {dp} = {per_step}; change --batch-size, --dp or the global batch")
    accum = check_finite_positive(global_batch // per_step, "grad-accum", low=1, high=MAX_SETUP_INT, integer=True)
    return global_batch, accum
