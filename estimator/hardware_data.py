"""GPU rows and per-architecture rates, transcribed from ``reference/gpu-specs.md``.

Plain data only (``estimator.hardware`` turns it into ``HardwareSpec`` rows),
so that a figure can be checked against the reference line by line.

Units as written here, converted once by ``estimator.hardware``:

* ``tflops``: dense TFLOP/s (TOPS for int8) in ``DTYPES`` order
  ``(fp32, tf32, bf16, fp16, fp8, int8)``; ``None`` = no tensor path for that
  dtype.  fp32 is the non-tensor figure; bf16/fp16 are the fp32-accumulate
  figures; sparse (asterisked) datasheet numbers were halved.
* ``mem``: bytes (``MiB(n)`` = an observed ``nvidia-smi memory.total``;
  ``GiB(n)`` = the marketed size, which for NVIDIA HBM/GDDR "GB" is GiB).
* ``bw``, ``link``, ``pcie``, ``net``: decimal GB/s; links are bidirectional aggregates.
* ``link`` is the scale-up fabric (``kind``: "nvlink" through NVSwitch, "nvlink-bridge"
  pairs of cards, "nvlink-c2c" to the package's own CPU, "infinity-fabric", or "pcie" for
  a card with none) joining ``domain`` GPUs; a group larger than ``domain`` but inside one
  node goes over ``pcie`` (the host link), beyond the node over ``net``.  A PCIe card
  with a 2-GPU NVLink bridge therefore has ``domain=2``: a TP group of 4 or 8 does not
  get the bridge's bandwidth.
* ``unknown``: dtypes the chip runs on tensor cores but whose dense peak no source found
  gives (left out of ``tflops`` rather than guessed).
* ``in_reference``: False for rows not (yet) in ``reference/gpu-specs.md``; their
  ``source`` names each document itself, third-party copies tagged (3P).
* ``mhz``: the clock the dense tensor peak is computed at (H100 SXM: the
  1,830 MHz tensor clock, not the 1,980 MHz max), so peak = SMs x rate x clock.
* ``size_gb``: the marketed size, used only to pick a memory variant by name.
* ``aliases``: extra ``get_gpu`` names; ``names``: space-separated token sets
  that an NVML/torch device name must equal (after dropping vendor words and
  ``NNgb`` tokens) to match the row.
"""

from __future__ import annotations


def MiB(n: float) -> int:
    return int(n * 2**20)


def GiB(n: float) -> int:
    return int(n * 2**30)


# Default network per GPU when the cluster is unknown (an assumption, stated in
# each row's notes): 400 Gb/s InfiniBand NDR for HBM datacenter parts, 200 Gb/s
# for GDDR cards.
NET_DC = 50
NET_OTHER = 25
# A100 SXM boards shipped in HDR-era systems: DGX A100 / Selene nodes carry eight 200 Gb/s HDR InfiniBand
# HCAs, one per GPU (Narayanan et al. 2021, arXiv:2104.04473 §5, its experimental setup; NVIDIA DGX A100
# datasheet: 8 single-port ConnectX-6 200 Gb/s HDR), so the per-GPU network is 25 GB/s, the one the
# published A100 training runs used.
NET_HDR = 25

