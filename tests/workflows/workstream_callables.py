"""Callables the python-adapter tests import by path (``module:function``)."""

from __future__ import annotations


def area(width: float, height: float) -> dict[str, float]:
    """Width times height, as a small JSON result."""
    return {"area": width * height}


async def explode(reason: str) -> None:
    """Always fails with ``reason``."""
    raise RuntimeError(reason)
