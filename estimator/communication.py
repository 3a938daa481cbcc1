"""Communication: NCCL-style collectives over the links a group of GPUs spans.

One home for the link model, so that training (the op graph's communication
ops), inference and the DDP measurement predict with the same rule.

**Links.** A group inside the NVLink / Infinity-Fabric domain uses the scale-up
link, the rest of a node the host link (PCIe), beyond a node the per-GPU NIC
(``HardwareSpec.group_link``). Each tier has an achieved *bus bandwidth*
(nccl-tests' ``busbw``) = per-direction line rate x a measured fraction
(``BUS_FRACTION``), unless ``Efficiency.interconnect`` overrides it.

**Latency.** NCCL's own cost model (``NVIDIA/nccl`` ``src/graph/tuning.cc`` at
commit b647562, NCCL 2.19/2.20: the table its tuner uses to choose an algorithm):
a base latency per (algorithm, protocol) plus a latency per ring step (hop) per
link tier. The LL protocol pays little latency at 1/4 of the bandwidth, LL128
(NVLink only) more latency at 0.92 of it, Simple the most latency at all of it;
like NCCL's tuner, the fastest (algorithm, protocol) for the message size is
taken. Ring for every collective; tree as well for all-reduce (log-depth across
nodes), and NVLink SHARP inside a Hopper-or-later NVSwitch domain. A small TP
all-reduce on 8 NVLink GPUs thus costs ~15 µs in all (LL), not 2(n−1) x 10 µs.

**Rank order** (Megatron-LM's default ``tp-cp-ep-dp-pp``, tp innermost): a TP
group spans ``tp`` consecutive GPUs, CP ``tp·cp``, EP ``tp·cp·ep`` (expert groups
carved out of DP), DP ``tp·cp·dp``, and two neighbouring pipeline stages
``2·tp·cp·dp``; a group spanning more GPUs than a node (or NVLink domain) has
``ceil(span / node)`` nodes and ``ranks / nodes`` ranks on each.

``ring_all_reduce_s`` (a plain α-β ring with ``COLLECTIVE_LATENCY_S`` per step)
stays for gloo on one host (the CPU DDP measurement) and for its callers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from estimator.hardware import HardwareSpec
from estimator.setup import TrainSetup

if TYPE_CHECKING:
    from estimator.ops import Op

GPUS_PER_NODE = 8  # a group larger than this (and than the NVLink domain) crosses the network
COLLECTIVE_LATENCY_S = 10e-6  # α per step of the plain ring (formulas.md §4.3: 5-20 µs); gloo / CPU only

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p")
PROTOCOLS = ("ll", "ll128", "simple")
_US = 1e-6
# NCCL's cost model, NVIDIA/nccl src/graph/tuning.cc @b647562 (NCCL 2.19/2.20: ``baseLat``, ``hwLat``), in µs.
BASE_LATENCY_S = {
    "ring": {"ll": 6.6 * _US, "ll128": 14.0 * _US, "simple": 8.4 * _US},
    "tree": {"ll": 6.8 * _US, "ll128": 14.0 * _US, "simple": 0.0},
}
HOP_LATENCY_S = {  # per ring step / tree level, by the tier the step crosses
    "nvlink": {"ring": {"ll": 0.6 * _US, "ll128": 1.9 * _US, "simple": 3.4 * _US},
               "tree": {"ll": 0.6 * _US, "ll128": 1.25 * _US, "simple": 28.0 * _US}},
    "pcie": {"ring": {"ll": 1.0 * _US, "ll128": 2.5 * _US, "simple": 5.7 * _US},
             "tree": {"ll": 1.0 * _US, "ll128": 1.9 * _US, "simple": 28.0 * _US}},
    "network": {"ring": {"ll": 2.7 * _US, "ll128": 4.0 * _US, "simple": 14.0 * _US},
                "tree": {"ll": 5.0 * _US, "ll128": 8.5 * _US, "simple": 28.0 * _US}},
}
NET_OVERHEAD_S = 1.0 * _US  # tuning.cc: per inter-node ring step on x86 Intel hosts (2 µs on AMD), x3 for Simple
# Bus-bandwidth refinements of the same file: ring LL busBw/4 for all-reduce (/3 for the others in one node),
# capped at 87.7 GB/s in one node (Ampere/Hopper), 39.0 on 2 nodes, 20.4 beyond (Intel hosts); LL128 x0.92
# (120 of 128 bytes carry data); tree x0.92, then LL /3.8, LL128 x7/9 in a node (120/128 across nodes).
# LL128 is enabled on NVLink only ("other cases are not tested and may cause silent data corruption").
LL_MAX_BUS_BW = {1: 87.7e9, 2: 39.0e9, 3: 20.4e9}  # by nodes (3: more than two)
TREE_BANDWIDTH_FRACTION = 0.92
# NVLink SHARP (NVLS): Hopper+ NVSwitch reduces in the switch. "On 8 GPUs, you should reach a peak busBw of
# ~480GB/s (algbw ~275GB/s)" (H100, NCCL maintainer, github.com/NVIDIA/nccl-tests/issues/212): algbw 275 of
# the 450 GB/s per-direction line rate; its latency is one 23 µs NVLS step (tuning.cc @b647562).
NVLS_ALGBW_FRACTION = 275 / 450
NVLS_LATENCY_S = 23.0 * _US
# Achieved bus bandwidth / per-direction line rate, by tier:
# * nvlink 0.80: "450GB/s is the line rate. With the protocol overhead (~20%) NCCL can get an effective NVLink
#   bandwidth of 370GB/s" (H100, NCCL maintainer, github.com/NVIDIA/nccl-tests/issues/212: 370/450 = 0.82);
#   NCCL 2.8 capped A100 (sm80) ring busBw at 235 GB/s (tuning.cc @01afd20) of 300 per direction = 0.78.
# * pcie 0.44: 8 x RTX 5090 on PCIe 5.0 x16 (64 GB/s per direction), all-reduce busbw 28 GB/s; "on PCI systems
#   the performance you get is usually determined by the bandwidth your CPU and memory can deliver"
#   (github.com/NVIDIA/nccl/issues/1639).
# * network 0.94: "For NDR @ 400Gbps you should see 46-48GB/s per NIC" (NVIDIA, github.com/NVIDIA/nccl-tests/
#   issues/290): 47 of 50 GB/s.
BUS_FRACTION = {"nvlink": 0.80, "pcie": 0.44, "network": 0.94}
# How each collective's bytes on the busiest link and its ring steps scale with n ranks (nccl-tests'
# busbw factors, PERFORMANCE.md): all-reduce 2(n-1)/n, all-gather / reduce-scatter (n-1)/n of the full
# buffer, all-to-all (n-1)/n (a peer's share to each other rank), p2p the message.
_SCALE_UP = ("nvlink", "nvlink-bridge", "nvlink-c2c", "infinity-fabric")


def ring_all_reduce_s(message_bytes: float, ranks: int, bandwidth: float,
                      latency: float = COLLECTIVE_LATENCY_S) -> float:
    """Plain ring: 2(n−1)/n · M / B + 2(n−1)·α; zero for one rank (gloo on one host)."""
    if ranks <= 1 or message_bytes <= 0:
        return 0.0
    return 2 * (ranks - 1) / ranks * transfer_s(message_bytes, bandwidth) + 2 * (ranks - 1) * latency


def transfer_s(n_bytes: float, bandwidth: float) -> float:
    """Seconds to move ``n_bytes``; an unknown (zero) bandwidth contributes nothing (predict warns)."""
    return n_bytes / bandwidth if bandwidth > 0 else 0.0


def tier_class(tier: str) -> str:
    """``group_link``'s tier -> the latency class of NCCL's model: nvlink, pcie or network."""
    if tier in _SCALE_UP:
        return "nvlink"
    return "network" if tier == "network" else "pcie"


def link_bandwidth(hardware: HardwareSpec, span: int, interconnect_efficiency: float | None = None) -> float:
    """Achieved per-direction bus bytes/s for a group spanning ``span`` GPUs: the scale-up link (a
    bidirectional aggregate, halved) inside its domain, PCIe for the rest of a node (bridged PCIe
    cards join only 2 GPUs by NVLink), the per-GPU NIC across nodes (already per direction), times
    ``interconnect_efficiency`` or, when None, the tier's measured ``BUS_FRACTION``."""
    bidirectional, tier = hardware.group_link(span, GPUS_PER_NODE)
    raw = bidirectional if tier == "network" else bidirectional / 2
    fraction = interconnect_efficiency if interconnect_efficiency is not None else _fraction(tier)
    return raw * fraction


