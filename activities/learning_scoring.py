"""Pure scoring and student-model arithmetic of the learning loop (no I/O).

* :func:`bkt_update`: one Bayesian Knowledge Tracing step (Corbett & Anderson 1995).
* :func:`score_answer`: Diagnose's scorers for exact, numeric and multiple-choice items.
"""

from __future__ import annotations

import re
from fractions import Fraction

from models.learning import AnswerType, BktParams

_MIXED = re.compile(r"^([+-]?\d+)\s+(\d+)\s*/\s*(\d+)$")
_FRACTION = re.compile(r"^([+-]?\d+)\s*/\s*([+-]?\d+)$")


def bkt_update(p_known: float, correct: bool, params: BktParams) -> float:
    """P(L) after one observed response, by Bayesian Knowledge Tracing.

    Corbett, A. T. & Anderson, J. R. (1995). Knowledge tracing: Modeling the
    acquisition of procedural knowledge. *User Modeling and User-Adapted
    Interaction* 4(4), 253-278:

    * posterior given a correct answer: ``P(L)(1-S) / (P(L)(1-S) + (1-P(L))G)``;
    * posterior given a wrong answer:   ``P(L)S / (P(L)S + (1-P(L))(1-G))``;
    * then the learning transition:     ``P(L') = post + (1 - post) T``.

    Args:
        p_known: P(L) before the response, in [0, 1].
        correct: whether the response was right.
        params: the KC's prior/learn/guess/slip (only learn, guess, slip are used here).

    Returns:
        P(L) after the response, in [0, 1].
    """
    g, s, t = params.guess, params.slip, params.learn
    if correct:
        num, den = p_known * (1 - s), p_known * (1 - s) + (1 - p_known) * g
    else:
        num, den = p_known * s, p_known * s + (1 - p_known) * (1 - g)
    posterior = num / den if den > 0 else p_known
    return posterior + (1 - posterior) * t


def normalise_text(text: str) -> str:
    """Lower case, inner whitespace collapsed, outer whitespace and a trailing
    full stop removed: ``"  Three Quarters. "`` -> ``"three quarters"``."""
    return " ".join(text.strip().rstrip(".").split()).lower()


def parse_number(text: str) -> Fraction | None:
    """A number written as an integer, decimal, fraction (``3/4``), mixed number
    (``1 1/2``) or percentage (``75%``); None when it is none of these (or ``x/0``)."""
    raw = text.strip().replace(",", "")
    percent = raw.endswith("%")
    raw = raw.rstrip("%").strip()
    try:
        if m := _MIXED.match(raw):
            whole, num, den = (int(x) for x in m.groups())
            value = abs(whole) + Fraction(num, den)
            value = -value if whole < 0 or raw.startswith("-") else value
        elif m := _FRACTION.match(raw):
            value = Fraction(int(m.group(1)), int(m.group(2)))
        else:
            value = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value


def _choice(answer: str, choices: list[str]) -> str | None:
    """The choice an answer names, by letter (``b``, ``B)``) or by its text."""
    text = normalise_text(answer).rstrip(")")
    if len(text) == 1 and "a" <= text <= "z" and ord(text) - ord("a") < len(choices):
        return choices[ord(text) - ord("a")]
    for choice in choices:
        if normalise_text(choice) == text:
            return choice
    return None


def _bare(text: str) -> str:
    """Normalised text without punctuation and leading articles:
    ``"The numerator!"`` -> ``"numerator"``."""
    words = re.sub(r"[^\w\s/.%-]|(?<!\d)[.](?!\d)", " ", normalise_text(text)).split()
    while words and words[0] in ("the", "a", "an"):
        words = words[1:]
    return " ".join(words)


def grade_free_text(answer: str, key: str, alternatives: list[str] | None = None, *,
                    tolerance: float = 1e-6) -> bool:
    """Whether a free-text answer is equivalent to the key or one of the listed
    ``alternatives``: equal after normalising (case, spaces, punctuation, a leading
    article; :func:`normalise_text`), or both numbers (:func:`parse_number`) within
    ``tolerance`` (absolute)."""
    got = _bare(answer)
    if not got:
        return False
    for want in [key, *(alternatives or [])]:
        if got == _bare(want):
            return True
        a, b = parse_number(answer), parse_number(want)
        if a is not None and b is not None and abs(float(a - b)) <= tolerance:
            return True
    return False


def score_answer(answer: str, answer_type: AnswerType, key: str, *,
                 choices: list[str] | None = None, tolerance: float = 1e-6,
                 alternatives: list[str] | None = None) -> bool:
    """Whether ``answer`` is right for an item.

    Args:
        answer: what the student wrote.
        answer_type: ``exact`` and ``free_text`` compare normalised text
            (:func:`normalise_text`); ``numeric`` compares parsed numbers
            (:func:`parse_number`) within ``tolerance`` (absolute); ``multiple_choice``
            accepts the right choice's letter or text.
        key: the answer key (for multiple choice: the right choice's text).
        choices: the options of a multiple-choice item.
        tolerance: absolute tolerance of a numeric answer.
        alternatives: other accepted answers of a free-text item
            (:func:`grade_free_text`, which ``free_text`` uses).
    """
    if answer_type == AnswerType.FREE_TEXT:
        return grade_free_text(answer, key, alternatives, tolerance=tolerance)
    if answer_type == AnswerType.NUMERIC:
        got, want = parse_number(answer), parse_number(key)
        return got is not None and want is not None and abs(float(got - want)) <= tolerance
    if answer_type == AnswerType.MULTIPLE_CHOICE:
        return _choice(answer, choices or []) == key
    return normalise_text(answer) == normalise_text(key)


def match_misconception(answer: str, answer_type: AnswerType, known: dict[str, str], *,
                        choices: list[str] | None = None) -> str | None:
    """The misconception a wrong answer shows: the ``known`` entry (wrong answer ->
    misconception ID) that the answer matches under the item's own scorer."""
    for wrong, misconception in known.items():
        if score_answer(answer, answer_type, wrong, choices=choices, tolerance=1e-9):
            return misconception
    return None


def declared_misconception(name: str, declared: list[str]) -> str | None:
    """The declared misconception ID an LLM named (compared after normalising case,
    spaces and ``_``), or None when it names none of them."""
    want = normalise_text(name).replace(" ", "-").replace("_", "-")
    for ident in declared:
        if normalise_text(ident).replace("_", "-") == want:
            return ident
    return None
