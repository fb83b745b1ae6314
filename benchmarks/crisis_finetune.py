"""Fine-tune the crisis classifier's encoder on the corpus with low-rank adapters; choose on dev.

    .venv-vllm/bin/python benchmarks/crisis_finetune.py   # writes appliance/agents/crisis_adapter.npz
    .venv/bin/python benchmarks/crisis_train.py           # then the head, on the adapted vectors

Needs torch and transformers, which the core install leaves out; the real-vLLM environment has
both (`bash .ci/setup-vllm.sh`). The appliance itself never needs them: it applies the adapters in
its numpy forward pass (`encoder.py`), and `tests/reference/reference_encoder.py` checks that pass
against this script's torch model.

Why: a frozen sentence vector with a small head separates a farewell from an ordinary goodbye, or
a plan from an ordinary trip, only so far. Low-rank adapters (LoRA) on every linear map of the six
layers let the encoder itself learn what the corpus teaches, while the shipped delta stays small
(rank 8: about 0.33 M numbers) and the packaged MiniLM weights stay as they are, memory-mapped.

Deterministic for a given torch build (fixed seeds, one thread order). Rows, weights and the
layered dev score are those of `crisis_train.py`: every segment the classifier reads, each fine
label weighing the same. A linear crisis head and a category head are trained jointly and written
beside each kept adapter (`NAME.head.npz`); `crisis_train.py --retune` chooses that head's
thresholds on the appliance's vectors, and `crisis_train.py` alone fits a hidden-layer head on
them instead, for comparison. The epoch kept is the one whose layered dev recall, at a
false-positive rate of at most 0.03, is best (both weighed by register,
`crisis_data.register_truth`). The test split is never read here.
"""

from __future__ import annotations

import argparse
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import BertModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.agents.classifier import CATEGORIES, CATEGORY_OF, CrisisClassifier, Head
from appliance.agents.encoder import (
    ADAPTER_FILES,
    SEGMENT_TOKENS,
    Encoder,
    model_dir,
    read_adapter,
)
from appliance.agents.encoder_graph import in_int8
from benchmarks.crisis_data import (
    PLAIN_BATCHES,
    Example,
    label_weight,
    length_batches,
    load,
    plain_batches,
    register_truth,
    row_boost,
)
from benchmarks.crisis_train import balanced, caution_of, head_of, layered_score, pick

OUT = Path(__file__).resolve().parents[1] / "appliance" / "agents" / ADAPTER_FILES[0]
# The heads read the unit sentence vector at this fixed scale; a shipped head reads it unscaled, so
# its weights carry the factor.
HEAD_SCALE = 10.0
TARGETS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


