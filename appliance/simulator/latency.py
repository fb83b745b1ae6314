"""The simulator's latency model, as pure functions so it is tested without sleeping.

Prompt length
    prompt_tokens = sum over messages of (ceil(characters / 4) + MESSAGE_OVERHEAD_TOKENS)
    (about four characters per token, plus the chat template's tokens around each message).

Scheduling (see `scheduler.py`)
    At most `max_num_seqs` sequences run; further requests wait first-in, first-out. A request
    reserves `prompt + completion limit` tokens of a KV-cache budget (`kv_cache_tokens`, by default
    max_model_len x max_num_seqs / 2) and waits while the budget is short; the reservation is capped
    at the whole budget so one request can always run alone. KV-cache usage = reserved / budget.

Time to first token
    ttft = queue_wait + BASE_OVERHEAD_S + prompt_tokens / prefill_tokens_per_s
    The queue wait is what the request actually spent waiting; the first token comes out of prefill.

Decode
    step = (1 / decode_tokens_per_s) x (1 + batch_slowdown x (running - 1))
    Every further token takes one step at the batch size of that moment, so a busy engine slows
    every sequence it runs. When a step is tiny, several tokens share one sleep (and one stream
    chunk) so the simulator's own CPU stays low.

Completion length
    Exactly the limit when `ignore_eos` is set or `min_tokens >= max_tokens`; otherwise a length drawn
    deterministically from the request between 60 % and 100 % of `max_tokens` (at least
    `min_tokens`). The limit is `max_tokens` (default 256) capped by `max_model_len - prompt`.
    Reaching the limit finishes with "length", stopping earlier with "stop".

Defaults per size class follow the service guide's tokens/s table (8B about 50 tokens/s, 14B 40,
32B 30, 70B 17.5); prefill is much faster. Every modelled delay is multiplied by `time_scale`
(0 = no delay at all). Stalls injected by the fault knobs are not scaled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from msgspec import Struct

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
BASE_OVERHEAD_S = 0.02
DEFAULT_MAX_TOKENS = 256
MIN_SHARE = 0.6
# Below these tick lengths, tokens are grouped per sleep: streams send a chunk at most every
# STREAM_TICK_S, and never more than MAX_TOKENS_PER_CHUNK tokens in one chunk.
STREAM_TICK_S = 0.01
BLOCK_TICK_S = 0.05
MAX_TOKENS_PER_CHUNK = 16

# size class -> (decode tokens/s, prefill tokens/s)
SIZE_CLASSES: dict[str, tuple[float, float]] = {
    "8B": (50.0, 8000.0),
    "14B": (40.0, 5000.0),
    "32B": (30.0, 3000.0),
    "70B": (17.5, 1500.0),
}
DEFAULT_SIZE_CLASS = "8B"
_MOE = re.compile(r"(\d+)x(\d+(?:\.\d+)?)b(?![a-z])", re.I)
_PARAMS = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)b(?![a-z])", re.I)


class LatencyProfile(Struct, frozen=True, kw_only=True):
    """The rates one simulated engine runs at."""

    decode_tokens_per_s: float
    prefill_tokens_per_s: float
    batch_slowdown: float = 0.02
    time_scale: float = 1.0
    base_overhead_s: float = BASE_OVERHEAD_S


def profile_for(
    size_class: str,
    *,
    decode_tokens_per_s: float | None = None,
    prefill_tokens_per_s: float | None = None,
    batch_slowdown: float = 0.02,
    time_scale: float = 1.0,
) -> LatencyProfile:
    """The size class's rates, with any explicit rate taking precedence."""
    decode, prefill = SIZE_CLASSES[size_class]
    return LatencyProfile(
        decode_tokens_per_s=decode_tokens_per_s or decode,
        prefill_tokens_per_s=prefill_tokens_per_s or prefill,
        batch_slowdown=batch_slowdown,
        time_scale=time_scale,
    )


def size_class_of(name: str) -> str | None:
    """The nearest size class for a model name or class ("Llama-3.1-70B", "7b", "8x22B")."""
    moe = _MOE.search(name)
    if moe:
        params = int(moe[1]) * float(moe[2])
    else:
        found = _PARAMS.findall(name)
        if not found:
            return None
        params = float(found[-1])
    if params <= 10:
        return "8B"
    if params <= 20:
        return "14B"
    if params <= 45:
        return "32B"
    return "70B"


def text_tokens(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN)


def prompt_tokens(message_chars: Iterable[int]) -> int:
    """Estimated prompt tokens from the character count of each message."""
    return sum(text_tokens(chars) + MESSAGE_OVERHEAD_TOKENS for chars in message_chars)


def default_kv_cache_tokens(max_model_len: int, max_num_seqs: int) -> int:
    return max(1, max_model_len * max_num_seqs // 2)


def completion_limit(max_tokens: int, prompt: int, max_model_len: int) -> int:
    """The most tokens this request may generate."""
    return max(0, min(max_tokens, max_model_len - prompt))


def completion_tokens(
    max_tokens: int,
    limit: int,
    *,
    exact: bool = False,
    min_tokens: int = 0,
    draw: int = 0,
) -> int:
    """How many tokens the answer has; `draw` is a number derived from the request."""
    if exact or min_tokens >= max_tokens:
        return limit
    low = max(math.ceil(MIN_SHARE * max_tokens), min_tokens, 1)
    span = max_tokens - low + 1
    return min(low + draw % span, limit)


def finish_reason(tokens: int, limit: int) -> str:
    return "length" if tokens >= limit else "stop"


def kv_reservation(prompt: int, limit: int, budget: int) -> int:
    """KV-cache tokens a request holds while it runs; never more than the whole budget."""
    return max(1, min(prompt + limit, budget))


def prefill_s(profile: LatencyProfile, prompt: int) -> float:
    """Time from admission to the first token."""
    return (profile.base_overhead_s + prompt / profile.prefill_tokens_per_s) * profile.time_scale


def decode_step_s(profile: LatencyProfile, running: int) -> float:
    """Time of one decode step while `running` sequences share the engine."""
    slowdown = 1.0 + profile.batch_slowdown * max(0, running - 1)
    return slowdown / profile.decode_tokens_per_s * profile.time_scale


def ttft_s(profile: LatencyProfile, queue_wait_s: float, prompt: int) -> float:
    return queue_wait_s + prefill_s(profile, prompt)


def e2e_s(
    profile: LatencyProfile, queue_wait_s: float, prompt: int, tokens: int, running: int
) -> float:
    """End-to-end time when the batch size stays at `running` for the whole request."""
    return ttft_s(profile, queue_wait_s, prompt) + max(0, tokens - 1) * decode_step_s(
        profile, running
    )


def tokens_per_tick(step_s: float, tick_s: float, cap: int) -> int:
    """How many tokens share one sleep: one per step when steps are long, grouped when tiny."""
    if step_s >= tick_s:
        return 1
    if step_s <= 0:
        return cap
    return max(1, min(cap, math.ceil(tick_s / step_s)))