def _fraction(tier: str) -> float:
    return 1.0 if tier == "shared-memory" else BUS_FRACTION[tier_class(tier)]


def node_size(hardware: HardwareSpec) -> int:
    """GPUs that share one scale-up fabric or host: a node, or a larger NVLink domain (NVL72)."""
    return max(hardware.nvlink_domain, GPUS_PER_NODE)


def _bus_factor(kind: str, ranks: int) -> float:
    if kind == "all_reduce":
        return 2 * (ranks - 1) / ranks
    if kind == "p2p":
        return 1.0
    return (ranks - 1) / ranks


def _steps(kind: str, n: int) -> int:
    return 2 * (n - 1) if kind == "all_reduce" else (1 if kind == "p2p" else n - 1)


def collective_seconds(kind: str, message_bytes: float, ranks: int, hardware: HardwareSpec, span: int | None = None,
                       interconnect_efficiency: float | None = None) -> float:
    """Seconds of one collective of ``message_bytes`` (the full buffer: all-reduce's input, all-gather's
    output, reduce-scatter's input, all-to-all's send buffer, a p2p message) over ``ranks`` GPUs whose
    footprint spans ``span`` consecutive GPUs (default ``ranks``): the fastest NCCL (algorithm, protocol).
    p2p: ``ranks`` is 2 and ``span`` the two GPUs' footprint."""
    if kind not in COLLECTIVES:
        raise ValueError(f"unknown collective {kind!r}; one of {', '.join(COLLECTIVES)}")
    ranks = int(ranks)
    if message_bytes <= 0 or ranks <= 1:
        return 0.0
    span = max(int(span or ranks), ranks)
    eff = interconnect_efficiency
    _, tier = hardware.group_link(span, GPUS_PER_NODE)
    if tier == "shared-memory":  # CPU ranks (gloo): the plain ring over memory
        bw = link_bandwidth(hardware, span, eff)
        if kind == "p2p":
            return transfer_s(message_bytes, bw) + COLLECTIVE_LATENCY_S
        steps = _steps(kind, ranks)
        return _bus_factor(kind, ranks) * transfer_s(message_bytes, bw) + steps * COLLECTIVE_LATENCY_S
    node = node_size(hardware)
    nodes = 1 if span <= node else math.ceil(span / node)
    nodes = min(nodes, ranks)
    per_node = max(ranks // nodes, 1)
    intra_span = span if nodes == 1 else min(span, node)
    intra = tier_class(hardware.group_link(intra_span, GPUS_PER_NODE)[1])
    bus_bw = link_bandwidth(hardware, span, eff)  # the group's bottleneck link: the NIC once it spans nodes
    bus_bytes = _bus_factor(kind, ranks) * message_bytes

    if kind == "all_to_all" and nodes > 1:  # traffic to other nodes goes through the NIC, the rest stays inside
        inter_bytes = message_bytes * (ranks - per_node) / ranks
        intra_bytes = message_bytes * (per_node - 1) / ranks
        intra_bw = link_bandwidth(hardware, intra_span, eff)
        return (BASE_LATENCY_S["ring"]["simple"] + HOP_LATENCY_S["network"]["ring"]["simple"]
                + max(transfer_s(inter_bytes, bus_bw), transfer_s(intra_bytes, intra_bw)))

    steps = _steps(kind, ranks)
    inter_steps = 0 if nodes == 1 else (2 * nodes if kind == "all_reduce" else
                                        (1 if kind in ("p2p", "all_to_all") else nodes - 1))
    if kind == "all_to_all":  # one node: one round of concurrent pairwise sends
        steps, inter_steps = 1, 0
    inter_steps = min(inter_steps, steps)
    best = math.inf
    for proto in PROTOCOLS:
        if proto == "ll128" and intra != "nvlink":
            continue
        net_overhead = NET_OVERHEAD_S * (3 if proto == "simple" else 1) if nodes > 1 else 0.0
        intra_hop = max(HOP_LATENCY_S[intra]["ring"][proto], net_overhead)
        latency = (BASE_LATENCY_S["ring"][proto] + (steps - inter_steps) * intra_hop
                   + inter_steps * HOP_LATENCY_S["network"]["ring"][proto])
        bw = _protocol_bandwidth(bus_bw, "ring", proto, kind, nodes)
        best = min(best, latency + transfer_s(bus_bytes, bw))
        if kind == "all_reduce":  # tree: up and down a log-depth tree across nodes, a chain inside each
            latency = BASE_LATENCY_S["tree"][proto] + 2 * ((per_node - 1) * HOP_LATENCY_S[intra]["tree"][proto]
                                                          + _log2(nodes) * HOP_LATENCY_S["network"]["tree"][proto])
            bw = _protocol_bandwidth(bus_bw, "tree", proto, kind, nodes)
            best = min(best, latency + transfer_s(2 * message_bytes, bw))  # NCCL: tree algbw = busbw / 2
    if kind == "all_reduce" and nodes == 1 and has_nvls(hardware, span):
        line = link_bandwidth(hardware, span, 1.0)
        fraction = NVLS_ALGBW_FRACTION * (1.0 if eff is None else eff / BUS_FRACTION["nvlink"])
        best = min(best, NVLS_LATENCY_S + transfer_s(message_bytes, line * fraction))
    return best


def has_nvls(hardware: HardwareSpec, span: int) -> bool:
    """NVLink SHARP: an NVSwitch domain (not a bridged pair) of a Hopper-or-later NVIDIA GPU, inside it."""
    cc = hardware.compute_capability or ""
    major = cc.split(".")[0]
    return (hardware.vendor == "nvidia" and major.isdigit() and int(major) >= 9 and hardware.link_kind == "nvlink"
            and hardware.nvlink_domain > 2 and span <= hardware.nvlink_domain)


def _log2(n: int) -> int:
    return max(int(n) - 1, 0).bit_length()


def _protocol_bandwidth(bus_bw: float, algorithm: str, proto: str, kind: str, nodes: int) -> float:
    """The bus bandwidth a protocol reaches (tuning.cc @b647562; see ``LL_MAX_BUS_BW``'s comment)."""
    if algorithm == "ring":
        if proto == "ll":
            share = 1 / 4 if (nodes > 1 or kind == "all_reduce") else 1 / 3
            return min(bus_bw * share, LL_MAX_BUS_BW[min(nodes, 3)])
        return bus_bw * (0.92 if proto == "ll128" else 1.0)
    tree = bus_bw * TREE_BANDWIDTH_FRACTION
    if proto == "ll":
        return min(tree / 3.8, LL_MAX_BUS_BW[min(nodes, 3)])
    if proto == "ll128":
        return tree * (7 / 9 if nodes == 1 else 120 / 128)
    return tree


def group_span(group: str, setup: TrainSetup) -> int:
    """GPUs a group's footprint spans in Megatron's rank order tp -> cp -> ep/dp -> pp (module docstring)."""
    tp, cp = setup.tp, setup.cp
    spans = {"tp": tp, "cp": tp * cp, "ep": tp * cp * setup.ep, "dp": tp * cp * setup.dp,
             "pp": 2 * tp * cp * setup.dp}
    if group not in spans:
        raise ValueError(f"communication op of unknown group {group!r}; one of {', '.join(spans)}")
    return spans[group]


def communication_seconds(op: "Op", hardware: HardwareSpec, setup: TrainSetup) -> float:
    """Seconds of one communication op of the op graph: ``op.shape`` is (message bytes, ranks), ``op.kernel``
    a ``COLLECTIVES`` entry, ``op.name`` prefixed by its group (tp., cp., ep., dp., pp.)."""
    message, ranks = op.shape
    span = group_span(op.name.split(".", 1)[0], setup)
    return collective_seconds(op.kernel, message, ranks, hardware, span, setup.efficiency.interconnect)


def communication_assumptions(setup: TrainSetup) -> dict[str, object]:
    eff = setup.efficiency.interconnect
    return {
        "comm.model": "NCCL's cost model (NVIDIA/nccl src/graph/tuning.cc): base + per-hop latency by algorithm "
                      "(ring; tree and NVLink SHARP for all-reduce) and protocol (LL, LL128 on NVLink, Simple), "
                      "the fastest taken",
        "comm.bus_bandwidth": (
            f"{eff:.2f} x the per-direction line rate (--interconnect-efficiency)" if eff is not None
            else "per-direction line rate x " + ", ".join(f"{k} {v:.2f}" for k, v in BUS_FRACTION.items())
            + " (measured nccl-tests busbw / line rate)"),
        "comm.rank_order": "Megatron tp-cp-ep-dp-pp: spans tp, tp·cp, tp·cp·ep, tp·cp·dp; pp neighbours 2·tp·cp·dp",
    }
