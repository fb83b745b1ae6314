"""The memory arithmetic of one vLLM engine on one GPU.

vLLM takes `gpu_memory_utilization x` the GPU's memory as its budget, loads the weights, runs one
profiling pass at the largest batch it will schedule, and gives whatever is left to the KV cache.
The figures below are the appliance's estimates of the parts that are not weights or KV cache:

- runtime per engine per GPU, by tensor-parallel size: the CUDA context, cuBLAS workspaces,
  allocator slack and, with tensor parallel, NCCL's buffers and vLLM's custom all-reduce buffers.
  vLLM's own profiling reports about 1.8 GiB outside torch at TP=1 and about 3.6 GiB at TP=2;
  each doubling of the group adds NCCL channels to more peers, so the allowance grows by 1.8 GiB
  per doubling (5.4 GiB at TP=4, 7.2 GiB at TP=8).
- CUDA graphs, 0.5 GiB per engine per GPU: vLLM captures decode graphs for batch sizes up to 512
  and reports 0.2-1 GiB for them; some versions keep that memory outside the budget, which is why
  the fractions on one GPU are held to 0.95 (the rest is headroom for it).
- activation peak: the profiling pass runs `max_num_batched_tokens` tokens through one layer at a
  time (hidden states, the QKV projection, the gated MLP's two halves, in 16-bit, times 1.5 for the
  allocator's rounding and temporaries) plus fp32 logits and probabilities over the vocabulary for
  `max_num_seqs` sequences. vLLM's API server batches 2048 tokens by default, 8192 on cards of
  70 GiB or more other than the A100.
- 0.6 GiB of each GPU is reserved by the driver: CUDA, whose total the fraction applies to, sees
  that much less than NVML and nvidia-smi report.

KV cache per token is 2 (K and V) x layers x KV heads x head size x 2 bytes (FP16/BF16 KV cache;
1 byte with `--kv-cache-dtype fp8...` in extra_args); with tensor parallel each GPU holds its
share of the KV heads. vLLM allocates it in blocks of 16.
"""

from __future__ import annotations

import math

from appliance.config.schema import EngineConfig
from appliance.placement.figures import ENGINE_FORMATS, SIXTEEN_BIT, ModelFigures, WeightFormat
from appliance.placement.gpus import GIB, Gpu

KIB = 1 << 10
RUNTIME_BYTES_TP1 = int(1.8 * GIB)  # and as much again per doubling of the TP group
CUDA_GRAPH_BYTES = GIB // 2
CUDA_RESERVED_BYTES = int(0.6 * GIB)
MAX_GPU_FRACTION = 0.95
DEFAULT_FRACTION = 0.92  # vLLM's own default (0.90 before 0.2x)
KV_DTYPE_BYTES = 2
KV_BLOCK_TOKENS = 16
ACTIVATION_SAFETY = 1.5
LOGIT_BYTES = 8  # fp32 logits and fp32 probabilities per vocabulary entry
SMALL_BATCH_TOKENS = 2048
LARGE_BATCH_TOKENS = 8192
LARGE_GPU_BYTES = 70 * GIB


def weight_format(engine: EngineConfig, figures: ModelFigures) -> tuple[WeightFormat, str | None]:
    """The format vLLM will hold the weights in, and a problem when engine and checkpoint disagree.

    AWQ and GPTQ need a checkpoint made that way; FP8 (and bitsandbytes) can also be applied
    to a 16-bit checkpoint while it loads.
    """
    checkpoint = figures.checkpoint_format
    if engine.quantization is None:
        return checkpoint or SIXTEEN_BIT, None
    wanted = ENGINE_FORMATS[engine.quantization]
    if engine.quantization in ("awq", "gptq"):
        if checkpoint is not None and checkpoint.name.startswith(engine.quantization):
            return checkpoint, None
        if figures.from_checkpoint:
            found = checkpoint.name if checkpoint else "16-bit"
            return wanted, (
                f"quantization = {engine.quantization!r}, but the checkpoint at "
                f"{engine.model} is {found}; vLLM cannot make {engine.quantization.upper()} "
                "weights while loading: point `model` at such a checkpoint"
            )
        return wanted, None
    if checkpoint is not None and checkpoint.bits < wanted.bits:
        return checkpoint, (
            f"quantization = {engine.quantization!r}, but the checkpoint is already "
            f"{checkpoint.name}; drop `quantization` or use a 16-bit checkpoint"
        )
    return wanted, None