GPU_ROWS: tuple[dict, ...] = (
    # ---------------------------------------------------------------- Volta
    dict(key="v100-sxm2-16gb", name="NVIDIA Tesla V100 SXM2 16GB", vendor="nvidia",
         tflops=(15.7, None, None, 125, None, None), mem=GiB(16), bw=900, link=300,
         kind="nvlink", domain=8, pcie=32, net=NET_DC,
         sm=80, cc="7.0", mhz=1530, tdp=300, size_gb=16,
         aliases=("v100-16gb", "v100-sxm2-16gb", "v100-sxm-16gb"), names=("v100 sxm2", "v100 sxm"),
         source="V100-DS; A100-WP (V100 column)",
         notes="FP16-only tensor cores: no bf16/tf32 path, bf16 runs on CUDA cores; "
               "memory: marketed 16 GB as GiB (no observed memory.total); NVLink2 300 GB/s (3P)"),
    dict(key="v100-sxm2-32gb", name="NVIDIA Tesla V100 SXM2 32GB", vendor="nvidia",
         tflops=(15.7, None, None, 125, None, None), mem=MiB(32_510), bw=900, link=300,
         kind="nvlink", domain=8, pcie=32, net=NET_DC,
         sm=80, cc="7.0", mhz=1530, tdp=300, size_gb=32,
         aliases=("v100", "v100-sxm2", "v100-sxm", "v100-32gb", "v100-sxm2-32gb"),
         names=("v100 sxm2", "v100 sxm"),
         source="V100-DS; A100-WP (V100 column); SMI 32,510 MiB",
         notes="FP16-only tensor cores: no bf16/tf32 path; memory.total 32,510 MiB with ECC on "
               "(32,768 without); NVLink2 300 GB/s (3P)"),
    dict(key="v100-pcie-16gb", name="NVIDIA Tesla V100 PCIe 16GB", vendor="nvidia",
         tflops=(14, None, None, 112, None, None), mem=GiB(16), bw=900, link=32,
         kind="pcie", domain=1, pcie=32, net=NET_DC,
         sm=80, cc="7.0", mhz=1380, tdp=250, size_gb=16,
         aliases=("v100-pcie-16gb",), names=("v100 pcie",),
         source="V100-DS",
         notes="FP16-only tensor cores; boost clock 1,380 MHz and 250 W [unverified]; "
               "memory: marketed GB as GiB; V100S PCIe is a different part (130), not matched"),
    dict(key="v100-pcie-32gb", name="NVIDIA Tesla V100 PCIe 32GB", vendor="nvidia",
         tflops=(14, None, None, 112, None, None), mem=GiB(32), bw=900, link=32,
         kind="pcie", domain=1, pcie=32, net=NET_DC,
         sm=80, cc="7.0", mhz=1380, tdp=250, size_gb=32,
         aliases=("v100-pcie", "v100-pcie-32gb"), names=("v100 pcie",),
         source="V100-DS",
         notes="FP16-only tensor cores; boost clock 1,380 MHz and 250 W [unverified]; "
               "memory: marketed GB as GiB"),
    # ---------------------------------------------------------------- Turing
    dict(key="t4", name="NVIDIA T4", vendor="nvidia",
         tflops=(8.1, None, None, 65, None, 130), mem=MiB(15_360), bw=320, link=32,
         kind="pcie", domain=1, pcie=32, net=NET_OTHER,
         sm=40, cc="7.5", mhz=1590, tdp=70, size_gb=16,
         aliases=("tesla-t4",), names=("t4",),
         source="T4-DS (Turing has no sparsity: figures as printed); SMI 15,360 MiB",
         notes="FP16-only tensor cores (65 = FP16 in, FP32 accumulate): no bf16/tf32 path; "
               "SMs and clock (3P); torch total_memory can read 15,102 MiB"),
    # ---------------------------------------------------------------- Ampere
    dict(key="a100-sxm-40gb", name="NVIDIA A100 SXM4 40GB", vendor="nvidia",
         tflops=(19.5, 156, 312, 312, None, 624), mem=MiB(40_960), bw=1555, link=600,
         kind="nvlink", domain=8, pcie=64, net=NET_HDR,
         sm=108, cc="8.0", mhz=1410, tdp=400, size_gb=40,
         aliases=("a100-40gb", "a100-sxm4-40gb", "a100-sxm-40gb"),
         names=("a100 sxm4", "a100 sxm", "a100"),
         source="A100-DS, A100-WP (sparse 312/624/624/1,248 halved)",
         notes="memory.total 40,960 MiB (40,536 MiB also seen); the WP's non-tensor FP16 78 / "
               "BF16 39 are not MFU denominators"),
    dict(key="a100-sxm-80gb", name="NVIDIA A100 SXM4 80GB", vendor="nvidia",
         tflops=(19.5, 156, 312, 312, None, 624), mem=MiB(81_920), bw=2039, link=600,
         kind="nvlink", domain=8, pcie=64, net=NET_HDR,
         sm=108, cc="8.0", mhz=1410, tdp=400, size_gb=80,
         aliases=("a100", "a100-80gb", "a100-sxm", "a100-sxm4", "a100-sxm4-80gb"),
         names=("a100 sxm4", "a100 sxm", "a100"),
         source="A100-DS (sparse 312/624/624/1,248 halved); SMI 81,920 MiB",
         notes="400 W (500 W custom-thermal SKU); same TFLOPS as every A100"),
    dict(key="a100-pcie-40gb", name="NVIDIA A100 PCIe 40GB", vendor="nvidia",
         tflops=(19.5, 156, 312, 312, None, 624), mem=MiB(40_960), bw=1555, link=600,
         kind="nvlink-bridge", domain=2, pcie=64, net=NET_DC,
         sm=108, cc="8.0", mhz=1410, tdp=250, size_gb=40,
         aliases=("a100-pcie-40gb",), names=("a100 pcie",),
         source="A100-DS (all A100 SKUs carry the same TFLOPS, gpu-specs.md section 3)",
         notes="not a row of gpu-specs.md: 1,555 GB/s and 250 W from the first A100 PCIe "
               "datasheet [unverified]; memory as A100 40GB SXM; NVLink bridge pairs 2 GPUs, "
               "otherwise PCIe4 64 GB/s"),
    dict(key="a100-pcie-80gb", name="NVIDIA A100 PCIe 80GB", vendor="nvidia",
         tflops=(19.5, 156, 312, 312, None, 624), mem=MiB(81_920), bw=1935, link=600,
         kind="nvlink-bridge", domain=2, pcie=64, net=NET_DC,
         sm=108, cc="8.0", mhz=1410, tdp=300, size_gb=80,
         aliases=("a100-pcie", "a100-pcie-80gb"), names=("a100 pcie",),
         source="A100-DS (same TFLOPS as SXM on paper; sparse figures halved)",
         notes="NVLink bridge 600 GB/s pairs 2 GPUs, otherwise PCIe4 64 GB/s"),
    dict(key="a10", name="NVIDIA A10", vendor="nvidia",
         tflops=(31.2, 62.5, 125, 125, None, 250), mem=GiB(24), bw=600, link=64,
         kind="pcie", domain=1, pcie=64, net=NET_OTHER,
         sm=72, cc="8.6", mhz=1695, tdp=150, size_gb=24,
         aliases=(), names=("a10",),
         source="A10-DS (sparse 125/250/250/500 halved)",
         notes="memory: marketed 24 GB as GiB (no observed memory.total; ECC lowers it, cf. "
               "A10G 23,028 MiB); boost clock (3P); A10G is a different part"),
    dict(key="a10g", name="NVIDIA A10G (AWS)", vendor="nvidia",
         tflops=(35, 35, 70, 70, None, 140), mem=MiB(23_028), bw=600, link=64,
         kind="pcie", domain=1, pcie=64, net=NET_OTHER,
         sm=80, cc="8.6", mhz=1710, tdp=300, size_gb=24,
         aliases=(), names=("a10g",),
         source="no NVIDIA datasheet; LLMA (70 bf16), A10G-MEAS (69.5 bf16 / 34.7 tf32 measured); "
                "SMI 23,028 MiB",
         notes="[unverified] every peak (~80 SMs x 512 x 1.71 GHz ~ 70e12 [derived]); SMs, clock "
               "[unverified]; 300 W power limit (3P); PCIe4 assumed; Lightning/composer use the "
               "A10's 125 (wrong SKU): prefer a measured peak"),
    dict(key="rtx-3090", name="NVIDIA GeForce RTX 3090", vendor="nvidia",
         tflops=(35.6, 35.6, 71, 71, None, 284), mem=GiB(24), bw=936, link=112.5,
         kind="nvlink-bridge", domain=2, pcie=64, net=NET_OTHER,
         sm=82, cc="8.6", mhz=1695, tdp=350, size_gb=24,
         aliases=("3090", "rtx3090", "geforce-rtx-3090"), names=("rtx 3090",),
         source="GA102-WP App. A (fp32-acc 71; the fp16-acc 142 is not a PyTorch rate)",
         notes="GeForce: fp16/bf16 with fp32 accumulate at half the fp16-acc rate; Lightning's 35.6 "
               "is the FP32 figure; NVLink bridge 112.5 GB/s [unverified]; SMs, clock, TDP (3P); "
               "memory: marketed 24 GB as GiB"),
    dict(key="rtx-a6000", name="NVIDIA RTX A6000", vendor="nvidia",
         tflops=(38.7, 77.4, 154.8, 154.8, None, 309.7), mem=MiB(49_140), bw=768, link=112.5,
         kind="nvlink-bridge", domain=2, pcie=64,
         net=NET_OTHER, sm=84, cc="8.6", mhz=1800, tdp=300, size_gb=48,
         aliases=("a6000",), names=("rtx a6000",),
         source="GA102-WP Tab. 3; A6000-DS (headline 309.7 = FP16 sparse); SMI 49,140 MiB",
         notes="professional card: fp32-accumulate at full rate (154.8); Lightning's 38.7 and "
               "llm.c's 77.4 are 4x / 2x low; clock (3P); NVLink bridge pairs 2 GPUs"),
    dict(key="a800-sxm-80gb", name="NVIDIA A800 SXM4 80GB", vendor="nvidia", in_reference=False,
         tflops=(19.5, 156, 312, 312, None, 624), mem=MiB(81_920), bw=2039, link=400,
         kind="nvlink", domain=8, pcie=64, net=NET_DC,
         sm=108, cc="8.0", mhz=1410, tdp=400, size_gb=80,
         aliases=("a800", "a800-80gb", "a800-sxm", "a800-sxm4", "a800-sxm4-80gb"),
         names=("a800 sxm4", "a800 sxm"),
         source="A800: the A100's GA100 with NVLink cut to 400 GB/s (export variant); TFLOPS as A100-DS "
                "(sparse halved) per third-party spec copies (3P: hmc-tech.com/gpu/nvidia-a800-vs-nvidia-t40, "
                "311.87 bf16 / 155.94 tf32 / 623.74 int8 dense); SMI 81,920 MiB (3P)",
         notes="NVML name 'NVIDIA A800-SXM4-80GB' (3P); bandwidth 2,039 GB/s as A100 SXM4 80GB [unverified]; "
               "NVLink 400 GB/s bidirectional (3P, the export limit), vs the A100's 600"),
    dict(key="a800-pcie-80gb", name="NVIDIA A800 PCIe 80GB", vendor="nvidia", in_reference=False,
         tflops=(19.5, 156, 312, 312, None, 624), mem=MiB(81_920), bw=1935, link=400,
         kind="nvlink-bridge", domain=2, pcie=64, net=NET_DC,
         sm=108, cc="8.0", mhz=1410, tdp=300, size_gb=80,
         aliases=("a800-pcie", "a800-pcie-80gb"), names=("a800 pcie",),
         source="as a800-sxm-80gb (3P spec copies); PCIe card like A100 PCIe 80GB (A100-DS)",
         notes="bandwidth 1,935 GB/s and 300 W as A100 PCIe 80GB [unverified]; NVLink bridge 400 GB/s "
               "pairs 2 GPUs [unverified], otherwise PCIe4 64 GB/s; the 'A800 40GB Active' is a "
               "different card and is not matched"),
    dict(key="a40", name="NVIDIA A40", vendor="nvidia", in_reference=False,
         tflops=(37.4, 74.8, 149.7, 149.7, None, 299.3), mem=GiB(48), bw=696, link=112.5,
         kind="nvlink-bridge", domain=2, pcie=64, net=NET_OTHER,
         sm=84, cc="8.6", mhz=1740, tdp=300, size_gb=48,
         aliases=(), names=("a40",),
         source="A40-DS (NVIDIA A40 datasheet, verbatim reseller copy (3P): ecer.com …nvidia-a40-gpu…: "
                "FP32 37.4, TF32 74.8 | 149.6*, BF16 (fp32-acc) 149.7 | 299.4*, INT8 299.3 | 598.6*; "
                "sparse halved; 696 GB/s; NVLink 112.5 GB/s bidirectional; PCIe Gen4 64 GB/s; 300 W)",
         notes="fp16 149.7 is the datasheet's FP16-accumulate figure; a professional GA102 card runs fp32 "
               "accumulate at the same rate (as RTX A6000) [derived]; 84 SMs = 10,752 cores / 128; boost "
               "1,740 MHz (3P) gives 84 x 1,024 x 1.74e9 = 149.7e12 [derived]; memory: marketed 48 GB as GiB"),
    dict(key="a30", name="NVIDIA A30", vendor="nvidia", in_reference=False,
         tflops=(10.3, 82.5, None, None, None, None), mem=GiB(24), bw=933, link=64,
         kind="pcie", domain=1, pcie=64, net=NET_OTHER,
         sm=None, cc="8.0", mhz=None, tdp=165, size_gb=24,
         unknown=("bf16", "fp16", "int8"),
         aliases=(), names=("a30",),
         source="third-party copies only (3P): huggingface.co/hardware/a30 (FP32 10.32 TFLOPS, 24 GB, 165 W); "
                "a cloud reseller's A30 page (24 GB HBM2, 933 GB/s, PCIe Gen4, 'up to 165 TFLOPS TF32' = "
                "sparse, halved to 82.5)",
         notes="bf16/fp16/int8 left out: no stored copy of the A30 datasheet gives them (MFU n/a until "
               "--peak-tflops); a 2-GPU NVLink bridge exists but its rate was not found, so the row "
               "uses PCIe4 64 GB/s only; SM count and clock not found; memory: marketed 24 GB as GiB"),
    # ---------------------------------------------------------------- Ada
    dict(key="l4", name="NVIDIA L4", vendor="nvidia",
         tflops=(30.3, 60, 121, 121, 242.5, 242.5), mem=MiB(23_034), bw=300, link=64,
         kind="pcie", domain=1, pcie=64, net=NET_OTHER,
         sm=58, cc="8.9", mhz=2040, tdp=72, size_gb=24,
         aliases=(), names=("l4",),
         source="L4-DS (sparse 120*/242*/485*/485* halved); SMI 23,034 MiB",
         notes="SM count [derived] = 30.3e12 / (256 x 2.04e9); clock (3P)"),
    dict(key="l40", name="NVIDIA L40", vendor="nvidia",
         tflops=(90.5, 90.5, 181.05, 181.05, 362, 362), mem=GiB(48), bw=864, link=64,
         kind="pcie", domain=1, pcie=64,
         net=NET_OTHER, sm=142, cc="8.9", mhz=2490, tdp=300, size_gb=48,
         aliases=(), names=("l40",),
         source="gpu-specs.md section 4 (L40 bf16 181); L40 datasheet via a reseller copy (3P): "
                "TF32 181*, BF16 362.1*, FP8/INT8 724* sparse halved",
         notes="not a row of gpu-specs.md: only bf16 181 is in the reference, the rest (3P); like "
               "GeForce it runs fp32-accumulate at half rate, so the sm_89 fallback would "
               "overstate it 2x; memory: marketed 48 GB as GiB; clock (3P)"),
    dict(key="l40s", name="NVIDIA L40S", vendor="nvidia",
         tflops=(91.6, 183, 362.05, 362.05, 733, 733), mem=MiB(46_068), bw=864, link=64,
         kind="pcie", domain=1, pcie=64,
         net=NET_OTHER, sm=142, cc="8.9", mhz=2520, tdp=350, size_gb=48,
         aliases=(), names=("l40s",),
         source="L40S-DS (prints dense 362.05 beside sparse 733*; TF32 366*, FP8/INT8 1,466* "
                "halved); SMI 46,068 MiB",
         notes="bf16 = the datasheet's printed 362.05 (torchtitan, nanochat, ml-engineering); "
               "733*/2 = 366.5 and 142 x 1,024 x 2.52e9 = 366.4e12 [derived] are 1.2 % higher; "
               "clock (3P); no NVLink"),
    dict(key="rtx-4090", name="NVIDIA GeForce RTX 4090", vendor="nvidia",
         tflops=(82.6, 82.6, 165.2, 165.2, 330.3, 660.6), mem=MiB(24_564), bw=1008, link=64,
         kind="pcie", domain=1, pcie=64,
         net=NET_OTHER, sm=128, cc="8.9", mhz=2520, tdp=450, size_gb=24,
         aliases=("4090", "rtx4090", "geforce-rtx-4090"), names=("rtx 4090",),
         source="ADA-WP v2.1 App. A (fp32-acc; fp16-acc 330.3 not used; FP8 fp32-acc 330.3 "
                "as corrected in v2.02); SMI 24,564 MiB",
         notes="GeForce: fp16/bf16 with fp32 accumulate at half the fp16-acc rate; Lightning's "
               "82.6 is the FP32/TF32 figure; TDP (3P); PCIe4, no NVLink [unverified]"),
    dict(key="rtx-6000-ada", name="NVIDIA RTX 6000 Ada Generation", vendor="nvidia",
         tflops=(91.1, 182, 364, 364, 728.5, 728), mem=GiB(48), bw=960, link=64,
         kind="pcie", domain=1, pcie=64, net=NET_OTHER,
         sm=142, cc="8.9", mhz=2505, tdp=300, size_gb=48,
         aliases=("6000-ada", "rtx6000ada", "rtx-6000-ada-generation"), names=("rtx 6000 ada",),
         source="RTXPRO-WP Tab. 4; 6000ADA-DS (headline 1,457* = FP8 sparse, halved)",
         notes="tf32 ~182 and int8 ~728 [derived]; professional card: fp32-accumulate at full "
               "rate; SMs, clock (3P); memory: marketed 48 GB as GiB; PCIe4, no NVLink "
               "[unverified]"),
    dict(key="l20", name="NVIDIA L20", vendor="nvidia", in_reference=False,
         tflops=(59.35, 59.8, 119.5, 119.5, 239, 239), mem=MiB(46_068), bw=864, link=64,
         kind="pcie", domain=1, pcie=64, net=NET_OTHER,
         sm=92, cc="8.9", mhz=2520, tdp=275, size_gb=48,
         aliases=(), names=("l20",),
         source="tomshardware.com 'new Nvidia AI GPUs designed to get around US export bans' (table from the "
                "Vipera listing (3P): TF32 59.8, BF16/FP16 119.5, FP8/INT8 239, 48 GB GDDR6, 864 GB/s); "
                "FP32 59.35 (3P aggregators: topcpu.net, technical.city); SMI 46,068 MiB, 92 SMs (3P)",
         notes="the listing prints no sparsity flag: taken as dense because 92 SMs x 512 x 2.52e9 = "
               "118.7e12 [derived] matches 119.5 at the half (GeForce-like) fp32-accumulate rate, where a "
               "sparse figure would be 2x the full rate; boost 2,520 MHz (3P); PCIe4, no NVLink"),
    # ---------------------------------------------------------------- Hopper
    dict(key="h100-pcie", name="NVIDIA H100 PCIe 80GB", vendor="nvidia",
         tflops=(51.2, 378, 756, 756, 1513, 1513), mem=GiB(80), bw=2000, link=600,
         kind="nvlink-bridge", domain=2, pcie=128, net=NET_DC,
         sm=114, cc="9.0", mhz=1620, tdp=350, size_gb=80,
         aliases=("h100-pcie-80gb",), names=("h100 pcie",),
         source="H100-WP v1.04 Tab. 3; H100-DS (756*/1,513*/3,026* sparse halved)",
         notes="HBM2e; 2,000 GB/s (WP: 2,039); tensor clock 1,620 MHz (1,755 other); "
               "TDP 300-350 W; memory.total [unverified]: marketed 80 GB as GiB; NVLink bridge "
               "pairs GPUs, otherwise PCIe5 128 GB/s"),
    dict(key="h100-sxm", name="NVIDIA H100 SXM5 80GB", vendor="nvidia",
         tflops=(66.9, 494.7, 989.4, 989.4, 1978.9, 1978.9), mem=MiB(81_559), bw=3350, link=900,
         kind="nvlink", domain=8, pcie=128,
         net=NET_DC, sm=132, cc="9.0", mhz=1830, tdp=700, size_gb=80,
         aliases=("h100", "h100-sxm5", "h100-80gb", "h100-sxm5-80gb", "h100-80gb-hbm3"),
         names=("h100 hbm3", "h100 sxm5", "h100 sxm", "h100 sxm5 hbm3"),
         source="H100-WP v1.04 Tab. 1/3; H100-DS (989*/1,979*/3,958* sparse halved); "
                "SMI 81,559 MiB",
         notes="132 x 4,096 x 1.83e9 = 989.4e12 at the 1,830 MHz tensor clock (FP32 66.9 at "
               "1,980 MHz); 3,350 GB/s (WP: 3,352)"),
    dict(key="h100-nvl", name="NVIDIA H100 NVL 94GB", vendor="nvidia",
         tflops=(60, 417.5, 835.5, 835.5, 1670.5, 1670.5), mem=MiB(95_830), bw=3900, link=600,
         kind="nvlink-bridge", domain=2, pcie=128,
         net=NET_DC, sm=132, cc="9.0", mhz=1545, tdp=400, size_gb=94,
         aliases=("h100-94gb",), names=("h100 nvl",),
         source="H100-DS (2024, one GPU: 835*/1,671*/3,341* sparse halved); SMI 95,830 MiB",
         notes="per GPU: early datasheets quoted the two-board pair (Lightning's 1,978.8 before "
               "June 2026); SMs (3P); tensor clock ~1,545 MHz [derived] from 835.5 / "
               "(132 x 4,096); TDP 350-400 W; NVLink bridge"),
    dict(key="h200-sxm", name="NVIDIA H200 SXM 141GB", vendor="nvidia",
         tflops=(67, 494.5, 989.5, 989.5, 1979, 1979), mem=MiB(143_771), bw=4800, link=900,
         kind="nvlink", domain=8, pcie=128,
         net=NET_DC, sm=132, cc="9.0", mhz=1830, tdp=700, size_gb=141,
         aliases=("h200", "h200-141gb", "h200-sxm5"), names=("h200", "h200 sxm", "h200 hbm3e"),
         source="H200-DS (989*/1,979*/3,958* sparse halved); SMI 143,771 MiB",
         notes="H100-SXM compute, more memory; SMs (3P); tensor clock as H100 SXM [unverified]"),
    dict(key="h200-nvl", name="NVIDIA H200 NVL 141GB", vendor="nvidia",
         tflops=(60, 417.5, 835.5, 835.5, 1670.5, 1670.5), mem=MiB(143_771), bw=4800, link=900,
         kind="nvlink-bridge", domain=2, pcie=128,
         net=NET_DC, sm=132, cc="9.0", mhz=1545, tdp=600, size_gb=141,
         aliases=(), names=("h200 nvl",),
         source="H200-DS; gpu-specs.md sections 3/4 (835.5 / 417.5 / 1,670.5 dense; "
                "Lightning's 840/420/1,680 are rounded up)",
         notes="fp32 60 [unverified] (as H100 NVL); fp8 1,670.5 [derived] (= int8, as on every "
               "Hopper); memory.total as H200 SXM [unverified]; NVLink bridge 900 GB/s "
               "[unverified]; tensor clock ~1,545 MHz [derived]; torchtitan/composer give it 989"),
    dict(key="h800-sxm", name="NVIDIA H800 SXM5 80GB", vendor="nvidia", in_reference=False,
         tflops=(66.9, 494.7, 989.4, 989.4, 1978.9, 1978.9), mem=GiB(80), bw=3350, link=400,
         kind="nvlink", domain=8, pcie=128, net=NET_DC,
         sm=132, cc="9.0", mhz=1830, tdp=700, size_gb=80,
         aliases=("h800", "h800-sxm5", "h800-80gb"), names=("h800", "h800 sxm5", "h800 hbm3", "h800 sxm5 hbm3"),
         source="H100-SXM tensor rates (H100-WP v1.04 Tab. 1/3, sparse halved): the H800 is the same GH100 "
                "die and clocks with NVLink cut to 400 GB/s and FP64 to ~1 TF (3P: philisun.com "
                "'NVIDIA H800 vs H100', aiwiki.ai/wiki/nvidia_h800)",
         notes="NVML name 'NVIDIA H800' (3P); memory.total [unverified]: marketed 80 GB as GiB; "
               "NVLink 400 GB/s bidirectional (3P) vs the H100's 900 — the only figure that changes a step "
               "time here"),
    dict(key="h800-pcie", name="NVIDIA H800 PCIe 80GB", vendor="nvidia", in_reference=False,
         tflops=(51.2, 378, 756, 756, 1513, 1513), mem=GiB(80), bw=2000, link=400,
         kind="nvlink-bridge", domain=2, pcie=128, net=NET_DC,
         sm=114, cc="9.0", mhz=1620, tdp=350, size_gb=80,
         aliases=("h800-pcie-80gb",), names=("h800 pcie",),
         source="H100-PCIe tensor rates (H100-WP v1.04 Tab. 3, sparse halved) for the export variant with "
                "NVLink 400 GB/s (3P: philisun.com 'NVIDIA H800 vs H100')",
         notes="[unverified]: every figure but the 400 GB/s bridge is assumed equal to H100 PCIe; "
               "memory: marketed 80 GB as GiB"),
    dict(key="h20", name="NVIDIA H20 96GB", vendor="nvidia", in_reference=False,
         tflops=(44, 74, 148, 148, 296, 296), mem=GiB(96), bw=4000, link=900,
         kind="nvlink", domain=8, pcie=128, net=NET_DC,
         sm=78, cc="9.0", mhz=None, tdp=400, size_gb=96,
         aliases=("h20-96gb",), names=("h20",),
         source="tomshardware.com 'new Nvidia AI GPUs designed to get around US export bans' (HGX H20 table "
                "(3P): TF32 74, BF16/FP16 148, FP8/INT8 296, 96 GB HBM3, 4.0 TB/s); 148 is the dense figure "
                "(3P: zangshuxian.com '稠密算力 148', willitrunai.com); FP32 44 and 78 SMs (3P, Geekbench)",
         notes="compute throttled to ~15 % of H100 SXM for export; NVLink 900 GB/s and 400 W (3P); no clock "
               "reproduces its tensor peak from the SM count (the rate is capped, not clocked down), so no "
               "tensor clock is given; memory.total [unverified]: 96 GB as GiB; a later 141 GB HBM3e H20 is "
               "not a row"),
    dict(key="gh200-96gb", name="NVIDIA GH200 96GB HBM3 (Hopper GPU)", vendor="nvidia", in_reference=False,
         tflops=(67, 494.5, 989.5, 989.5, 1979, 1979), mem=MiB(97_871), bw=4000, link=900,
         kind="nvlink-c2c", domain=1, pcie=128, net=NET_DC,
         sm=132, cc="9.0", mhz=1830, tdp=None, size_gb=96,
         aliases=("gh200", "gh200-480gb"), names=("gh200",),
         source="GH200 = Grace CPU + an H100-class Hopper GPU on NVLink-C2C 900 GB/s (3P: "
                "spheron.network/blog/nvidia-gh200-guide, aiwiki.ai/wiki/nvidia_gh200): tensor rates as "
                "H200-DS (989*/1,979*/3,958* sparse halved); 96 GB HBM3 at 4 TB/s (3P); "
                "SMI 'NVIDIA GH200 480GB, 97871 MiB' (3P)",
         notes="link = NVLink-C2C to its own Grace CPU, not to another GPU: nvlink_domain 1 (one superchip per "
               "node); NVL2/NVL32 systems join GPUs over NVLink 900 GB/s [unverified]; module power "
               "450-1,000 W shared with the CPU, so no GPU TDP; tensor clock as H100 SXM [unverified]"),
    dict(key="gh200-144gb", name="NVIDIA GH200 144GB HBM3e (Hopper GPU)", vendor="nvidia", in_reference=False,
         tflops=(67, 494.5, 989.5, 989.5, 1979, 1979), mem=MiB(146_831), bw=4900, link=900,
         kind="nvlink-c2c", domain=1, pcie=128, net=NET_DC,
         sm=132, cc="9.0", mhz=1830, tdp=None, size_gb=144,
         aliases=("gh200-144gb-hbm3e",), names=("gh200 144g hbm3e", "gh200 hbm3e"),
         source="as gh200-96gb; SMI 'NVIDIA GH200 144G HBM3e, 146831 MiB' (3P); 4.9 TB/s HBM3e (3P: "
                "anandtech SC23 H200/GH200 article)",
         notes="4,900 GB/s [unverified] (NVIDIA's HBM3e GH200 figure as reported, not seen in a datasheet copy); "
               "otherwise as gh200-96gb"),
    # ---------------------------------------------------------------- Blackwell
    dict(key="b200", name="NVIDIA B200 (HGX)", vendor="nvidia",
         tflops=(75, 1100, 2250, 2250, 4500, 4500), mem=MiB(183_359), bw=7700, link=1800,
         kind="nvlink", domain=8, pcie=128,
         net=NET_DC, sm=148, cc="10.0", mhz=1856, tdp=1000, size_gb=180,
         aliases=("b200-180gb", "b200-192gb"), names=("b200",),
         source="BW-DS (HGX B200 per GPU: 2.2/4.5/9/9 PF sparse halved); SMI 183,359 MiB; MLE",
         notes="launch figures 192 GB / 8 TB/s: 183,359 MiB = 192.3e9 B = 179.1 GiB, same memory; "
               "tensor clock ~1,856 MHz [derived] = 2.25e15 / (148 x 8,192), max SM clock "
               "reported 1,965 MHz (MLE); NVIDIA's brief rounds dense BF16 to 2.2 PF (3P); fp32 75 (not 80): the "
               "Blackwell datasheet's per-GPU table (verbatim copy, 3P: zdszero.github.io Hardware; also "
               "verda.com, hmc-tech 75.02) wins over glennklockwood.com's 80 (HGX B200) / 90 (GB200 at "
               "1,200 W), whose source document is not named: vendor table first"),
    dict(key="gb200", name="NVIDIA GB200 (per Blackwell GPU)", vendor="nvidia",
         tflops=(80, 1250, 2500, 2500, 5000, 5000), mem=MiB(189_471), bw=8000, link=1800,
         kind="nvlink", domain=72, pcie=128,
         net=NET_DC, sm=148, cc="10.0", mhz=2062, tdp=1200, size_gb=186,
         aliases=("gb200-nvl72",), names=("gb200",),
         source="BW-DS (GB200 per GPU: 2.5/5/10/10 PF sparse halved); SMI 189,471 MiB; MLE",
         notes="148 SMs (152 in two third-party sources [unverified]); 148 x 8,192 x 2.062e9 = "
               "2.50e15 [derived] with the 2,062 MHz max SM clock reported (MLE); fp32 80 from the same "
               "datasheet table as b200's 75 (glennklockwood.com's 90 is not used, see b200); the sm_100 "
               "fallback's 256 FLOPs/clk/SM gives 78.1e12 at 2,062 MHz: fp32 runs at a higher clock"),
    dict(key="b300", name="NVIDIA B300 (HGX, Blackwell Ultra)", vendor="nvidia", in_reference=False,
         tflops=(75, 1100, 2250, 2250, 4500, None), mem=MiB(275_040), bw=7700, link=1800,
         kind="nvlink", domain=8, pcie=256, net=NET_DC,
         sm=148, cc="10.3", mhz=None, tdp=1100, size_gb=288,
         unknown=("int8",),
         aliases=("b300-sxm6", "b300-288gb"), names=("b300", "b300 sxm6", "b300 sxm6 ac"),
         source="per-GPU dense table (3P: verda.com/blog/gb300-nvl72-architecture: B300 FP32 75, TF32 1.1 PF, "
                "FP16/BF16 2.25 PF, FP8 4.5 PF, 7.7 TB/s, 1.1 kW); glennklockwood.com/garden/processors/B300 "
                "(HGX B300: TF32 1,125, BF16 2,250, FP8 4,500 dense); SMI 'NVIDIA B300 SXM6 AC, 275040 MiB', "
                "CC 10.3, 148 SMs (3P)",
         notes="int8 left out: sources disagree (Verda 0.15 POPS dense, Glenn Lockwood 4,500) - Blackwell Ultra "
               "cut INT8 and FP64; tf32 1,100 (Verda; 1,125 = Glenn's halved 2,250); bandwidth 7,700 (Verda) "
               "vs 8,000 GB/s (Glenn) [unverified]; TDP 1,100 W (Verda) vs 1,400 W (Glenn); PCIe Gen6 "
               "256 GB/s (Glenn, 3P); a locked 1,920 MHz SM clock is reported, no spec tensor clock"),
    dict(key="gb300", name="NVIDIA GB300 (per Blackwell Ultra GPU)", vendor="nvidia", in_reference=False,
         tflops=(80, 1250, 2500, 2500, 5000, None), mem=GiB(279), bw=8000, link=1800,
         kind="nvlink", domain=72, pcie=256, net=NET_DC,
         sm=None, cc="10.3", mhz=None, tdp=1400, size_gb=288,
         unknown=("int8",),
         aliases=("gb300-nvl72",), names=("gb300",),
         source="per-GPU dense table (3P: verda.com/blog/gb300-nvl72-architecture: GB300 FP32 80, TF32 1.25 PF, "
                "FP16/BF16 2.5 PF, FP8 5 PF, 279 GB, 8 TB/s, 1.4 kW; NVLink5 1.8 TB/s); glennklockwood.com "
                "(GB300 NVL72: 72 GPUs on one NVLink domain)",
         notes="int8 left out (sources disagree, as b300); 279 'GB' read as GiB [unverified] because the same "
               "table's B300 '270 GB' matches 275,040 MiB = 268.6 GiB; SM count not found; PCIe Gen6 "
               "[unverified]"),
    dict(key="rtx-5090", name="NVIDIA GeForce RTX 5090", vendor="nvidia", in_reference=False,
         tflops=(104.8, 104.8, 209.5, 209.5, 419, 838), mem=MiB(32_607), bw=1792, link=128,
         kind="pcie", domain=1, pcie=128, net=NET_OTHER,
         sm=170, cc="12.0", mhz=2407, tdp=575, size_gb=32,
         aliases=("5090", "rtx5090", "geforce-rtx-5090"), names=("rtx 5090",),
         source="NVIDIA GeForce RTX 50 series page via third parties (3P: spheron.network/blog/nvidia-rtx-5090-specs "
                "- FP16 tensor 838.4 sparse, FP32 ~105, 1,792 GB/s, 575 W, 170 SMs; pocketmags Linux Format "
                "review - 2,407 MHz, 104 FP32; castromedia.org - 3,352 AI TOPS = 838 dense INT8); "
                "SMI 32,607 MiB (3P)",
         notes="GeForce: 838.4 is sparse fp16-accumulate, so dense fp16-acc 419 and the fp32-accumulate rate "
               "PyTorch gets is half: 209.5 = 170 x 512 x 2.407e9 [derived]; fp8 419 = 2 x bf16 [derived, "
               "as Ada GeForce]; tf32 = fp32 rate [derived, as RTX 4090]; PCIe5 x16, no NVLink; "
               "'RTX 5090 D' and the Laptop GPU are different parts, not matched"),
    dict(key="rtx-pro-6000", name="NVIDIA RTX PRO 6000 Blackwell", vendor="nvidia", in_reference=False,
         tflops=(125.95, 251.9, 503.8, 503.8, 1007.6, 1007.6), mem=MiB(97_887), bw=1792, link=128,
         kind="pcie", domain=1, pcie=128, net=NET_OTHER,
         sm=188, cc="12.0", mhz=2617, tdp=600, size_gb=96,
         aliases=("rtx-pro-6000-blackwell", "rtxpro6000"),
         names=("rtx pro 6000 blackwell server edition", "rtx pro 6000 blackwell workstation edition",
                "rtx pro 6000 blackwell"),
         source="RTXPRO-WP (NVIDIA RTX Blackwell PRO GPU Architecture) via a third-party spec copy (3P: "
                "hmc-tech.com/gpu/nvidia-rtx-pro-6000-blackwell-vs-…: FP32 125.95, TF32 251.9, BF16/FP16 "
                "(fp32-acc) 503.8, FP8 1.01 PF, INT8 1.01 POPS dense, 2,617 MHz, 600 W); 188 SMs, 96 GB "
                "GDDR7 at 1,792 GB/s (3P: gpu.name, VideoCardz); SMI 'Server Edition', 97,887 MiB (3P)",
         notes="professional card: fp32-accumulate at full rate, 188 x 1,024 x 2.617e9 = 503.8e12 [derived]; "
               "Workstation and Server Editions share the row; the 300 W Max-Q Workstation Edition clocks "
               "lower and is not matched (derived fallback); PCIe5 x16, no NVLink"),
    # ---------------------------------------------------------------- AMD
    dict(key="mi250x", name="AMD Instinct MI250X (one GCD)", vendor="amd",
         tflops=(23.95, None, 191.5, 191.5, None, 191.5), mem=GiB(64), bw=1600, link=400,
         kind="infinity-fabric", domain=2, pcie=64,
         net=NET_DC, sm=110, cc="gfx90a", mhz=1700, tdp=None, size_gb=64,
         aliases=("mi250x-gcd",), names=("mi250x", "mi250x mi250"),
         source="AMD-MI250X, ROCM-MI250, ROCM-SPECS (per OAM 383 / 47.9 vector, halved per GCD; "
                "torchtitan 191.5)",
         notes="one torch device = one GCD (110 CUs, 64 GiB, 1.6 TB/s); nanochat's 383 per device "
               "halves MFU; fp32 = vector 47.9/2 [derived] (matrix fp32 95.7 per OAM); ROCm may "
               "name an MI250 (fewer CUs) 'MI250X/MI250'; 400 GB/s joins the two GCDs, the 8 "
               "external IF links [unverified]; 500 W per OAM [unverified]"),
    dict(key="mi250x-oam", name="AMD Instinct MI250X (OAM, 2 GCDs)", vendor="amd",
         tflops=(47.9, None, 383, 383, None, 383), mem=GiB(128), bw=3200, link=400,
         kind="infinity-fabric", domain=1, pcie=64, net=NET_DC,
         sm=220, cc="gfx90a", mhz=1700, tdp=500, size_gb=128,
         aliases=(), names=(),
         source="AMD-MI250X, ROCM-MI250, ROCM-SPECS (383.0 = 220 x 1,024 x 1.7e9)",
         notes="the whole module = two torch devices: for per-device MFU use mi250x; fp32 = "
               "vector (matrix 95.7); 500 W [unverified]; 400 GB/s is the in-package GCD link"),
    dict(key="mi300x", name="AMD Instinct MI300X", vendor="amd",
         tflops=(163.4, 653.7, 1307.4, 1307.4, 2614.9, 2614.9), mem=GiB(192), bw=5300, link=896,
         kind="infinity-fabric", domain=8, pcie=128,
         net=NET_DC, sm=304, cc="gfx942", mhz=2100, tdp=750, size_gb=192,
         aliases=(), names=("mi300x",),
         source="ROCM-MI300, ROCM-SPECS (dense; AMD's sparse figures are 2x); MLPERF (750 W)",
         notes="1,307.4 = 304 x 2,048 x 2.1e9; 192 GB = 192 GiB; Infinity Fabric 7 x 128 GB/s "
               "[unverified]; in CPX mode each XCD (38 CUs) is a device with 1/8 of the peak "
               "[derived]"),
    dict(key="mi325x", name="AMD Instinct MI325X", vendor="amd", in_reference=False,
         tflops=(163.4, 653.7, 1307.4, 1307.4, 2614.9, 2614.9), mem=GiB(256), bw=6000, link=896,
         kind="infinity-fabric", domain=8, pcie=128, net=NET_DC,
         sm=304, cc="gfx942", mhz=2100, tdp=1000, size_gb=256,
         aliases=(), names=("mi325x",),
         source="ROCM-SPECS (rocm.docs.amd.com reference/gpu-specs: MI325X CDNA3 gfx942, 256 GiB, 304 CUs); "
                "dense peaks = MI300X's (same 304 CUs at 2.1 GHz; 3P: awesomeagents.ai/hardware/amd-mi325x "
                "FP16/BF16 1,307.4, FP8 2,614.9 dense / 5,229.8 sparse, TF32 653.7, FP32 163.4); "
                "6 TB/s and 1,000 W (3P: same page, yobitel.com)",
         notes="an HBM3E refresh of MI300X: compute unchanged; 7 Infinity Fabric links joining 8 GPUs "
               "(3P: wiaix.com), 896 GB/s as MI300X [unverified]; PCIe5 x16"),
    dict(key="mi350x", name="AMD Instinct MI350X", vendor="amd", in_reference=False,
         tflops=(144.2, None, 2306.9, 2306.9, 4613.7, 4613.7), mem=GiB(288), bw=8000, link=896,
         kind="infinity-fabric", domain=8, pcie=128, net=NET_DC,
         sm=256, cc="gfx950", mhz=2200, tdp=1000, size_gb=288,
         unknown=("tf32",),
         aliases=(), names=("mi350x",),
         source="ROCM-SPECS (MI350X CDNA4 gfx950, 288 GiB, 256 CUs); 2.2 GHz peak clock and 1,000 W "
                "(3P: wccftech Hot Chips 2025); CDNA4 matrix rate 8,192 FP8 FLOPs/clk/CU (3P: ISSCC 2026 "
                "report, world-today-news.com); 8-GPU platform FP16 18.5 PF / FP8 37 PF (3P: kontronn.com)",
         notes="[derived] peaks: bf16 256 x 4,096 x 2.2e9 = 2,306.9e12 (x8 = 18.5 PF, the platform figure), "
               "fp8/int8 2x that, fp32 256 x 256 x 2.2e9; tf32 left out: no CDNA4 TF32 figure found; "
               "Infinity Fabric rate not found: 896 GB/s (MI300X's) is an assumption [unverified]"),
    dict(key="mi355x", name="AMD Instinct MI355X", vendor="amd", in_reference=False,
         tflops=(157.3, None, 2516.6, 2516.6, 5033.2, 5033.2), mem=GiB(288), bw=8000, link=896,
         kind="infinity-fabric", domain=8, pcie=128, net=NET_DC,
         sm=256, cc="gfx950", mhz=2400, tdp=1400, size_gb=288,
         unknown=("tf32",),
         aliases=(), names=("mi355x",),
         source="ROCM-SPECS (MI355X CDNA4 gfx950, 288 GiB, 256 CUs); FP32 157.3, INT8 5 POPS dense, 8 TB/s "
                "(3P: svethardware.cz); FP8 5 PF and 8,192 FP8 FLOPs/clk/CU (3P: ISSCC 2026 report); "
                "2.4 GHz, 1,400 W (3P: wccftech Hot Chips 2025)",
         notes="[derived] bf16 256 x 4,096 x 2.4e9 = 2,516.6e12, fp8 5,033.2e12 (the '5 PF'); sparse FP4 "
               "20.1 PF (3P: tomshardware) = 4 x 2 x bf16, consistent; tf32 left out (no figure found); "
               "Infinity Fabric 896 GB/s assumed as MI300X [unverified]"),
)

