"""models.text.excerpt: shortening is idempotent, so a text carried over several
continue-as-new keeps the note with its original length."""

from __future__ import annotations

from models.sdlc import FEEDBACK_EXCERPT_CHARS, SdlcState
from models.text import excerpt


def test_short_text_is_kept_whole():
    assert excerpt("abc", 3) == "abc"


def test_long_text_is_cut_with_its_length():
    assert excerpt("x" * 12_345, 3) == "xxx... [12,345 characters in all]"


def test_excerpt_of_an_excerpt_keeps_the_original_length():
    once = excerpt("y" * 10_000, 500)
    assert len(once) > 500
    assert excerpt(once, 500) == once
    assert excerpt(excerpt(once, 500), 500).endswith("[10,000 characters in all]")


def test_preview_and_where_are_kept_too():
    once = excerpt("z" * 5_000, 2_000, preview=1_000, where="whole in the history of run r1")
    assert once == "z" * 1_000 + "... [5,000 characters in all: whole in the history of run r1]"
    assert excerpt(once, 2_000, preview=1_000, where="whole in the history of run r2") == once


def test_a_longer_text_ending_like_an_excerpt_is_still_cut():
    # the note must follow at most `preview` characters to count as an excerpt
    text = "w" * 900 + "... [3 characters in all]"
    assert excerpt(text, 500).endswith(f"[{len(text):,} characters in all]")


def test_sdlc_state_excerpt_keeps_the_feedback_length_over_two_carries():
    state = SdlcState(feedback="f" * 40_000)
    twice = state.excerpt().excerpt()
    assert twice.feedback.endswith("[40,000 characters in all]")
    assert twice.feedback.startswith("f" * FEEDBACK_EXCERPT_CHARS)
