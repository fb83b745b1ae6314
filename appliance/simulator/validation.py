"""What vLLM's request validation refuses with a 400, in its words (vLLM 0.32)."""

from __future__ import annotations

from appliance.simulator.protocol import ChatRequest


def refusal(request: ChatRequest, max_model_len: int) -> tuple[str, str | None] | None:
    """(message, param) of the 400 vLLM would answer, or None when it takes the request."""
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if value is not None and not -2 <= value <= 2:
            return f"{name} must be in [-2, 2], got {float(value)}.", None
    repetition = request.repetition_penalty
    if repetition is not None and repetition <= 0:
        return f"repetition_penalty must be greater than zero, got {float(repetition)}.", None
    temperature = request.temperature
    if temperature is not None and temperature < 0:
        return (
            f"temperature must be non-negative, got {float(temperature)}. "
            f"(parameter=temperature, value={float(temperature)})",
            "temperature",
        )
    if temperature is not None and temperature > 2:
        return _out_of_range("temperature", "[0, 2]", temperature), "temperature"
    top_p = request.top_p
    if top_p is not None and not 0 < top_p <= 1:
        return _out_of_range("top_p", "(0, 1]", top_p), "top_p"
    if request.top_k is not None and request.top_k < -1:
        return f"top_k must be 0 (disable), or at least 1, got {request.top_k}.", None
    if request.min_p is not None and not 0 <= request.min_p <= 1:
        return f"min_p must be in [0, 1], got {float(request.min_p)}.", None
    limit = request.max_tokens or request.max_completion_tokens
    if limit is not None and request.min_tokens > limit:
        return (
            f"min_tokens must be less than or equal to max_tokens={limit}, got "
            f"{request.min_tokens}.",
            None,
        )
    for name in ("max_tokens", "max_completion_tokens"):
        value = getattr(request, name)
        if value is not None and value > max_model_len:
            return (
                f"{name}={value} cannot be greater than max_model_len={max_model_len}. Please "
                f"request fewer output tokens. (parameter={name}, value={value})",
                name,
            )
    fmt = request.response_format
    if (
        fmt is not None
        and fmt.type == "json_schema"
        and (fmt.json_schema is None or fmt.json_schema.schema is None)
    ):
        return (
            "You must use one kind of structured outputs constraint but none are specified.",
            None,
        )
    return None


def _out_of_range(name: str, bounds: str, value: float) -> str:
    value = float(value)
    return f"{name} must be in {bounds}, got {value}. (parameter={name}, value={value})"
