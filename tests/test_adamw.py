"""profiler.adamw.AdamW against torch.optim.AdamW: the same parameters and state, bit for bit, and no torch._dynamo."""

import subprocess
import sys
import textwrap

import pytest
import torch

from estimator.presets import customise, get_model
from profiler.adamw import AdamW
from profiler.model import build_model
from profiler.step import ADAM_BETAS, StepOptions, make_adamw

SMALL = customise(get_model("gpt-tiny"), vocab_size=96, context_length=16, d_model=32, n_layers=2, n_heads=2)
KINDS = {"foreach": {"foreach": True}, "for-loop": {"foreach": False}, "fused": {"fused": True}}
OPTIONS = {"foreach": StepOptions(precision="fp32", fused_adamw=False),
           "for-loop": StepOptions(precision="fp32", fused_adamw=False, adamw_foreach=False),
           "fused": StepOptions(precision="fp32", fused_adamw=True)}


def cpu_fused_adamw() -> tuple[bool, str]:
    p = torch.nn.Parameter(torch.ones(4))
    p.grad = torch.ones(4)
    try:
        torch.optim.AdamW([p], fused=True).step()
    except RuntimeError as exc:
        return False, str(exc).splitlines()[0]
    return True, ""


def groups(model: torch.nn.Module) -> list[dict]:
    """nanoGPT's groups, as profiler.step.make_adamw builds them."""
    params = list(model.parameters())
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kind", KINDS)
def test_three_steps_match_torch_optim_adamw_bitwise(kind, dtype):
    if kind == "fused":
        ok, why = cpu_fused_adamw()
        if not ok:
            pytest.skip(f"fused AdamW does not run on this CPU build: {why}")
    torch.manual_seed(0)
    ours_model = build_model(SMALL, "cpu", dtype=dtype)
    ref_model = build_model(SMALL, "cpu", dtype=dtype)
    ref_model.load_state_dict(ours_model.state_dict())
    hyper = {"lr": 1e-2, "betas": ADAM_BETAS, **KINDS[kind]}
    ours, ref = AdamW(groups(ours_model), **hyper), torch.optim.AdamW(groups(ref_model), **hyper)
    x = torch.randint(0, SMALL.vocab_size, (3, 17), generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        ours_model(x[:, :-1], x[:, 1:]).float().backward()
        for p, q in zip(ours_model.parameters(), ref_model.parameters()):  # the same gradients in both
            q.grad = p.grad.clone()
        ours.step()
        ref.step()
        ours.zero_grad(set_to_none=True)
        ref.zero_grad(set_to_none=True)
    for p, q in zip(ours_model.parameters(), ref_model.parameters()):
        assert torch.equal(p, q)
        mine, theirs = ours.state[p], ref.state[q]
        assert mine.keys() == theirs.keys() == {"step", "exp_avg", "exp_avg_sq"}
        for key in mine:
            assert mine[key].dtype == theirs[key].dtype and mine[key].device == theirs[key].device
            assert torch.equal(mine[key], theirs[key]), key
        assert float(mine["step"]) == 3.0 and p.grad is None
    assert [{k: v for k, v in g.items() if k != "params"} for g in ours.param_groups] == \
           [{k: v for k, v in g.items() if k != "params"} for g in ref.param_groups]
    assert ours.defaults == ref.defaults


@pytest.mark.parametrize("name", OPTIONS)
def test_make_adamw_keeps_the_implementation_choice(name):
    model = build_model(SMALL, "cpu")
    opt = make_adamw(model, torch.device("cpu"), OPTIONS[name])
    assert isinstance(opt, AdamW)
    assert (opt.defaults["fused"], opt.defaults["foreach"]) == \
           {"foreach": (None, True), "for-loop": (None, False), "fused": (True, None)}[name]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert all(p.dim() >= 2 for p in opt.param_groups[0]["params"])
    assert all(p.dim() < 2 for p in opt.param_groups[1]["params"])


def test_zero_grad_without_set_to_none_zeroes_in_place():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    grad = p.grad
    AdamW([p]).zero_grad(set_to_none=False)
    assert p.grad is grad and torch.equal(grad, torch.zeros(3))


def test_step_and_zero_grad_run_under_the_scopes_the_breakdown_reads():
    from profiler.step_breakdown import OPTIMIZER_SCOPES

    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = AdamW([p], foreach=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
        opt.zero_grad()
    names = {e.name for e in prof.events()}
    assert all(any(n.startswith(scope) for n in names) for scope in OPTIMIZER_SCOPES)


@pytest.mark.slow
def test_building_and_stepping_a_training_step_does_not_import_dynamo():
    code = textwrap.dedent("""
        import sys
        from estimator.presets import get_model
        from profiler.step import StepOptions, TrainingStep
        for options in (StepOptions(), StepOptions(precision="fp32", adamw_foreach=False),
                        StepOptions(precision="fp32", fused_adamw=True)):
            trainer = TrainingStep(get_model("gpt-tiny"), "cpu", options)
            for _ in range(2):
                trainer.step(*trainer.make_batch(2, 16))
            trainer.close()
        print("torch._dynamo" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("version, device, expected", [
    ("2.13.0+cpu", "cpu", True), ("2.4.0", "cpu", True), ("2.3.1", "cpu", False), ("2.2.0+cu121", "cuda", True),
    ("2.13.0", "mps", False), ("nightly", "cpu", False),
])
def test_fused_is_the_default_wherever_torch_has_the_kernel(monkeypatch, version, device, expected):
    from profiler import adamw

    monkeypatch.setattr(adamw.torch, "__version__", version)
    assert adamw.fused_by_default(device) is expected