class LoRA(nn.Module):
    """A frozen linear map plus a trained low-rank delta: y = x W^T + b + (x A) B * scale.

    With `int8` set, the map is computed as the appliance's int8 graph computes it: the merged
    matrix rounded to int8 with one scale per output column, the input to uint8 with one scale and
    zero point per segment, gradients passed straight through the rounding. The adapter then learns
    to work through the rounding it ships with, rather than in float only."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.a = nn.Parameter(torch.randn(base.in_features, rank) / base.in_features**0.5)
        self.b = nn.Parameter(torch.zeros(rank, base.out_features))
        self.scale = alpha / rank
        self.int8 = False
        # The batch's attention mask (batch, tokens), set by `pooled`: the rounding range of each
        # segment is taken over its own tokens, not the batch's padding.
        self.mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.int8:
            return self.base(x) + (x @ self.a) @ self.b * self.scale
        merged = self.base.weight + ((self.a @ self.b) * self.scale).T
        return nn.functional.linear(as_uint8(x, self.mask), as_int8(merged), self.base.bias)


def as_int8(weight: torch.Tensor) -> torch.Tensor:
    """`weight` (out, in) rounded as `encoder.quantize_columns` rounds it: symmetric int8, one scale
    per output; the gradient passes straight through."""
    scale = weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
    rounded = torch.clamp(torch.round(weight / scale), -127, 127) * scale
    return weight + (rounded - weight).detach()


def as_uint8(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """`x` (batch, tokens, in) rounded as onnxruntime's dynamic quantization rounds it: uint8 with
    one scale and zero point per segment, over the segment's real tokens (`mask`, where given),
    the range stretched to hold zero; the gradient passes straight through."""
    padding = ~(torch.ones(x.shape[:2]) if mask is None else mask).bool().unsqueeze(-1)
    values = x.detach()
    low = values.masked_fill(padding, float("inf")).amin(dim=(1, 2), keepdim=True).clamp_max(0.0)
    high = values.masked_fill(padding, float("-inf")).amax(dim=(1, 2), keepdim=True).clamp_min(0.0)
    scale = ((high - low) / 255.0).clamp_min(1e-12)
    zero = torch.round(-low / scale)
    rounded = (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale
    return x + (rounded - x).detach()


def adapted(rank: int, alpha: float, int8: bool = False) -> tuple[BertModel, dict[str, LoRA]]:
    """The packaged MiniLM with a LoRA on each target of each layer; the base frozen. With `int8`,
    the layers the appliance runs in int8 compute as it does (`LoRA`)."""
    model = BertModel.from_pretrained(str(model_dir()), add_pooling_layer=False)
    for p in model.parameters():
        p.requires_grad_(False)
    adapters: dict[str, LoRA] = {}
    for i, layer in enumerate(model.encoder.layer):
        for target in TARGETS:
            *path, last = target.split(".")
            parent = layer
            for part in path:
                parent = getattr(parent, part)
            lora = LoRA(getattr(parent, last), rank, alpha)
            lora.int8 = in_int8(i, int8)
            setattr(parent, last, lora)
            adapters[f"encoder.layer.{i}.{target}"] = lora
    return model, adapters


def export(adapters: dict[str, LoRA]) -> dict[str, np.ndarray]:
    """`<module>.a` (in, rank) and `<module>.b` (rank, out), the scale folded into b."""
    out: dict[str, np.ndarray] = {}
    for name, lora in adapters.items():
        out[f"{name}.a"] = lora.a.detach().numpy().astype(np.float32)
        out[f"{name}.b"] = (lora.b.detach() * lora.scale).numpy().astype(np.float32)
    return out


def warm_start(adapters: dict[str, LoRA], path: Path) -> str | None:
    """Load an adapter file's factors, as `export` wrote them, back into the adapters (the scale
    unfolded from b); a reason when the file cannot be read or does not fit, else None."""
    try:
        factors = read_adapter(path)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        return f"cannot read it ({exc})"
    for name, lora in adapters.items():
        a, b = factors.get(f"{name}.a"), factors.get(f"{name}.b")
        if a is None or b is None:
            return f"it has no factors for {name}"
        if a.shape != tuple(lora.a.shape) or b.shape != tuple(lora.b.shape):
            return (
                f"{name} has factors {a.shape} and {b.shape}, expected {tuple(lora.a.shape)} "
                f"and {tuple(lora.b.shape)} (--rank)"
            )
        with torch.no_grad():
            lora.a.copy_(torch.from_numpy(a))
            lora.b.copy_(torch.from_numpy(b) / lora.scale)
    return None


def joint_head(crisis_head: nn.Linear, category_head: nn.Linear, threshold: float) -> Head:
    """The linear heads trained with the adapter, as a shippable head: a candidate beside the one
    `crisis_train.py` fits afterwards. `crisis_head` has `HEAD_SCALE` folded in already (the one
    dev was scored with); `category_head` is folded here.
    Its threshold is the one dev chose here, on the float graph's vectors; choose it again on the
    appliance's (`crisis_train.py --retune`) before shipping it."""
    with torch.no_grad():
        return Head(
            crisis_w=crisis_head.weight[0].numpy().astype(np.float32),
            crisis_b=float(crisis_head.bias[0]),
            category_w=(category_head.weight * HEAD_SCALE).numpy().astype(np.float32),
            category_b=category_head.bias.numpy().astype(np.float32),
            categories=CATEGORIES,
            crisis_threshold=threshold,
            caution_threshold=caution_of(threshold),
        )


