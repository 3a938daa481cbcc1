"""The link model: NCCL's latency table for small messages, measured bus bandwidth for large ones,
the tier each group crosses (Megatron rank order), PCIe cards without NVLink bandwidth."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from estimator.communication import (
    COLLECTIVE_LATENCY_S,
    collective_seconds,
    communication_seconds,
    group_span,
    link_bandwidth,
)
from estimator.hardware import get_gpu
from estimator.device_specs import cpu_spec
from estimator.ops import Op
from estimator.setup import Efficiency, TrainSetup

A100 = get_gpu("a100-sxm-80gb")
H100 = get_gpu("h100-sxm")
L40S = get_gpu("l40s")
A100_PCIE = get_gpu("a100-pcie-80gb")
GIB = 2**30
SIMPLE_NVLINK = 8.4e-6 + 3.4e-6  # NCCL Simple protocol: ring base latency + one NVLink hop (tuning.cc @b647562)
SIMPLE_NETWORK = 8.4e-6 + 14.0e-6  # ... + one network hop


def _op(name: str, kind: str, message: int, ranks: int) -> Op:
    return Op(name, kind, "communication", "step", (message, ranks), "bf16", 0, message)


def _busbw(kind: str, message: int, ranks: int, gpu, span: int | None = None) -> float:
    """nccl-tests' busbw: the bytes on the busiest link / time (PERFORMANCE.md factors)."""
    factor = 2 * (ranks - 1) / ranks if kind == "all_reduce" else (ranks - 1) / ranks
    return factor * message / collective_seconds(kind, message, ranks, gpu, span)


def test_small_all_reduce_on_8_nvlink_gpus_is_one_ll_ring():
    """8 KiB (one decode token of a 4096-wide bf16 model) on 8 A100s: NCCL's LL ring, base 6.6 µs + 14 hops
    of 0.6 µs (tuning.cc @b647562), bytes at a quarter of the 240 GB/s bus bandwidth; not 14 x 10 µs."""
    m = 8192
    expected = 6.6e-6 + 14 * 0.6e-6 + 2 * 7 / 8 * m / (300e9 * 0.80 / 4)
    assert collective_seconds("all_reduce", m, 8, A100) == pytest.approx(expected)
    assert collective_seconds("all_reduce", m, 8, A100) < 14 * COLLECTIVE_LATENCY_S / 5


@pytest.mark.parametrize("kind, gpu, measured", [
    # H100 all-reduce runs NVLink SHARP: "On 8 GPUs, you should reach a peak busBw of ~480GB/s" (nccl-tests#212)
    ("all_reduce", H100, 480e9),
    ("all_gather", H100, 370e9),  # "NCCL can get an effective NVLink bandwidth of 370GB/s" (ring, same thread)
    ("all_reduce", A100, 235e9),  # NCCL 2.8's own sm80 ring busBw cap (tuning.cc @01afd20); no NVLS before Hopper
])
def test_large_collectives_reach_the_measured_nvlink_bus_bandwidth(kind, gpu, measured):
    assert _busbw(kind, GIB, 8, gpu) == pytest.approx(measured, rel=0.05)


def test_across_nodes_the_nic_sets_the_bus_bandwidth():
    """16 H100s = 2 nodes: NDR 400 Gb/s NICs reach 46-48 GB/s (nccl-tests#290)."""
    assert 46e9 <= _busbw("all_reduce", GIB, 16, H100) <= 48e9
    assert 46e9 <= _busbw("all_gather", GIB, 16, H100) <= 48e9


def test_pcie_cards_get_pcie_not_nvlink_bandwidth():
    """L40S has no NVLink: 8 GPUs share PCIe 4.0 (32 GB/s per direction x 0.44 measured); a bridged
    A100 PCIe pair gets its NVLink bridge, a group of 4 falls back to PCIe."""
    assert _busbw("all_reduce", GIB, 8, L40S) == pytest.approx(32e9 * 0.44, rel=0.01)
    assert _busbw("all_reduce", GIB, 2, A100_PCIE) == pytest.approx(300e9 * 0.80, rel=0.01)
    assert _busbw("all_reduce", GIB, 4, A100_PCIE) == pytest.approx(32e9 * 0.44, rel=0.01)
    assert _busbw("all_reduce", GIB, 8, L40S) < _busbw("all_reduce", GIB, 8, A100) / 10


def test_ring_all_reduce_is_a_reduce_scatter_plus_an_all_gather_for_large_messages():
    rs = collective_seconds("reduce_scatter", GIB, 8, A100)
    ag = collective_seconds("all_gather", GIB, 8, A100)
    assert rs == ag
    assert collective_seconds("all_reduce", GIB, 8, A100) == pytest.approx(rs + ag, rel=0.01)


def test_nvlink_sharp_only_inside_a_hopper_nvswitch_domain():
    """NVLS needs NVSwitch and sm90+: H100 SXM all-reduce beats its ring; A100 and a bridged H100 NVL pair do not
    get it; small messages still take the LL ring (NVLS pays 23 µs)."""
    ring_h100 = _busbw("all_gather", GIB, 8, H100) * 2  # the ring all-reduce would reach the all-gather busbw
    assert _busbw("all_reduce", GIB, 8, H100) > 1.2 * ring_h100 / 2
    nvl = get_gpu("h100-nvl")
    assert _busbw("all_reduce", GIB, 2, nvl) == pytest.approx(_busbw("all_gather", GIB, 2, nvl), rel=0.01)
    assert collective_seconds("all_reduce", 8192, 8, H100) < 23e-6


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p"]),
       ranks=st.integers(2, 64), small=st.integers(1, 2**20), factor=st.integers(1, 2**10))
