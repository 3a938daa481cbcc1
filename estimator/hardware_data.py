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
* ``bw``, ``link``, ``net``: decimal GB/s; links are bidirectional aggregates.
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

GPU_ROWS: tuple[dict, ...] = (
    # ---------------------------------------------------------------- Volta
    dict(key="v100-sxm2-16gb", name="NVIDIA Tesla V100 SXM2 16GB", vendor="nvidia",
         tflops=(15.7, None, None, 125, None, None), mem=GiB(16), bw=900, link=300, net=NET_DC,
         sm=80, cc="7.0", mhz=1530, tdp=300, size_gb=16,
         aliases=("v100-16gb", "v100-sxm2-16gb", "v100-sxm-16gb"), names=("v100 sxm2", "v100 sxm"),
         source="V100-DS; A100-WP (V100 column)",
         notes="FP16-only tensor cores: no bf16/tf32 path, bf16 runs on CUDA cores; "
               "memory: marketed 16 GB as GiB (no observed memory.total); NVLink2 300 GB/s (3P)"),
    dict(key="v100-sxm2-32gb", name="NVIDIA Tesla V100 SXM2 32GB", vendor="nvidia",
         tflops=(15.7, None, None, 125, None, None), mem=MiB(32_510), bw=900, link=300, net=NET_DC,
         sm=80, cc="7.0", mhz=1530, tdp=300, size_gb=32,
         aliases=("v100", "v100-sxm2", "v100-sxm", "v100-32gb", "v100-sxm2-32gb"),
         names=("v100 sxm2", "v100 sxm"),
         source="V100-DS; A100-WP (V100 column); SMI 32,510 MiB",
         notes="FP16-only tensor cores: no bf16/tf32 path; memory.total 32,510 MiB with ECC on "
               "(32,768 without); NVLink2 300 GB/s (3P)"),
    dict(key="v100-pcie-16gb", name="NVIDIA Tesla V100 PCIe 16GB", vendor="nvidia",
         tflops=(14, None, None, 112, None, None), mem=GiB(16), bw=900, link=32, net=NET_DC,
         sm=80, cc="7.0", mhz=1380, tdp=250, size_gb=16,
         aliases=("v100-pcie-16gb",), names=("v100 pcie",),
         source="V100-DS",
         notes="FP16-only tensor cores; boost clock 1,380 MHz and 250 W [unverified]; "
               "memory: marketed GB as GiB; V100S PCIe is a different part (130), not matched"),
    dict(key="v100-pcie-32gb", name="NVIDIA Tesla V100 PCIe 32GB", vendor="nvidia",
         tflops=(14, None, None, 112, None, None), mem=GiB(32), bw=900, link=32, net=NET_DC,
         sm=80, cc="7.0", mhz=1380, tdp=250, size_gb=32,
         aliases=("v100-pcie", "v100-pcie-32gb"), names=("v100 pcie",),
         source="V100-DS",
         notes="FP16-only tensor cores; boost clock 1,380 MHz and 250 W [unverified]; "
               "memory: marketed GB as GiB"),
    # ---------------------------------------------------------------- Turing
    dict(key="t4", name="NVIDIA T4", vendor="nvidia",
         tflops=(8.1, None, None, 65, None, 130), mem=MiB(15_360), bw=320, link=32, net=NET_OTHER,
         sm=40, cc="7.5", mhz=1590, tdp=70, size_gb=16,
         aliases=("tesla-t4",), names=("t4",),
         source="T4-DS (Turing has no sparsity: figures as printed); SMI 15,360 MiB",
         notes="FP16-only tensor cores (65 = FP16 in, FP32 accumulate): no bf16/tf32 path; "
               "SMs and clock (3P); torch total_memory can read 15,102 MiB"),
    # ---------------------------------------------------------------- Ampere
    dict(key="a100-sxm-40gb", name="NVIDIA A100 SXM4 40GB", vendor="nvidia",
         tflops=(19.5, 156, 312, 312, None, 624), mem=MiB(40_960), bw=1555, link=600, net=NET_DC,
         sm=108, cc="8.0", mhz=1410, tdp=400, size_gb=40,
         aliases=("a100-40gb", "a100-sxm4-40gb", "a100-sxm-40gb"),
         names=("a100 sxm4", "a100 sxm", "a100"),
         source="A100-DS, A100-WP (sparse 312/624/624/1,248 halved)",
         notes="memory.total 40,960 MiB (40,536 MiB also seen); the WP's non-tensor FP16 78 / "
               "BF16 39 are not MFU denominators"),
    dict(key="a100-sxm-80gb", name="NVIDIA A100 SXM4 80GB", vendor="nvidia",
         tflops=(19.5, 156, 312, 312, None, 624), mem=MiB(81_920), bw=2039, link=600, net=NET_DC,
         sm=108, cc="8.0", mhz=1410, tdp=400, size_gb=80,
         aliases=("a100", "a100-80gb", "a100-sxm", "a100-sxm4", "a100-sxm4-80gb"),
         names=("a100 sxm4", "a100 sxm", "a100"),
         source="A100-DS (sparse 312/624/624/1,248 halved); SMI 81,920 MiB",
         notes="400 W (500 W custom-thermal SKU); same TFLOPS as every A100"),
    dict(key="a100-pcie-40gb", name="NVIDIA A100 PCIe 40GB", vendor="nvidia",
         tflops=(19.5, 156, 312, 312, None, 624), mem=MiB(40_960), bw=1555, link=600, net=NET_DC,
         sm=108, cc="8.0", mhz=1410, tdp=250, size_gb=40,
         aliases=("a100-pcie-40gb",), names=("a100 pcie",),
         source="A100-DS (all A100 SKUs carry the same TFLOPS, gpu-specs.md section 3)",
         notes="not a row of gpu-specs.md: 1,555 GB/s and 250 W from the first A100 PCIe "
               "datasheet [unverified]; memory as A100 40GB SXM; NVLink bridge pairs 2 GPUs, "
               "otherwise PCIe4 64 GB/s"),
    dict(key="a100-pcie-80gb", name="NVIDIA A100 PCIe 80GB", vendor="nvidia",
         tflops=(19.5, 156, 312, 312, None, 624), mem=MiB(81_920), bw=1935, link=600, net=NET_DC,
         sm=108, cc="8.0", mhz=1410, tdp=300, size_gb=80,
         aliases=("a100-pcie", "a100-pcie-80gb"), names=("a100 pcie",),
         source="A100-DS (same TFLOPS as SXM on paper; sparse figures halved)",
         notes="NVLink bridge 600 GB/s pairs 2 GPUs, otherwise PCIe4 64 GB/s"),
    dict(key="a10", name="NVIDIA A10", vendor="nvidia",
         tflops=(31.2, 62.5, 125, 125, None, 250), mem=GiB(24), bw=600, link=64, net=NET_OTHER,
         sm=72, cc="8.6", mhz=1695, tdp=150, size_gb=24,
         aliases=(), names=("a10",),
         source="A10-DS (sparse 125/250/250/500 halved)",
         notes="memory: marketed 24 GB as GiB (no observed memory.total; ECC lowers it, cf. "
               "A10G 23,028 MiB); boost clock (3P); A10G is a different part"),
    dict(key="a10g", name="NVIDIA A10G (AWS)", vendor="nvidia",
         tflops=(35, 35, 70, 70, None, 140), mem=MiB(23_028), bw=600, link=64, net=NET_OTHER,
         sm=80, cc="8.6", mhz=1710, tdp=300, size_gb=24,
         aliases=(), names=("a10g",),
         source="no NVIDIA datasheet; LLMA (70 bf16), A10G-MEAS (69.5 bf16 / 34.7 tf32 measured); "
                "SMI 23,028 MiB",
         notes="[unverified] every peak (~80 SMs x 512 x 1.71 GHz ~ 70e12 [derived]); SMs, clock "
               "[unverified]; 300 W power limit (3P); PCIe4 assumed; Lightning/composer use the "
               "A10's 125 (wrong SKU): prefer a measured peak"),
    dict(key="rtx-3090", name="NVIDIA GeForce RTX 3090", vendor="nvidia",
         tflops=(35.6, 35.6, 71, 71, None, 284), mem=GiB(24), bw=936, link=112.5, net=NET_OTHER,
         sm=82, cc="8.6", mhz=1695, tdp=350, size_gb=24,
         aliases=("3090", "rtx3090", "geforce-rtx-3090"), names=("rtx 3090",),
         source="GA102-WP App. A (fp32-acc 71; the fp16-acc 142 is not a PyTorch rate)",
         notes="GeForce: fp16/bf16 with fp32 accumulate at half the fp16-acc rate; Lightning's 35.6 "
               "is the FP32 figure; NVLink bridge 112.5 GB/s [unverified]; SMs, clock, TDP (3P); "
               "memory: marketed 24 GB as GiB"),
    dict(key="rtx-a6000", name="NVIDIA RTX A6000", vendor="nvidia",
         tflops=(38.7, 77.4, 154.8, 154.8, None, 309.7), mem=MiB(49_140), bw=768, link=112.5,
         net=NET_OTHER, sm=84, cc="8.6", mhz=1800, tdp=300, size_gb=48,
         aliases=("a6000",), names=("rtx a6000",),
         source="GA102-WP Tab. 3; A6000-DS (headline 309.7 = FP16 sparse); SMI 49,140 MiB",
         notes="professional card: fp32-accumulate at full rate (154.8); Lightning's 38.7 and "
               "llm.c's 77.4 are 4x / 2x low; clock (3P); NVLink bridge pairs 2 GPUs"),
    # ---------------------------------------------------------------- Ada
    dict(key="l4", name="NVIDIA L4", vendor="nvidia",
         tflops=(30.3, 60, 121, 121, 242.5, 242.5), mem=MiB(23_034), bw=300, link=64, net=NET_OTHER,
         sm=58, cc="8.9", mhz=2040, tdp=72, size_gb=24,
         aliases=(), names=("l4",),
         source="L4-DS (sparse 120*/242*/485*/485* halved); SMI 23,034 MiB",
         notes="SM count [derived] = 30.3e12 / (256 x 2.04e9); clock (3P)"),
    dict(key="l40", name="NVIDIA L40", vendor="nvidia",
         tflops=(90.5, 90.5, 181.05, 181.05, 362, 362), mem=GiB(48), bw=864, link=64,
         net=NET_OTHER, sm=142, cc="8.9", mhz=2490, tdp=300, size_gb=48,
         aliases=(), names=("l40",),
         source="gpu-specs.md section 4 (L40 bf16 181); L40 datasheet via a reseller copy (3P): "
                "TF32 181*, BF16 362.1*, FP8/INT8 724* sparse halved",
         notes="not a row of gpu-specs.md: only bf16 181 is in the reference, the rest (3P); like "
               "GeForce it runs fp32-accumulate at half rate, so the sm_89 fallback would "
               "overstate it 2x; memory: marketed 48 GB as GiB; clock (3P)"),
    dict(key="l40s", name="NVIDIA L40S", vendor="nvidia",
         tflops=(91.6, 183, 362.05, 362.05, 733, 733), mem=MiB(46_068), bw=864, link=64,
         net=NET_OTHER, sm=142, cc="8.9", mhz=2520, tdp=350, size_gb=48,
         aliases=(), names=("l40s",),
         source="L40S-DS (prints dense 362.05 beside sparse 733*; TF32 366*, FP8/INT8 1,466* "
                "halved); SMI 46,068 MiB",
         notes="bf16 = the datasheet's printed 362.05 (torchtitan, nanochat, ml-engineering); "
               "733*/2 = 366.5 and 142 x 1,024 x 2.52e9 = 366.4e12 [derived] are 1.2 % higher; "
               "clock (3P); no NVLink"),
    dict(key="rtx-4090", name="NVIDIA GeForce RTX 4090", vendor="nvidia",
         tflops=(82.6, 82.6, 165.2, 165.2, 330.3, 660.6), mem=MiB(24_564), bw=1008, link=64,
         net=NET_OTHER, sm=128, cc="8.9", mhz=2520, tdp=450, size_gb=24,
         aliases=("4090", "rtx4090", "geforce-rtx-4090"), names=("rtx 4090",),
         source="ADA-WP v2.1 App. A (fp32-acc; fp16-acc 330.3 not used; FP8 fp32-acc 330.3 "
                "as corrected in v2.02); SMI 24,564 MiB",
         notes="GeForce: fp16/bf16 with fp32 accumulate at half the fp16-acc rate; Lightning's "
               "82.6 is the FP32/TF32 figure; TDP (3P); PCIe4, no NVLink [unverified]"),
    dict(key="rtx-6000-ada", name="NVIDIA RTX 6000 Ada Generation", vendor="nvidia",
         tflops=(91.1, 182, 364, 364, 728.5, 728), mem=GiB(48), bw=960, link=64, net=NET_OTHER,
         sm=142, cc="8.9", mhz=2505, tdp=300, size_gb=48,
         aliases=("6000-ada", "rtx6000ada", "rtx-6000-ada-generation"), names=("rtx 6000 ada",),
         source="RTXPRO-WP Tab. 4; 6000ADA-DS (headline 1,457* = FP8 sparse, halved)",
         notes="tf32 ~182 and int8 ~728 [derived]; professional card: fp32-accumulate at full "
               "rate; SMs, clock (3P); memory: marketed 48 GB as GiB; PCIe4, no NVLink "
               "[unverified]"),
    # ---------------------------------------------------------------- Hopper
    dict(key="h100-pcie", name="NVIDIA H100 PCIe 80GB", vendor="nvidia",
         tflops=(51.2, 378, 756, 756, 1513, 1513), mem=GiB(80), bw=2000, link=600, net=NET_DC,
         sm=114, cc="9.0", mhz=1620, tdp=350, size_gb=80,
         aliases=("h100-pcie-80gb",), names=("h100 pcie",),
         source="H100-WP v1.04 Tab. 3; H100-DS (756*/1,513*/3,026* sparse halved)",
         notes="HBM2e; 2,000 GB/s (WP: 2,039); tensor clock 1,620 MHz (1,755 other); "
               "TDP 300-350 W; memory.total [unverified]: marketed 80 GB as GiB; NVLink bridge "
               "pairs GPUs, otherwise PCIe5 128 GB/s"),
    dict(key="h100-sxm", name="NVIDIA H100 SXM5 80GB", vendor="nvidia",
         tflops=(66.9, 494.7, 989.4, 989.4, 1978.9, 1978.9), mem=MiB(81_559), bw=3350, link=900,
         net=NET_DC, sm=132, cc="9.0", mhz=1830, tdp=700, size_gb=80,
         aliases=("h100", "h100-sxm5", "h100-80gb", "h100-sxm5-80gb", "h100-80gb-hbm3"),
         names=("h100 hbm3", "h100 sxm5", "h100 sxm", "h100 sxm5 hbm3"),
         source="H100-WP v1.04 Tab. 1/3; H100-DS (989*/1,979*/3,958* sparse halved); "
                "SMI 81,559 MiB",
         notes="132 x 4,096 x 1.83e9 = 989.4e12 at the 1,830 MHz tensor clock (FP32 66.9 at "
               "1,980 MHz); 3,350 GB/s (WP: 3,352)"),
    dict(key="h100-nvl", name="NVIDIA H100 NVL 94GB", vendor="nvidia",
         tflops=(60, 417.5, 835.5, 835.5, 1670.5, 1670.5), mem=MiB(95_830), bw=3900, link=600,
         net=NET_DC, sm=132, cc="9.0", mhz=1545, tdp=400, size_gb=94,
         aliases=("h100-94gb",), names=("h100 nvl",),
         source="H100-DS (2024, one GPU: 835*/1,671*/3,341* sparse halved); SMI 95,830 MiB",
         notes="per GPU: early datasheets quoted the two-board pair (Lightning's 1,978.8 before "
               "June 2026); SMs (3P); tensor clock ~1,545 MHz [derived] from 835.5 / "
               "(132 x 4,096); TDP 350-400 W; NVLink bridge"),
    dict(key="h200-sxm", name="NVIDIA H200 SXM 141GB", vendor="nvidia",
         tflops=(67, 494.5, 989.5, 989.5, 1979, 1979), mem=MiB(143_771), bw=4800, link=900,
         net=NET_DC, sm=132, cc="9.0", mhz=1830, tdp=700, size_gb=141,
         aliases=("h200", "h200-141gb", "h200-sxm5"), names=("h200", "h200 sxm", "h200 hbm3e"),
         source="H200-DS (989*/1,979*/3,958* sparse halved); SMI 143,771 MiB",
         notes="H100-SXM compute, more memory; SMs (3P); tensor clock as H100 SXM [unverified]"),
    dict(key="h200-nvl", name="NVIDIA H200 NVL 141GB", vendor="nvidia",
         tflops=(60, 417.5, 835.5, 835.5, 1670.5, 1670.5), mem=MiB(143_771), bw=4800, link=900,
         net=NET_DC, sm=132, cc="9.0", mhz=1545, tdp=600, size_gb=141,
         aliases=(), names=("h200 nvl",),
         source="H200-DS; gpu-specs.md sections 3/4 (835.5 / 417.5 / 1,670.5 dense; "
                "Lightning's 840/420/1,680 are rounded up)",
         notes="fp32 60 [unverified] (as H100 NVL); fp8 1,670.5 [derived] (= int8, as on every "
               "Hopper); memory.total as H200 SXM [unverified]; NVLink bridge 900 GB/s "
               "[unverified]; tensor clock ~1,545 MHz [derived]; torchtitan/composer give it 989"),
    # ---------------------------------------------------------------- Blackwell
    dict(key="b200", name="NVIDIA B200 (HGX)", vendor="nvidia",
         tflops=(75, 1100, 2250, 2250, 4500, 4500), mem=MiB(183_359), bw=7700, link=1800,
         net=NET_DC, sm=148, cc="10.0", mhz=1856, tdp=1000, size_gb=180,
         aliases=("b200-180gb", "b200-192gb"), names=("b200",),
         source="BW-DS (HGX B200 per GPU: 2.2/4.5/9/9 PF sparse halved); SMI 183,359 MiB; MLE",
         notes="launch figures 192 GB / 8 TB/s: 183,359 MiB = 192.3e9 B = 179.1 GiB, same memory; "
               "tensor clock ~1,856 MHz [derived] = 2.25e15 / (148 x 8,192), max SM clock "
               "reported 1,965 MHz (MLE); NVIDIA's brief rounds dense BF16 to 2.2 PF (3P)"),
    dict(key="gb200", name="NVIDIA GB200 (per Blackwell GPU)", vendor="nvidia",
         tflops=(80, 1250, 2500, 2500, 5000, 5000), mem=MiB(189_471), bw=8000, link=1800,
         net=NET_DC, sm=148, cc="10.0", mhz=2062, tdp=1200, size_gb=186,
         aliases=("gb200-nvl72",), names=("gb200",),
         source="BW-DS (GB200 per GPU: 2.5/5/10/10 PF sparse halved); SMI 189,471 MiB; MLE",
         notes="148 SMs (152 in two third-party sources [unverified]); 148 x 8,192 x 2.062e9 = "
               "2.50e15 [derived] with the 2,062 MHz max SM clock reported (MLE)"),
    # ---------------------------------------------------------------- AMD
    dict(key="mi250x", name="AMD Instinct MI250X (one GCD)", vendor="amd",
         tflops=(23.95, None, 191.5, 191.5, None, 191.5), mem=GiB(64), bw=1600, link=400,
         net=NET_DC, sm=110, cc="gfx90a", mhz=1700, tdp=None, size_gb=64,
         aliases=("mi250x-gcd",), names=("mi250x", "mi250x mi250"),
         source="AMD-MI250X, ROCM-MI250, ROCM-SPECS (per OAM 383 / 47.9 vector, halved per GCD; "
                "torchtitan 191.5)",
         notes="one torch device = one GCD (110 CUs, 64 GiB, 1.6 TB/s); nanochat's 383 per device "
               "halves MFU; fp32 = vector 47.9/2 [derived] (matrix fp32 95.7 per OAM); ROCm may "
               "name an MI250 (fewer CUs) 'MI250X/MI250'; 400 GB/s joins the two GCDs, the 8 "
               "external IF links [unverified]; 500 W per OAM [unverified]"),
    dict(key="mi250x-oam", name="AMD Instinct MI250X (OAM, 2 GCDs)", vendor="amd",
         tflops=(47.9, None, 383, 383, None, 383), mem=GiB(128), bw=3200, link=400, net=NET_DC,
         sm=220, cc="gfx90a", mhz=1700, tdp=500, size_gb=128,
         aliases=(), names=(),
         source="AMD-MI250X, ROCM-MI250, ROCM-SPECS (383.0 = 220 x 1,024 x 1.7e9)",
         notes="the whole module = two torch devices: for per-device MFU use mi250x; fp32 = "
               "vector (matrix 95.7); 500 W [unverified]; 400 GB/s is the in-package GCD link"),
    dict(key="mi300x", name="AMD Instinct MI300X", vendor="amd",
         tflops=(163.4, 653.7, 1307.4, 1307.4, 2614.9, 2614.9), mem=GiB(192), bw=5300, link=896,
         net=NET_DC, sm=304, cc="gfx942", mhz=2100, tdp=750, size_gb=192,
         aliases=(), names=("mi300x",),
         source="ROCM-MI300, ROCM-SPECS (dense; AMD's sparse figures are 2x); MLPERF (750 W)",
         notes="1,307.4 = 304 x 2,048 x 2.1e9; 192 GB = 192 GiB; Infinity Fabric 7 x 128 GB/s "
               "[unverified]; in CPX mode each XCD (38 CUs) is a device with 1/8 of the peak "
               "[derived]"),
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
