"""The kernels of an op graph: what one op is — name, kernel, category, pass, shape, dtype, model FLOPs and
bytes moved — the constructors that size each kind, and the counting conventions they share.

A GEMM of (m, n, k) is 2·m·n·k FLOPs and reads both operands, writes the result; an elementwise kernel
moves a fixed number of tensor-sized accesses (``ACCESSES``) and carries no model FLOPs; the attention core
counts 2·bh·T_q·T_k·(d_h + d_v) forward, twice that backward. ``host_ops``: the kernel-less ops (views,
transposes, autograd bookkeeping) dispatched around a kernel (``HOST_OPS``, counted on a real step).
A ``Segment`` is a run of ops that repeats for every block of a stage, held once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

CATEGORIES = ("matmul", "attention", "elementwise", "optimizer", "communication", "host")
PASSES = ("forward", "backward_input", "backward_weight", "backward", "recompute", "optimizer", "step")
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int64": 8}
# Tensor-sized reads + writes per element of an elementwise kernel, by (kernel, forward?):
# binary ops read two operands and write one; norms/activations read x (and dy) and write one.
ACCESSES = {
    ("binary", True): 3, ("binary", False): 3, ("cast", True): 2, ("copy", True): 2, ("copy", False): 2,
    ("layernorm", True): 2, ("layernorm", False): 3, ("rmsnorm", True): 2, ("rmsnorm", False): 3,
    ("gelu", True): 2, ("gelu", False): 3, ("silu", True): 2, ("silu", False): 3, ("relu", True): 2,
    ("relu", False): 3,
    ("cross_entropy", True): 2, ("cross_entropy", False): 3, ("embedding", True): 2, ("embedding", False): 2,
    ("sum", False): 1,
}
ELEMENTWISE_KERNELS = ("binary", "cast", "copy", "layernorm", "rmsnorm", "gelu", "silu", "relu", "cross_entropy",
                       "embedding", "sum", "dropout", "fp8_cast")
ACTIVATION_KERNEL = {"gelu": "gelu", "geglu": "gelu", "swiglu": "silu", "relu": "relu"}
# Communication kernels this module emits, by name prefix (estimator.communication times them):
# "tp." all_reduce, "pp." p2p, "dp." all_reduce, "cp." all_gather / reduce_scatter, "ep." all_to_all.
COMM_KERNELS = ("all_reduce", "p2p", "all_gather", "reduce_scatter", "all_to_all")
ATTENTION_KINDS = ("sdpa", "explicit")
# Ops dispatched around each kernel of the profiled GPT beyond the kernel itself (profiler/model.py; counted
# per block and for the rest with a TorchDispatchMode on gpt-tiny and llama-tiny at 1 and 2 layers, torch
# 2.13, fp32 / bf16-mixed, SDPA / explicit: tests/test_op_graph.py checks the totals within 10 %): a Linear's
# view/t/view, and in its backward the transposes, views and autograd's detaches; the qkv split and head
# transposes; explicit attention's scale, mask, softmax and their views; RMSNorm's pow/mean/add/rsqrt/mul
# (one kernel counted, five more dispatched) and their backward; RoPE's complex views (view, view_as_complex
# of x and of the table, view_as_real, flatten; backward the same with the table's conjugate).
HOST_OPS = {"linear": 3, "qkv_split": 7, "attention_out": 2, "loss": 4, "linear_backward": 10,
            "attention_backward_reshape": 9, "accumulate_grad": 1, "explicit_forward": 21,
            "explicit_backward": 20, "rmsnorm_forward": 5, "rmsnorm_backward": 9, "rope_forward": 5,
            "rope_backward": 5, "loss_backward": 6}


@dataclass(frozen=True)
class Op:
    """One kernel of the step. ``shape``: gemm (m, n, k); attention (batch·heads, seq, head_dim);
    elementwise / optimizer (elements,); communication (message bytes, ranks)."""

    name: str
    kernel: str  # gemm | sdpa | explicit | an ELEMENTWISE_KERNELS entry | adamw | all_reduce | p2p | launch
    category: str
    phase: str  # a PASSES entry
    shape: tuple[int, ...]
    dtype: str
    flops: int = 0  # model FLOPs (the analytic convention); 0 for elementwise work
    bytes: int = 0  # bytes read + written by the kernel
    host_ops: int = 0  # kernel-less ops dispatched with it
    bias: bool = False  # a forward GEMM that adds its Linear's bias (addmm): a pass over its output on some backends

    @property
    def forward(self) -> bool:
        return self.phase in ("forward", "recompute")

    def to_dict(self) -> dict:
        return asdict(self)


def gemm(name: str, phase: str, m: int, n: int, k: int, dtype: str, category: str = "matmul",
         host_ops: int = 0, bias: bool = False) -> Op:
    """(m x k) @ (k x n): 2·m·n·k FLOPs; reads both operands, writes the result."""
    b = DTYPE_BYTES[dtype]
    out_b = 2 if dtype == "fp8" else b  # an fp8 GEMM reads 1-byte operands and writes bf16
    return Op(name, "gemm", category, phase, (m, n, k), dtype, 2 * m * n * k, (m * k + k * n) * b + m * n * out_b,
              host_ops, bias)


def elementwise(name: str, kernel: str, phase: str, elements: int, dtype: str, host_ops: int = 0) -> Op:
    forward = phase in ("forward", "recompute")
    accesses = ACCESSES.get((kernel, forward), ACCESSES.get((kernel, True), 2))
    return Op(name, kernel, "elementwise", phase, (elements,), dtype, 0, accesses * elements * DTYPE_BYTES[dtype],
              host_ops)


def cast(name: str, phase: str, elements: int, to: str) -> Op:
    """An autocast copy between fp32 and a 16-bit dtype: reads one, writes the other."""
    return Op(name, "cast", "elementwise", phase, (elements,), to, 0, elements * (4 + DTYPE_BYTES[to]))


def attention_core(name: str, kind: str, phase: str, bh: int, seq: int, head_dim: int, dtype: str,
                   kv_seq: int | None = None, v_dim: int | None = None) -> Op:
    """q·kᵀ, mask, softmax, ·v (forward: 2·bh·T_q·T_k·(d_h + d_v) FLOPs; backward: twice that).

    ``seq`` is the query length on this GPU, ``kv_seq`` the key length (context parallel: T/cp queries
    against all T keys), ``v_dim`` the value head width (MLA: 128 against a 192-wide q·k). The shape
    stays (batch·heads, query length, head_dim)."""
    kv_seq = kv_seq or seq
    v_dim = v_dim or head_dim
    fwd = 2 * bh * seq * kv_seq * (head_dim + v_dim)
    flops = fwd if phase in ("forward", "recompute") else 2 * fwd
    b = DTYPE_BYTES["bf16" if dtype == "fp8" else dtype]
    io = bh * (seq * head_dim + kv_seq * (head_dim + v_dim) + seq * v_dim) * b  # q, k, v read, y written
    scores = bh * seq * kv_seq * b * (8 if kind == "explicit" else 0)  # explicit: each pass over the scores
    return Op(name, kind, "attention", phase, (bh, seq, head_dim), dtype, flops,
              (io + scores) * (1 if phase in ("forward", "recompute") else 2))


def dropout(name: str, phase: str, elements: int, dtype: str) -> Op:
    """Dropout: forward reads x, writes y and a 1-byte mask; backward reads dy and the mask, writes dx."""
    return Op(name, "dropout", "elementwise", phase, (elements,), dtype, 0, elements * (2 * DTYPE_BYTES[dtype] + 1))


def fp8_cast(name: str, phase: str, elements: int, src: str) -> Op:
    """Per-tensor-scaled fp8 cast: an amax reduction over the tensor, then the scaled cast (reads it twice,
    writes 1 byte per element)."""
    return Op(name, "fp8_cast", "elementwise", phase, (elements,), "fp8", 0, elements * (2 * DTYPE_BYTES[src] + 1))


@dataclass(frozen=True)
class Segment:
    """Ops that run once, or once per block of ``layers`` (in that order): the blocks of a stage are alike,
    so a graph of 80 layers holds each block's ops once and the cost model times them once."""

    ops: tuple[Op, ...]
    layers: tuple[int, ...] = ()  # block indices the ops repeat for; empty: they run once

    @property
    def count(self) -> int:
        return len(self.layers) or 1

    def flat(self) -> list[Op]:
        """Every op it stands for, each block's named ``block<layer>`` (the template's own index swapped)."""
        if not self.layers:
            return list(self.ops)
        template = f"block{self.layers[0]}."
        out = []
        for layer in self.layers:
            name = f"block{layer}."
            out += [op if not op.name.startswith(template) else replace(op, name=name + op.name[len(template):])
                    for op in self.ops]
        return out
