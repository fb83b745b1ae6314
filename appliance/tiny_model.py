"""A tiny random-weight Llama checkpoint for running real vLLM where no model can be downloaded.

    python -m appliance.tiny_model DIR [--seed 0]

It builds in seconds from nothing but this package: a byte-level BPE tokenizer trained on the
agents' own prompts and schemas (so those prompts tokenize as a real model's would, about four
characters a token), a chat template, and a two-layer Llama with seeded random weights. Its
answers are noise; it exists so that the real engine, its tokenizer, its structured-output
grammar and its process tree can be exercised in tests and on machines without a GPU.
Needs `torch`, `transformers` and `tokenizers`, which vLLM's CPU build brings along.
"""

from __future__ import annotations

import argparse
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

VOCAB_SIZE = 2048
MAX_POSITIONS = 4096
SPECIAL_TOKENS = ("<|begin|>", "<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# Small enough to load in a second on one core, shaped like Llama (grouped-query attention);
# head_dim 64, as vLLM's CPU attention kernels support only common head sizes.
ARCHITECTURE = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def training_text() -> list[str]:
    """What the tokenizer learns from: the agents' prompts and the JSON their schemas allow."""
    from appliance.agents import schemas

    prompts = files("appliance.agents").joinpath("prompts")
    texts = [entry.read_text("utf-8") for entry in prompts.iterdir() if entry.name.endswith(".md")]
    for struct in (schemas.GuardrailVerdict, schemas.GeneticTraits, schemas.WellnessInsights):
        import msgspec

        texts.append(json.dumps(msgspec.json.schema(struct)))
    texts.append(" ".join(str(n) for n in range(1000)) + " 0.0 0.25 0.5 0.75 1.0 true false null")
    return texts


def build(directory: Path, seed: int = 0) -> Path:
    """Write the checkpoint to `directory` (created if needed); the same seed, the same files."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(training_text(), trainer=trainer)
    begin, end, pad = SPECIAL_TOKENS[:3]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=begin,
        eos_token=end,
        pad_token=pad,
        model_max_length=MAX_POSITIONS,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(directory)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="bfloat16",
        **ARCHITECTURE,
    )
    model: Any = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    _write_generation_config(directory, fast.eos_token_id)
    return directory


def _write_generation_config(directory: Path, eos: int) -> None:
    """Plain sampling defaults: vLLM applies a checkpoint's generation_config.json to requests."""
    (directory / "generation_config.json").write_text(
        json.dumps({"eos_token_id": eos, "do_sample": True}) + "\n", encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build(args.directory, args.seed))


if __name__ == "__main__":
    main()
