"""One error hierarchy for the whole appliance.

`api/errors.py` maps these to HTTP status codes and OpenAI-shaped bodies in one place; the CLI maps
`ConfigError` to one line on stderr and exit status 2.
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