def batch(segments: list[list[int]], cls: int, sep: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [[cls, *s, sep] for s in segments]
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def pooled(model: BertModel, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' recipe, as `Encoder.encode_segments` computes it."""
    for module in model.modules():
        if isinstance(module, LoRA):
            module.mask = mask
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).float()
    mean = (hidden * m).sum(1) / m.sum(1)
    return nn.functional.normalize(mean, dim=-1)


def rows(
    examples: list[Example], classifier: CrisisClassifier
) -> tuple[list[list[int]], np.ndarray, list[str], np.ndarray]:
    """Every segment the classifier reads, labelled as `crisis_train.rows_of` labels it, and
    whether its example is of `PLAIN_BATCHES`."""
    segs: list[list[int]] = []
    crisis: list[float] = []
    labels: list[str] = []
    plain: list[bool] = []
    for e in examples:
        s = classifier.segments(e.text, e.context)
        keep = s[-1:] if e.context and e.is_crisis else s
        segs += keep
        crisis += [float(e.is_crisis)] * len(keep)
        labels += [e.label] * len(keep)
        plain += [e.batch in PLAIN_BATCHES] * len(keep)
    return segs, np.array(crisis), labels, np.array(plain)


def dev_score(
    model: BertModel,
    head: nn.Linear,
    dev: list[Example],
    classifier: CrisisClassifier,
    cls: int,
    sep: int,
) -> tuple[float, float, float]:
    """The layered detector's (threshold, recall, FPR) on dev with the jointly trained head."""

    def probability(e: Example) -> float:
        ids, mask = batch(classifier.segments(e.text, e.context), cls, sep)
        return float(torch.sigmoid(head(pooled(model, ids, mask))[:, 0]).max())

    model.eval()
    with torch.no_grad():
        scores = [layered_score(e, lambda e=e: probability(e)) for e in dev]
    truth = register_truth(dev)
    threshold, recall, fpr = pick(np.array(scores), truth)
    missed: dict[str, list[int]] = {}
    for e, score in zip(dev, scores, strict=True):
        entry = missed.setdefault(e.label, [0, 0])
        entry[0] += (score >= threshold) == e.is_crisis
        entry[1] += 1
    print("  dev right/all per label: " + ", ".join(f"{k} {a}/{n}" for k, (a, n) in missed.items()))
    return threshold, recall, fpr


def padding(lengths: list[int], args: argparse.Namespace) -> float:
    """The word-piece slots one epoch's batches of like length fill, padding included, as a
    fraction of those plain shuffled batches fill (a seeded draw of each, apart from training's).
    `lengths`: each row's word pieces with its two special tokens."""
    pooled = length_batches(lengths, args.batch, args.length_pools, np.random.default_rng(0))
    plain = plain_batches(len(lengths), args.batch, np.random.default_rng(0))
    widths = np.array(lengths)

    def slots(batches: list[np.ndarray]) -> int:
        return sum(int(widths[b].max()) * len(b) for b in batches)

    return slots(pooled) / slots(plain)


def _label_weight(spec: str) -> tuple[str, float]:
    """`label_weight` for argparse, whose own words would replace the message of a ValueError."""
    try:
        return label_weight(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=16.0)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--keep-epochs",
        type=int,
        default=0,
        help="also write the last N epochs' adapters beside --out (NAME.epochE.npz), to choose "
        "among them with crisis_train.py --adapter on dev, and, for those dev scored, the linear "
        "heads trained with them (NAME.epochE.head.npz)",
    )
    parser.add_argument(
        "--score-last",
        type=int,
        default=0,
        help="score dev after the last N epochs only (0: after every epoch); early epochs are "
        "never the one kept, and each scoring reads all of dev",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this adapter file (the packaged one, say) rather than from zero deltas, "
        "to fit a grown corpus in fewer epochs",
    )
    parser.add_argument(
        "--length-pools",
        type=int,
        default=0,
        help="batch rows of like length: shuffle, sort each run of N batches by length and cut "
        "it, shuffle the batches (0: plain shuffled batches); less padding, faster epochs",
    )
    parser.add_argument(
        "--plain-weight",
        type=float,
        default=1.0,
        help="weigh the rows of the plain batches (test's register, `crisis_data.PLAIN_BATCHES`) "
        "this many times as much as the others, each side's total kept",
    )
    parser.add_argument(
        "--label-weight",
        action="append",
        default=[],
        type=_label_weight,
        metavar="LABEL=K",
        help="weigh one label's rows K times as much within its side (si_farewell=2, say), "
        "each side's total kept; repeatable",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="train (and score dev) through the int8 rounding of the layers the appliance runs in "
        "int8, rather than in float throughout",
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)

    encoder = Encoder(max_tokens=SEGMENT_TOKENS)
    classifier = CrisisClassifier(
        encoder, head_of([np.zeros((384, 1)), np.zeros(1), np.zeros(1), np.zeros(1)])
    )
    cls, sep = encoder.special_ids
    train, dev = load("train"), load("dev")
    segs, y, labels, plain = rows(train, classifier)
    try:
        boost = row_boost(labels, plain, args.plain_weight, args.label_weight)
    except ValueError as e:
        parser.error(str(e))
    w = balanced(labels, y, boost)
    cat = np.array(
        [CATEGORIES.index(CATEGORY_OF[x]) if c else -100 for x, c in zip(labels, y, strict=True)]
    )

    model, adapters = adapted(args.rank, args.alpha, args.int8)
    if args.init is not None:
        problem = warm_start(adapters, args.init)
        if problem:
            print(f"--init {args.init}: {problem}", file=sys.stderr)
            return 2
    crisis_head = nn.Linear(384, 1)
    category_head = nn.Linear(384, len(CATEGORIES))
    params = [p for a in adapters.values() for p in (a.a, a.b)]
    params += [*crisis_head.parameters(), *category_head.parameters()]
    optimiser = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = args.epochs * ((len(segs) + args.batch - 1) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, args.lr, total_steps=steps)
    rng = np.random.default_rng(args.seed)
    y_t, w_t, cat_t = torch.tensor(y).float(), torch.tensor(w).float(), torch.tensor(cat)
    best: tuple[float, float, float, int, dict[str, np.ndarray], Head] | None = None
    print(f"rows {len(segs)}; adapters {sum(p.numel() for p in params)} numbers; {steps} steps")
    lengths = [len(s) + 2 for s in segs]  # as `batch` pads them, with [CLS] and [SEP]
    if args.length_pools:
        print(f"padded word pieces against plain batches: {padding(lengths, args):.2f}")
    for epoch in range(1, args.epochs + 1):
        model.train()
        began, total = time.perf_counter(), 0.0
        if args.length_pools:
            batches = length_batches(lengths, args.batch, args.length_pools, rng)
        else:
            batches = plain_batches(len(segs), args.batch, rng)
        for pick_ in batches:
            ids, mask = batch([segs[i] for i in pick_], cls, sep)
            v = pooled(model, ids, mask) * HEAD_SCALE
            logit = crisis_head(v)[:, 0]
            loss = (
                nn.functional.binary_cross_entropy_with_logits(logit, y_t[pick_], reduction="none")
                * w_t[pick_]
            ).mean()
            if (cat_t[pick_] >= 0).any():
                loss = loss + 0.5 * nn.functional.cross_entropy(
                    category_head(v), cat_t[pick_], ignore_index=-100
                )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(pick_)
        line = f"epoch {epoch}: loss {total / len(segs):.4f}, {time.perf_counter() - began:.0f} s"
        if epoch > args.epochs - args.keep_epochs:
            kept = args.out.with_suffix(f".epoch{epoch}.npz")
            np.savez_compressed(kept, rank=np.int64(args.rank), **export(adapters))
            line += f"; wrote {kept.name}"
        if args.score_last and epoch <= args.epochs - args.score_last:
            print(line, flush=True)
            continue
        crisis_head_eval = nn.Linear(384, 1)
        with torch.no_grad():
            crisis_head_eval.weight.copy_(crisis_head.weight * HEAD_SCALE)
            crisis_head_eval.bias.copy_(crisis_head.bias)
        threshold, recall, fpr = dev_score(model, crisis_head_eval, dev, classifier, cls, sep)
        head = joint_head(crisis_head_eval, category_head, threshold)
        if epoch > args.epochs - args.keep_epochs:
            head.save(args.out.with_suffix(f".epoch{epoch}.head.npz"))
        print(f"{line}; dev layered recall {recall:.3f}, FPR {fpr:.3f} at {threshold}", flush=True)
        if best is None or (recall, -fpr) > (best[1], -best[2]):
            best = (threshold, recall, fpr, epoch, export(adapters), head)
    if best is None:
        print("no epoch ran: --epochs must be 1 or more", file=sys.stderr)
        return 2
    np.savez_compressed(args.out, rank=np.int64(args.rank), **best[4])
    best[5].save(args.out.with_suffix(".head.npz"))
    print(
        f"kept epoch {best[3]} (dev recall {best[1]:.3f}, FPR {best[2]:.3f}); "
        f"wrote {args.out} ({args.out.stat().st_size} bytes) and its joint linear head beside it"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
