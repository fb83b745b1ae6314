"""One error hierarchy for the whole appliance.

`api/errors.py` maps every `ApplianceError` to its HTTP status and an OpenAI-shaped body in one
place; the CLI maps `ConfigError` to one line on stderr and exit status 2. The other exceptions
here are signals between parts, never shown to a client as they are.

    ApplianceError                      500 server_error (base of what is raised on purpose)
    ├── ConfigError                     a file or variable is wrong: one line, exit 2
    ├── BadRequest                      400 invalid_request_error
    ├── Unauthorized                    401 authentication_error
    ├── NotFound                        404 (a model)
    │   ├── UnknownEngine               404 engine_not_found (an operator route)
    │   └── BenchmarkNotFound           404 benchmark_not_found
    ├── BenchmarkRunning                409 conflict_error
    ├── RateLimited                     429 over the key's own rate
    ├── Overloaded                      503 + Retry-After: over the appliance's capacity
    ├── EngineUnavailable               503 + Retry-After: no engine of the chain could answer
    │   └── EngineTimeout               504
    │       └── EngineReadTimeout       (also an EngineConnectionError: retried, then 503)
    ├── EngineRefused                   the engine's own 4xx/5xx, passed on in OpenAI shape
    ├── InvalidModelOutput              502 the model's JSON did not validate
    ├── PlacementError                  the engines do not fit the GPUs
    ├── EncoderMissing                  503 the crisis encoder's weights are not installed
    ├── NvmlUnavailable                 no NVML here (no library, driver or permission)
    ├── StoreError                      the benchmark database cannot be used
    └── BenchmarksUnavailable           503 benchmarks are not running in this appliance
        └── BenchmarksStopped           the store is closed (starting or stopping)

    ConnectionError
    └── EngineConnectionError           an engine unreachable or its answer broken: retried
    Exception
    ├── RetryableStatus                 an engine's 429/5xx worth a retry, with its Retry-After
    ├── NvmlQueryError                  one GPU query failed
    └── TrafficTooHigh                  live traffic kept a scheduled benchmark waiting too long
    ValueError
    ├── GpuSpecError                    a declared GPU spec that cannot be read
    └── MetricsParseError               an engine's /metrics without the gauges the appliance reads

The simulator (`appliance.simulator`) is an engine program of its own; its few internal signals
stay inside it.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base of every error the appliance raises on purpose."""

    status_code = 500
    error_type = "server_error"
    code: str | None = None

    param: str | None = None

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        if param is not None:
            self.param = param  # the request field at fault, in the OpenAI error body
        if code is not None:
            self.code = code


class ConfigError(ApplianceError):
    """A configuration file or variable is wrong; says where and what was expected."""

    def __init__(self, source: str, key: str, expected: str, *, got: str | None = None) -> None:
        self.source, self.key, self.expected, self.got = source, key, expected, got
        where = f"environment variable {key}" if source == key else f"{source}: {key}"
        text = (
            f"{where}: {expected}"
            if expected.startswith("expected ")
            else (f"{where}: expected {expected}")
        )
        if got is not None:
            text += f", got {got}"
        super().__init__(text)


class BadRequest(ApplianceError):
    status_code = 400
    error_type = "invalid_request_error"


class Unauthorized(ApplianceError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class NotFound(ApplianceError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class RateLimited(ApplianceError):
    """Over a client's own rate: 429."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limited"


class Overloaded(ApplianceError):
    """Over the appliance's capacity: 503 with Retry-After."""

    status_code = 503
    error_type = "overloaded_error"
    code = "overloaded"


class EngineUnavailable(ApplianceError):
    """An engine is down, erroring, or its breaker is open: 503 with Retry-After."""

    status_code = 503
    error_type = "engine_unavailable"
    code = "engine_unavailable"


class EngineTimeout(EngineUnavailable):
    status_code = 504
    error_type = "timeout_error"
    code = "engine_timeout"


class InvalidModelOutput(ApplianceError):
    """The model's JSON did not validate, even after the repair attempt."""

    status_code = 502
    error_type = "invalid_model_output"
    code = "invalid_model_output"


class PlacementError(ApplianceError):
    """The engines do not fit the GPUs; the message holds the numbers and what would fit."""


class EngineConnectionError(ConnectionError):
    """The engine could not be reached, closed the connection, or sent a broken answer.

    A transport error: the gateway retries it, then falls back, and answers `EngineUnavailable`
    when no engine is left. An `OSError`, as the relay expects of a broken connection.
    """


class EngineReadTimeout(EngineConnectionError, EngineTimeout):
    """The engine sent nothing for longer than the timeout (LLM_TIMEOUT).

    A transport error like any other to the gateway, which retries it and then falls back, so
    every response about it stays the chain's `EngineUnavailable` (503 + Retry-After).
    """

    def __init__(self, message: str) -> None:
        EngineConnectionError.__init__(self, message)
        EngineTimeout.__init__(self, message)


class EngineRefused(ApplianceError):
    """An engine refused a request with a status not worth retrying (a prompt beyond the
    context, a bad schema): its status and its message, in the OpenAI error shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(
            f"The engine refused the request: {message}", param=param, code=f"engine_http_{status}"
        )
        self.status_code = status
        self.error_type = "invalid_request_error" if status < 500 else "server_error"


# -- operator routes, crisis encoder, GPUs, benchmarks ----------------------------------------


class RetryableStatus(Exception):
    """An engine answered with a status worth retrying; carries its Retry-After."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"engine answered {status}")
        self.status = status
        self.retry_after = retry_after


class EncoderMissing(ApplianceError):
    """The encoder's weights are not installed."""

    status_code = 503


class UnknownEngine(NotFound):
    code = "engine_not_found"


class BenchmarksUnavailable(ApplianceError):
    """Benchmarks are not running in this appliance: 503."""

    status_code = 503
    error_type = "server_error"
    code = "benchmarks_unavailable"


class GpuSpecError(ValueError):
    """A declared GPU spec that cannot be read."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"expected {expected}, got {got!r}")
        self.expected, self.got = expected, got


class MetricsParseError(ValueError):
    """The exposition has none of the gauges the appliance reads."""


class NvmlUnavailable(ApplianceError):
    """NVML cannot be used here: no library, no driver, no permission."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"NVML unavailable: {reason}")
        self.reason = reason


class NvmlQueryError(Exception):
    """One device query failed (for example: not supported on this GPU)."""


class StoreError(ApplianceError):
    """The database cannot be opened or is of a schema this appliance does not know."""


class BenchmarkRunning(ApplianceError):
    """A benchmark run is already going: 409."""

    status_code = 409
    error_type = "conflict_error"
    code = "benchmark_running"


class BenchmarkNotFound(NotFound):
    code = "benchmark_not_found"


class BenchmarksStopped(BenchmarksUnavailable):
    """The store is closed (before start, after stop): the same 503, try again."""


class TrafficTooHigh(Exception):
    """Live traffic stayed above the threshold for longer than a run may wait."""
