"""The parts handlers receive by dependency injection, each built once by the composition root."""

from __future__ import annotations

from litestar.di import Provide


def part(value: object) -> Provide:
    """A dependency that is always this one value."""

    def dependency() -> object:
        return value

    return Provide(dependency, use_cache=True, sync_to_thread=False)