def test_time_grows_with_the_message_and_is_zero_for_one_rank(kind, ranks, small, factor):
    ranks = 2 if kind == "p2p" else ranks
    t_small = collective_seconds(kind, small, ranks, H100)
    assert 0 < t_small <= collective_seconds(kind, small * factor, ranks, H100)
    assert collective_seconds(kind, small, 1, H100) == 0.0


def test_group_spans_follow_megatron_rank_order():
    setup = TrainSetup(tp=2, cp=2, dp=8, pp=2, ep=4)
    assert [group_span(g, setup) for g in ("tp", "cp", "ep", "dp", "pp")] == [2, 4, 16, 32, 64]
    with pytest.raises(ValueError, match="unknown group"):
        group_span("xx", setup)


def test_context_parallel_ops_cross_the_network_once_tp_cp_leaves_the_node():
    m = 64 * 2**20  # K and V of a chunk
    inside = communication_seconds(_op("cp.all_gather.kv", "all_gather", m, 2), H100, TrainSetup(tp=4, cp=2))
    across = communication_seconds(_op("cp.all_gather.kv", "all_gather", m, 2), H100, TrainSetup(tp=8, cp=2))
    assert inside == collective_seconds("all_gather", m, 2, H100, span=8)
    assert across == collective_seconds("all_gather", m, 2, H100, span=16)
    assert across > 5 * inside  # ~47 GB/s NIC against ~360 GB/s NVLink
    back = communication_seconds(_op("cp.reduce_scatter.dkv", "reduce_scatter", m, 2), H100, TrainSetup(tp=4, cp=2))
    assert back == inside


def test_expert_all_to_all_over_nvlink_and_across_nodes():
    m = 32 * 2**20
    one_node = communication_seconds(_op("ep.all_to_all.dispatch", "all_to_all", m, 8), H100,
                                     TrainSetup(dp=8, ep=8))
    # all-to-all: each GPU keeps 1/8 of its buffer and sends 7/8 at the NVLink bus bandwidth, one round of
    # Simple-protocol sends (base 8.4 µs + one NVLink hop 3.4 µs)
    assert one_node == pytest.approx(SIMPLE_NVLINK + 7 / 8 * m / (450e9 * 0.80))
    two_nodes = communication_seconds(_op("ep.all_to_all.dispatch", "all_to_all", m, 8), H100,
                                      TrainSetup(tp=2, dp=8, ep=8))
    # 4 of the 8 ranks on the other node: half the buffer through the 50 GB/s NIC (x0.94)
    assert two_nodes == pytest.approx(SIMPLE_NETWORK + m / 2 / (50e9 * 0.94))


def test_pipeline_neighbours_span_two_stages_of_tp_cp_dp():
    m = 16 * 2**20
    near = communication_seconds(_op("pp.send.fwd", "p2p", m, 2), H100, TrainSetup(tp=4, pp=2))
    far = communication_seconds(_op("pp.send.fwd", "p2p", m, 2), H100, TrainSetup(tp=8, pp=2))
    assert near == pytest.approx(SIMPLE_NVLINK + m / (450e9 * 0.80))
    assert far == pytest.approx(SIMPLE_NETWORK + m / (50e9 * 0.94))


def test_interconnect_efficiency_overrides_the_measured_fraction():
    assert link_bandwidth(H100, 8) == 450e9 * 0.80
    assert link_bandwidth(H100, 8, 0.5) == 450e9 * 0.5
    setup = TrainSetup(tp=8, efficiency=Efficiency(interconnect=0.5))
    t = communication_seconds(_op("tp.all_reduce.0", "all_reduce", GIB, 8), A100, setup)
    assert 2 * 7 / 8 * GIB / t == pytest.approx(150e9, rel=0.02)


def test_cpu_ranks_keep_the_plain_ring_over_memory():
    cpu = cpu_spec("test cpu", 4, 3e9, ["avx2", "fma"], 16 * GIB, memory_bandwidth=10e9)
    # the memory bandwidth stands as the (bidirectional) intra-node figure: 5 GB/s each way
    expected = 2 * 3 / 4 * 8e6 / 5e9 + 2 * 3 * COLLECTIVE_LATENCY_S
    assert collective_seconds("all_reduce", 8e6, 4, cpu) == pytest.approx(expected)


def test_unknown_collective_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown collective"):
        collective_seconds("broadcast", 10, 2, H100)


def test_assumptions_and_the_ddp_summary_use_the_measured_fraction():
    from estimator.communication import communication_assumptions
    from profiler.ddp_summary import allreduce_bandwidth

    said = communication_assumptions(TrainSetup())
    assert "nvlink 0.80, pcie 0.44, network 0.94" in said["comm.bus_bandwidth"]
    assert "0.50 x the per-direction" in communication_assumptions(
        TrainSetup(efficiency=Efficiency(interconnect=0.5)))["comm.bus_bandwidth"]
    bw, why = allreduce_bandwidth("cuda", 600e9, None)
    assert bw == 300e9 * 0.80 and "measured nvlink bus fraction" in why
    assert allreduce_bandwidth("cuda", 64e9, None, link_kind="pcie")[0] == 32e9 * 0.44
    assert allreduce_bandwidth("cuda", 600e9, 0.7)[0] == 300e9 * 0.7
