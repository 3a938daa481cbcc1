"""GPU kernel efficiency by shape: tile and wave quantization, sourced ceilings, and what they predict."""

from __future__ import annotations

import pytest

from estimator import gpu_kernels
from estimator.cost_model import DatasheetCost
from estimator.step_compose import predict_step
from estimator.hardware import get_gpu
from estimator.model_config import ModelConfig
from estimator.ops import gemm
from estimator.presets import get_model
from estimator.setup import Efficiency, TrainSetup

A100, H100 = get_gpu("a100-sxm-80gb"), get_gpu("h100-sxm")


def test_a_gemm_that_fills_whole_waves_of_whole_tiles_loses_nothing():
    # 108 SMs x (256 x 128) tiles: 12 x 9 tiles = one full wave.
    assert gpu_kernels.gemm_quantization(12 * 256, 9 * 128, 108) == 1.0


def test_tile_quantization_pads_the_last_tile():
    # m = 257 rows need 2 tiles of 128 (or of 256): the better choice wastes 255 of 512 (or 256) rows.
    # On 3 SMs: 128 x 128 tiles make 3 tiles, one full wave, 257 of 384 rows used; 256 x 128 tiles make 2
    # (257 of 512 rows, and 2 of 3 SMs busy). The better is the first.
    assert gpu_kernels.gemm_quantization(257, 128, 3) == pytest.approx(257 / 384)


def test_wave_quantization_idles_the_last_wave():
    # 109 tiles of 128 x 128 on 108 SMs: two waves, the second one tile.
    sms = 108
    q = gpu_kernels.gemm_quantization(109 * 128, 128, sms)
    assert q == pytest.approx(109 / (2 * 108))


def test_ceilings_are_the_published_measurements():
    a100 = gpu_kernels.matmul_ceiling(A100)
    assert a100.fraction == pytest.approx(267.9 / 312) and not a100.assumed
    assert "ml-engineering" in a100.source
    pcie = gpu_kernels.matmul_ceiling(get_gpu("a100-pcie-80gb"))
    assert pcie.fraction == pytest.approx(256.4 / 312)
    assert gpu_kernels.matmul_ceiling(H100).fraction == pytest.approx(792.1 / 989)
    assert gpu_kernels.matmul_ceiling(get_gpu("mi300x")).fraction == pytest.approx(781.9 / 1300)


def test_an_architecture_without_a_measurement_says_whose_figure_it_borrows():
    ada = gpu_kernels.matmul_ceiling(get_gpu("l40s"))
    assert ada.assumed and "[assumed for 8.9]" in ada.source
    assert ada.fraction == gpu_kernels.matmul_ceiling(A100).fraction


def test_flops_efficiency_overrides_every_kernel():
    setup = TrainSetup(efficiency=Efficiency(flops=0.3))
    cost = DatasheetCost(H100, setup)
    for shape in ((64, 64, 64), (8192, 8192, 8192)):
        assert cost.matmul_efficiency(gemm("g", "forward", *shape, "bf16")) == 0.3


def test_small_gemms_reach_less_of_the_peak_than_large_ones():
    cost = DatasheetCost(H100, TrainSetup())
    small = cost.matmul_efficiency(gemm("g", "forward", 512, 768, 768, "bf16"))
    large = cost.matmul_efficiency(gemm("g", "forward", 8192, 8192, 8192, "bf16"))
    assert small < large <= gpu_kernels.matmul_ceiling(H100).fraction


def test_explicit_attention_is_slower_than_flash_for_gpt2_at_1024_on_an_a100():
    """Issue 15: the scores' passes are memory-bound kernels of their own (measured: flash 1.66x faster)."""
    cfg = get_model("gpt2")
    times = {}
    for flash in (True, False):
        setup = TrainSetup(batch_size=8, seq_len=1024, flash_attention=flash)
        times[flash] = predict_step(cfg, setup, DatasheetCost(A100, setup))["time_s"]
    assert times[False] > 1.2 * times[True]


def test_compile_fuses_consecutive_elementwise_kernels():
    cfg = get_model("gpt2")
    eager, fused = TrainSetup(batch_size=8, seq_len=1024), TrainSetup(batch_size=8, seq_len=1024, compile=True)
    e = predict_step(cfg, eager, DatasheetCost(A100, eager))
    c = predict_step(cfg, fused, DatasheetCost(A100, fused))
    assert c["categories"]["elementwise"] < e["categories"]["elementwise"]
    assert c["categories"]["matmul"] == pytest.approx(e["categories"]["matmul"])
    assert c["overhead"]["ops_per_micro_batch"] < e["overhead"]["ops_per_micro_batch"]


def test_megatron_throughput_rises_with_model_size():
    """Narayanan et al. 2021, Table 1 (arXiv:2104.04473): per-GPU throughput rises from the 7.5B row
    (TP4, 128 GPUs) to the 1T row (TP8 PP64, 3072 GPUs): larger GEMMs, relatively fewer memory-bound
    kernels. Same shapes as benchmarks/bench_published.py's cases."""
    rows = ((32, 4096, 36, 4, 1, 4, 512), (128, 25600, 128, 8, 64, 6, 3072))  # heads, h, L, tp, pp, dp, batch
    rates = []
    for heads, h, layers, tp, pp, dp, batch in rows:
        cfg = ModelConfig(name="megatron", vocab_size=51200, context_length=2048, d_model=h, n_layers=layers,
                          n_heads=heads)
        setup = TrainSetup(batch_size=1, seq_len=2048, precision="bf16-master", recompute="full", tp=tp, pp=pp,
                           dp=dp, grad_accum=batch // dp)
        step = predict_step(cfg, setup, DatasheetCost(A100, setup))
        rates.append(step["categories"]["matmul"] / step["time_s"])  # share of the step in GEMMs
    assert rates[1] > rates[0]