# Section 5: dense FLOPs per clock per SM (per CU on AMD), keyed by compute
# capability; "geforce" holds the GeForce variant where it differs (half-rate
# fp32-accumulate tensor math).  int8 rates are derived here from section 1.
ARCH_RATES: dict[str, dict] = {
    "7.0": dict(arch="Volta sm_70", src="A100-WP",
                rates=dict(fp32=128, fp16=1024)),
    "7.5": dict(arch="Turing sm_75", src="T4-DS [derived]",
                rates=dict(fp32=128, fp16=1024, int8=2048)),
    "8.0": dict(arch="Ampere sm_80", src="A100-WP",
                rates=dict(fp32=128, tf32=1024, bf16=2048, fp16=2048, int8=4096)),
    "8.6": dict(arch="Ampere sm_86", src="A10-DS, GA102-WP",
                rates=dict(fp32=256, tf32=512, bf16=1024, fp16=1024, int8=2048),
                geforce=dict(fp32=256, tf32=256, bf16=512, fp16=512, int8=2048)),
    "8.9": dict(arch="Ada sm_89", src="ADA-WP, L4-DS",
                rates=dict(fp32=256, tf32=512, bf16=1024, fp16=1024, fp8=2048, int8=2048),
                geforce=dict(fp32=256, tf32=256, bf16=512, fp16=512, fp8=1024, int8=2048)),
    "9.0": dict(arch="Hopper sm_90", src="H100-WP",
                rates=dict(fp32=256, tf32=2048, bf16=4096, fp16=4096, fp8=8192, int8=8192)),
    "10.0": dict(arch="Blackwell sm_100 [derived; fp32 unverified]", src="BW-DS, MLE",
                 rates=dict(fp32=256, tf32=4096, bf16=8192, fp16=8192, fp8=16384, int8=16384)),
    "gfx90a": dict(arch="AMD CDNA2 gfx90a", src="ROCM-MI250",
                   rates=dict(fp32=128, bf16=1024, fp16=1024, int8=1024)),
    "gfx942": dict(arch="AMD CDNA3 gfx942", src="ROCM-MI300",
                   rates=dict(fp32=256, tf32=1024, bf16=2048, fp16=2048, fp8=4096, int8=4096)),
}
