"""What a user's ``nn.Module`` says of itself: where it lives, its precision, its parameters counted once."""

from __future__ import annotations

import torch


def model_device(model: torch.nn.Module) -> str:
    """Where the model's parameters live: "cuda:N", or the device type ("cpu" for a model without any)."""
    for p in model.parameters():
        if p.device.type == "cuda":
            return f"cuda:{p.device.index or 0}"
        return p.device.type
    return "cpu"


def infer_precision(model: torch.nn.Module, torch_device: str) -> tuple[str, str]:
    """(precision, why) from the parameters' dtype and TF32, when the user named none."""
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    if dtype == torch.bfloat16:
        return "bf16", "inferred from bf16 parameters"
    if dtype == torch.float16:
        return "fp16-mixed", "inferred from fp16 parameters (fp16 matmul peak)"
    if torch_device.startswith("cuda") and torch.backends.cuda.matmul.allow_tf32:
        return "tf32", "inferred from fp32 parameters with TF32 matmuls on"
    return "fp32", "inferred from fp32 parameters"


def unique_parameters(model: torch.nn.Module):
    """Each parameter once (tied weights, shared modules), for counting."""
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            yield p