def weight_bytes(figures: ModelFigures, fmt: WeightFormat) -> int:
    """All the weights. The checkpoint's file size when it is stored as it will be held."""
    same = fmt == (figures.checkpoint_format or SIXTEEN_BIT)
    if figures.checkpoint_bytes and same:
        return figures.checkpoint_bytes
    embeddings = figures.embedding_params
    body = max(figures.params - embeddings, 0.0)
    return int(embeddings * 2 + body * fmt.bytes_per_param)


def kv_heads_per_gpu(figures: ModelFigures, tp: int) -> int:
    """Tensor parallel splits the KV heads; with more GPUs than heads each GPU keeps a copy."""
    return max(1, figures.kv_heads // tp)


def runtime_bytes(tp: int) -> int:
    """What an engine holds outside torch on each of its GPUs (see the module docstring)."""
    return int(RUNTIME_BYTES_TP1 * (1 + math.log2(max(tp, 1))))


def kv_dtype_bytes(engine: EngineConfig) -> int:
    """Bytes per KV element: 1 when extra_args ask for an FP8 KV cache, else 16-bit."""
    args = engine.extra_args
    for i, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name.replace("_", "-") != "--kv-cache-dtype":
            continue
        if not value and i + 1 < len(args):
            value = args[i + 1]
        return 1 if value.lower().startswith("fp8") else KV_DTYPE_BYTES
    return KV_DTYPE_BYTES


def kv_bytes_per_token(
    figures: ModelFigures, tp: int = 1, dtype_bytes: int = KV_DTYPE_BYTES
) -> int:
    """KV cache bytes one token takes on each GPU (tp=1: the whole model)."""
    return 2 * figures.layers * kv_heads_per_gpu(figures, tp) * figures.head_dim * dtype_bytes


def usable_bytes(gpu: Gpu) -> int:
    """What CUDA reports as the GPU's total; vLLM's fraction applies to this."""
    return max(gpu.total - CUDA_RESERVED_BYTES, 0)


def limit_fraction(gpu: Gpu) -> float:
    """The most the fractions of all engines on a GPU may add up to: 0.95, less what other
    processes already hold (vLLM refuses to start when its share is not free)."""
    usable = usable_bytes(gpu)
    if usable <= 0:
        return 0.0
    held = max(gpu.total - gpu.free, 0)
    return max(0.0, min(MAX_GPU_FRACTION, (usable - held) / usable))


def batch_tokens(engine: EngineConfig, gpu: Gpu) -> int:
    """Tokens in vLLM's largest scheduled batch: `--max-num-batched-tokens` or its default."""
    given = _extra_int(engine.extra_args, "--max-num-batched-tokens")
    if given:
        return given
    large = usable_bytes(gpu) >= LARGE_GPU_BYTES and "A100" not in gpu.name.upper()
    return LARGE_BATCH_TOKENS if large else SMALL_BATCH_TOKENS


def activation_bytes(figures: ModelFigures, engine: EngineConfig, tp: int, tokens: int) -> int:
    """Peak of vLLM's profiling pass on each GPU (see the module docstring)."""
    qkv = (figures.attention_heads + 2 * figures.kv_heads) * figures.head_dim / tp
    per_token = 2 * (2 * figures.hidden_size + qkv + 2 * figures.intermediate_size / tp)
    layer = tokens * per_token * ACTIVATION_SAFETY
    logits = engine.max_num_seqs * figures.vocab_size * LOGIT_BYTES
    return int(layer + logits)


def kv_tokens(kv_bytes: int, per_token: int) -> int:
    """Tokens a KV cache of `kv_bytes` holds, in whole blocks of 16."""
    if kv_bytes <= 0 or per_token <= 0:
        return 0
    return (kv_bytes // (per_token * KV_BLOCK_TOKENS)) * KV_BLOCK_TOKENS


def floor_fraction(value: float) -> float:
    """Fractions are written with two decimals; rounding down never over-commits a GPU."""
    return math.floor(value * 100 + 1e-9) / 100


def _extra_int(args: tuple[str, ...], flag: str) -> int | None:
    for i, arg in enumerate(args):
        value = None
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return None
    return None
