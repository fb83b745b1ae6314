"""The package's shape, kept by a test rather than by memory: small modules, and handlers that
take their collaborators from dependency injection, never from `app.state`."""

from __future__ import annotations

import re
from pathlib import Path

import appliance

PACKAGE = Path(appliance.__file__).resolve().parent
MAX_LINES = 450


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_modules_to_check() -> None:
    assert len(_modules()) > 50


def test_no_module_is_over_the_line_limit() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in _modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_module_reads_app_state() -> None:
    readers = [
        str(path.relative_to(PACKAGE))
        for path in _modules()
        if re.search(r"\bapp\.state\b", path.read_text(encoding="utf-8"))
    ]
    assert readers == []
