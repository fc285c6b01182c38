"""Callables the python-adapter tests import by path (``module:function``)."""

from __future__ import annotations

from os import getpid  # noqa: F401 - imported, not defined here: a python step may not call it


def area(width: float, height: float) -> dict[str, float]:
    """Width times height, as a small JSON result."""
    return {"area": width * height}


async def explode(reason: str) -> None:
    """Always fails with ``reason``."""
    raise RuntimeError(reason)


def leak(name: str) -> dict[str, str]:
    """Returns the value of environment variable ``name`` (a secret-leak probe)."""
    import os

    return {"value": os.environ.get(name, "")}


def leak_in_error(name: str) -> None:
    """Fails with the value of environment variable ``name`` in its message."""
    import os

    raise RuntimeError(f"cannot connect with key {os.environ.get(name, '')}")
