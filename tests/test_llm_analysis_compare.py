"""Side by side with llm-analysis 0.2.2 (Cheng Li), built from its config objects, offline.

Where the two models describe the same thing the bytes agree exactly; where we
differ on purpose, both values are asserted so the difference is pinned:

* Bytes per parameter. llm-analysis keeps weights at ``weight_bits`` (16),
  fp32 gradients (``master_weights_dtype_bytes``) and a 12-byte Adam state
  (fp32 master + m + v): 2 + 4 + 12 = 18 B/param, Megatron's bf16 regime with
  fp32 gradient accumulation. Our ``bf16-master`` is the ZeRO paper's
  2 + 2 + 12 = 16: weights and optimizer agree, gradients are half.
* Parameter count. llm-analysis models every MLP as two matrices and assumes
  a tied head with no position table: its shipped Llama-2-7B config (FFN
  16384) counts 6.57B; the real checkpoint (SwiGLU 11008, untied head) has
  6,738,415,616. For GPT-2 its count equals nanoGPT's without the position
  table (``position="rope"`` in our config).
* Activations. llm-analysis counts flash attention's kept tensors as
  2·sbh + 4·a·s·b elements at activation width on top of the out-proj input
  (so the attention output twice, and the logsumexp as 16-bit x 4), and an
  attention dropout mask; our GPT has no dropout, keeps O once (it is the
  out-proj input) and the logsumexp in fp32: theirs = ours + 5·sbh + 4·asb.
* Logits. llm-analysis counts 16-bit logits only (2 B per logit); we count
  what cross-entropy under autocast also holds (fp32 log-softmax and grad):
  10 B per logit, five times theirs.
* At ``batch_size_per_gpu == 1`` llm-analysis adds the logits and the final
  norm twice (its batch-1 figure already holds them); see the last test.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

la = pytest.importorskip("llm_analysis.analysis")
from llm_analysis.config import DtypeConfig, GPUConfig, ParallelismConfig  # noqa: E402
from llm_analysis.config import ModelConfig as LAModel  # noqa: E402
from llm_analysis.logger import logger as la_logger  # noqa: E402

from estimator.hardware import get_gpu  # noqa: E402
from estimator.inference import inference_weight_bytes, kv_cache_bytes  # noqa: E402
from estimator.memory import training_memory  # noqa: E402
from estimator.memory_terms import activation_bytes_per_layer, logits_bytes, model_state_bytes  # noqa: E402
from estimator.params import count_params  # noqa: E402
from estimator.precision import Precision  # noqa: E402
from estimator.presets import get_model  # noqa: E402
from estimator.setup import TrainSetup  # noqa: E402

la_logger.setLevel(logging.ERROR)

GPT2_LA = LAModel(name="gpt2", num_layers=12, n_head=12, hidden_dim=768, vocab_size=50257, max_seq_len=1024,
                  ffn_embed_dim=3072)  # llm_analysis/model_configs/gpt2.json
LLAMA2_LA = LAModel(name="NousResearch_Llama-2-7b-hf", num_layers=32, n_head=32, hidden_dim=4096, vocab_size=32000,
                    max_seq_len=4096, num_key_value_heads=32, ffn_embed_dim=16384)  # its shipped config
LLAMA3_LA = LAModel(name="llama-3-8b", num_layers=32, n_head=32, hidden_dim=4096, vocab_size=128256,
                    max_seq_len=8192, num_key_value_heads=8, ffn_embed_dim=16384)
# nanoGPT GPT-2 without the position table: the architecture llm-analysis counts for "gpt2".
GPT2_SAME = replace(get_model("nanogpt-124m"), name="gpt2-no-wpe", position="rope")
MEGATRON_18 = Precision("bf16-fp32-grads", "bf16", 2, 4, 12, 2, "llm-analysis / Megatron bf16 + fp32 main_grad")


def _gpu() -> GPUConfig:
    spec = get_gpu("a100-sxm-80gb")
    return GPUConfig(name=spec.key, mem_per_GPU_in_GB=spec.memory_bytes / 2**30,
                     hbm_bandwidth_in_GB_per_sec=spec.memory_bandwidth / 1e9,
                     intra_node_bandwidth_in_GB_per_sec=spec.intra_node_bandwidth / 2e9,
                     intra_node_min_message_latency=8e-6, peak_fp16_TFLOPS=spec.peak("bf16") / 1e12)


def _analysis(model: LAModel, dp: int = 1) -> "la.LLMAnalysis":
    return la.LLMAnalysis(model, _gpu(), DtypeConfig(), ParallelismConfig(dp_size=dp),
                          flops_efficiency=0.5, hbm_memory_efficiency=0.8)


def _their_training(model: LAModel, dp: int, zero: int, batch: int = 2, seq: int = 1024) -> dict:
    return _analysis(model, dp).training(batch_size_per_gpu=batch, seq_len=seq, gradient_accumulation_steps=1,
                                         ds_zero=la.DSZeRO(zero))


def test_parameter_counts_agree_for_gpt2_and_differ_for_llama():
    assert _analysis(GPT2_LA).total_num_params == count_params(GPT2_SAME).total == 123_551_232
    # The real nanoGPT GPT-2 adds the 1024 x 768 position table llm-analysis leaves out.
    assert count_params(get_model("nanogpt-124m")).total - 123_551_232 == 1024 * 768
    # Llama-2-7B: 2-matrix MLP of width 16384 and a tied head (theirs) vs SwiGLU 11008, untied (ours).
    assert _analysis(LLAMA2_LA).total_num_params == 6_573_789_184
    assert count_params(get_model("llama-2-7b")).total == 6_738_415_616


@pytest.mark.parametrize("dp,zero", [(1, 0), (8, 1), (8, 2), (8, 3)])
def test_gpt2_training_model_states(dp, zero):
    theirs = _their_training(GPT2_LA, dp, zero)
    ours = training_memory(GPT2_SAME, TrainSetup(batch_size=2, seq_len=1024, precision="bf16-master",
                                                 dp=dp, zero=zero))
    assert ours.weights == theirs["weight_memory_per_gpu"]
    assert ours.optimizer == theirs["optimizer_state_memory_per_gpu"]
    # Gradients: bf16 (2 B, ZeRO paper) ours vs fp32 (4 B, Megatron main_grad) theirs.
    assert 2 * ours.gradients == theirs["gradient_memory_per_gpu"]
    # Their regime expressed as a Precision reproduces all three exactly.
    same = model_state_bytes(count_params(GPT2_SAME).total, MEGATRON_18, dp, zero)
    assert same == {"weights": theirs["weight_memory_per_gpu"], "gradients": theirs["gradient_memory_per_gpu"],
                    "optimizer": theirs["optimizer_state_memory_per_gpu"]}


@pytest.mark.parametrize("zero", [1, 2, 3])
def test_llama2_7b_training_model_states(zero):
    """Same bytes per parameter, different parameter counts: each side is 2/…/12 B x its own count."""
    theirs = _their_training(LLAMA2_LA, 8, zero, batch=1, seq=1024)
    ours = training_memory(get_model("llama-2-7b"), TrainSetup(batch_size=1, seq_len=1024,
                                                                 precision="bf16-master", dp=8, zero=zero))
    n_theirs, n_ours = 6_573_789_184, 6_738_415_616
    w_div = 8 if zero == 3 else 1
    g_div = 8 if zero >= 2 else 1
    assert theirs["weight_memory_per_gpu"] == 2 * n_theirs / w_div
    assert ours.weights == 2 * n_ours // w_div
    assert theirs["optimizer_state_memory_per_gpu"] == 12 * n_theirs / 8
    assert ours.optimizer == 12 * n_ours // 8
    assert theirs["gradient_memory_per_gpu"] == 4 * n_theirs / g_div
    assert ours.gradients == 2 * n_ours // g_div


def test_gpt2_activations_and_logits_pinned():
    b, s, h, a = 2, 1024, 768, 12
    sbh = s * b * h
    analysis = _analysis(GPT2_LA)
    theirs_layer = analysis.get_activation_memory_per_layer(b, s, is_inference=False, flash_attn=True)
    # LayerNorm inputs in fp32 on both sides (their layernorm_dtype_bytes=4, our autocast residual stream).
    # Learned positions here: llm-analysis counts no rotated copies of q and k (ours keeps them under RoPE).
    learned = replace(GPT2_SAME, position="learned")
    ours_layer = activation_bytes_per_layer(learned, b, s, "bf16-mixed", flash_attention=True)["total"]
    assert ours_layer == 36 * sbh + 4 * a * s * b
    assert theirs_layer == 41 * sbh + 8 * a * s * b
    assert theirs_layer == ours_layer + 5 * sbh + 4 * a * s * b
    theirs_logits = analysis.get_activation_memory_output_embedding(b, s)
    assert theirs_logits == 2 * b * s * 50257
    assert logits_bytes(GPT2_SAME, b, s, "bf16-mixed") == 5 * theirs_logits


def test_llm_analysis_counts_logits_twice_at_batch_one():
    one = _their_training(GPT2_LA, 1, 0, batch=1)
    twice = (one["activation_memory_batch_size_1"] + one["activation_memory_embedding_output_per_gpu"]
             + 4 * 1024 * 768)  # + logits and the fp32 final-norm input again
    assert one["activation_memory_per_gpu"] == twice


def test_llama2_7b_inference_kv_cache_and_weights():
    b, prompt, gen = 4, 512, 128
    theirs = _analysis(LLAMA2_LA).inference(batch_size_per_gpu=b, seq_len=prompt, num_tokens_to_generate=gen)
    model = get_model("llama-2-7b")
    assert kv_cache_bytes(model, b, prompt + gen) == theirs["kv_cache_memory_per_gpu"] == 1_342_177_280
    # 16-bit weights: 2 B per parameter on both sides, of different counts.
    assert theirs["weight_memory_per_gpu"] == 2 * 6_573_789_184
    assert inference_weight_bytes(model, 16)["total"] == 2 * 6_738_415_616


def test_gqa_kv_cache_agrees():
    theirs = _analysis(LLAMA3_LA).get_memory_kv_cache_per_layer(3, 1000) * 32
    assert kv_cache_bytes(get_model("llama-3-8b"), 3, 1000) == theirs == 3 * 1000 * 131_072


def test_decode_latency_same_architecture_close():
    """Memory-bound decode of the same GPT-2 shape: llm-analysis reads the whole embedding
    table every step and counts layer norms as fp16 traffic; we read the head once. Within 10 %."""
    from estimator.predict import predict

    spec = get_gpu("a100-sxm-80gb")
    theirs = _analysis(GPT2_LA).inference(batch_size_per_gpu=1, seq_len=512, num_tokens_to_generate=128)
    ours = predict(GPT2_SAME, spec, TrainSetup(batch_size=1, precision="bf16-mixed"), mode="infer",
                   prompt_len=512, gen_len=128)
    assert ours["decode"]["bound"] == "memory"
    assert ours["decode"]["time_s"] == pytest.approx(theirs["decode_latency"], rel=0.10)


def test_gpt2_training_micro_batch_time_close():
    """At the same flat efficiency (--flops-efficiency 0.5, llm-analysis' default), our GEMMs and attention
    kernels of a micro-batch take exactly their compute-only latency: the same FLOP convention. We add the
    memory-bound kernels (norms, activations, adds, the loss) that it leaves out."""
    from estimator.predict import predict
    from estimator.setup import Efficiency

    theirs = _analysis(GPT2_LA).training(batch_size_per_gpu=4, seq_len=1024, gradient_accumulation_steps=1)
    ours = predict(GPT2_SAME, get_gpu("a100-sxm-80gb"), TrainSetup(batch_size=4, seq_len=1024,
                                                                   precision="bf16-master",
                                                                   efficiency=Efficiency(flops=0.5)))
    cats = ours["step"]["categories"]
    assert cats["matmul"] + cats["attention"] == pytest.approx(theirs["latency_per_micro_batch"], rel=0.02)
    assert ours["step"]["micro_batch_s"] > theirs["latency_per_micro_batch"] + 0.5 * cats["elementwise"]
    assert ours["step"]["time_s"] > ours["step"]["micro_batch_s"]  # + our optimizer step
