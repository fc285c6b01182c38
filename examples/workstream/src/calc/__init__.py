"""calc: a tiny calculator package, built and tested by the example workstream."""


def add(a: float, b: float) -> float:
    """a + b."""
    return a + b


def mul(a: float, b: float) -> float:
    """a * b."""
    return a * b
