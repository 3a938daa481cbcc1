"""AdamW as ``torch.optim.AdamW`` keeps it, stepped by PyTorch's own kernel, without ``torch.optim.Optimizer``.

Why: ``torch.optim.Optimizer`` imports ``torch._dynamo`` when a param group is
added, on ``step()`` and on ``zero_grad()`` (about 1 s, up to 1.6 s, on a small
CPU): a second before the first measured step of every run. This class keeps
``torch.optim.AdamW``'s layout — ``param_groups`` with the same keys,
``defaults``, ``state[p]`` = ``step`` (a 0-d tensor), ``exp_avg``,
``exp_avg_sq``, allocated lazily by the first step — and calls the functional
``torch.optim.adamw.adamw`` that ``torch.optim.AdamW.step`` runs, with the same
arguments, so parameters and state stay bitwise equal (tests/test_adamw.py).
``step`` and ``zero_grad`` run under the profiler scopes ``torch.optim`` uses
(``Optimizer.step#AdamW.step``), which ``profiler.step_breakdown`` classifies
as optimizer time.

Not supported (the profiler never uses them): amsgrad, maximize, capturable,
differentiable, closures, state_dict.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import torch
from torch.autograd.profiler import record_function
from torch.optim.adamw import adamw

STEP_SCOPE = "Optimizer.step#AdamW.step"
ZERO_GRAD_SCOPE = "Optimizer.zero_grad#AdamW.zero_grad"
FUSED_CPU_TORCH = (2, 4)  # the first torch whose fused AdamW kernel runs on the CPU


def fused_by_default(device_type: str) -> bool:
    """Whether a step on ``device_type`` uses the fused AdamW kernel unless told otherwise: wherever torch has
    it — CUDA, and the CPU from torch 2.4. On this 2-core EPYC (torch 2.13) it steps 2.4-3x faster than
    foreach (gpt-tiny 0.42 vs 1.15 ms, gpt-small 5.8 vs 16.4 ms): one pass per tensor, where foreach's
    passes each sweep every tensor, and fewer dispatches than the for-loop."""
    if device_type == "cuda":
        return True
    if device_type != "cpu":
        return False
    try:
        major, minor = (int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= FUSED_CPU_TORCH


class AdamW:
    """``AdamW(groups, lr=, betas=, eps=, weight_decay=, foreach=, fused=)``: what the training step needs of
    ``torch.optim.AdamW`` (``step``, ``zero_grad``, ``param_groups``, ``state``, ``defaults``)."""

    def __init__(self, params: Iterable[Any], *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, foreach: bool | None = None,
                 fused: bool | None = None):
        if fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")  # torch.optim's own rule
        self.defaults: dict[str, Any] = {
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": False,
            "maximize": False, "foreach": foreach, "capturable": False, "differentiable": False, "fused": fused,
            "decoupled_weight_decay": True,
        }
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict[str, Any]] = [
            {**self.defaults, **group, "params": list(group["params"])} for group in groups]
        self.state: defaultdict[torch.Tensor, dict[str, torch.Tensor]] = defaultdict(dict)

    def _state(self, p: torch.Tensor, fused: bool) -> dict[str, torch.Tensor]:
        """``p``'s state, created at its first step as ``torch.optim.Adam._init_group`` does."""
        state = self.state[p]
        if not state:
            state["step"] = (torch.zeros((), dtype=torch.float32, device=p.device) if fused else
                             torch.tensor(0.0, dtype=torch.float64 if torch.get_default_dtype() == torch.float64
                                          else torch.float32))  # on the CPU, as torch.optim keeps it
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def step(self) -> None:
        """One AdamW update of every parameter that has a gradient."""
        with torch.no_grad(), record_function(STEP_SCOPE):
            for group in self.param_groups:
                params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
                has_complex = False
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    has_complex |= torch.is_complex(p)
                    state = self._state(p, bool(group["fused"]))
                    params.append(p)
                    grads.append(p.grad)
                    exp_avgs.append(state["exp_avg"])
                    exp_avg_sqs.append(state["exp_avg_sq"])
                    steps.append(state["step"])
                if not params:
                    continue
                beta1, beta2 = group["betas"]
                adamw(params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=group["foreach"],
                      fused=group["fused"], has_complex=has_complex, amsgrad=False, beta1=beta1, beta2=beta2,
                      lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Gradients dropped (``set_to_none``, the default, as in torch.optim) or zeroed in place."""
        with record_function(ZERO_GRAD_SCOPE):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    if set_to_none:
                        p.grad = None
                    else:
                        if p.grad.grad_fn is not None:
                            p.grad.detach_()
                        else:
                            p.grad.requires_grad_(False)
                        p.grad.zero_()
