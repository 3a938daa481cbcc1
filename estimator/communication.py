"""Communication: ring collectives and point-to-point sends over the link a group of GPUs spans.

One home for the link model, so that training (the op graph's communication
ops), inference and the DDP measurement predict with the same rule: a group
inside the NVLink / Infinity-Fabric domain uses the scale-up link, the rest of
a node the host link (PCIe), beyond a node the per-GPU NIC; each ring step pays
a fixed latency ``COLLECTIVE_LATENCY_S``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from estimator.hardware import HardwareSpec
from estimator.setup import TrainSetup

if TYPE_CHECKING:
    from estimator.op_graph import Op

GPUS_PER_NODE = 8  # a group larger than this crosses the network
COLLECTIVE_LATENCY_S = 10e-6  # α per ring step (NCCL, formulas.md §4.3: 5-20 µs)


def ring_all_reduce_s(message_bytes: float, ranks: int, bandwidth: float,
                      latency: float = COLLECTIVE_LATENCY_S) -> float:
    """2(n−1)/n · M / B + 2(n−1)·α; zero for one rank."""
    if ranks <= 1 or message_bytes <= 0:
        return 0.0
    return 2 * (ranks - 1) / ranks * transfer_s(message_bytes, bandwidth) + 2 * (ranks - 1) * latency


def transfer_s(n_bytes: float, bandwidth: float) -> float:
    """Seconds to move ``n_bytes``; an unknown (zero) bandwidth contributes nothing (predict warns)."""
    return n_bytes / bandwidth if bandwidth > 0 else 0.0


def link_bandwidth(hardware: HardwareSpec, span: int, interconnect_efficiency: float) -> float:
    """Per-direction bytes/s for a group spanning ``span`` GPUs: the scale-up link (NVLink, a
    bidirectional aggregate, halved) inside its domain, PCIe for the rest of a node (bridged PCIe
    cards join only 2 GPUs by NVLink), the per-GPU NIC across nodes (already per direction)."""
    bidirectional, tier = hardware.group_link(span, GPUS_PER_NODE)
    raw = bidirectional if tier == "network" else bidirectional / 2
    return raw * interconnect_efficiency


def communication_seconds(op: "Op", hardware: HardwareSpec, setup: TrainSetup) -> float:
    """Seconds of one communication op of the op graph: ``op.shape`` is (message bytes, ranks)."""
    message, ranks = op.shape
    eff = setup.efficiency.interconnect
    if op.kernel == "p2p":
        bw = link_bandwidth(hardware, setup.tp * setup.pp, eff)
        return transfer_s(message, bw) + COLLECTIVE_LATENCY_S
    span = setup.tp if op.name.startswith("tp.") else setup.world_size
    return ring_all_reduce_s(message, ranks, link_bandwidth(hardware, span, eff))
