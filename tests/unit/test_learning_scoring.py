"""BKT against values computed by hand, Diagnose's scorers, and Assign's choice."""

from __future__ import annotations

from fractions import Fraction

import pytest

from activities.learning_scoring import (
    bkt_update,
    declared_misconception,
    match_misconception,
    parse_number,
    score_answer,
)
from models.learning import AnswerType, BktParams, KcState
from workflows.learning_loop import choose_next_kc

PARAMS = BktParams(prior=0.1, learn=0.2, guess=0.2, slip=0.1)


def test_bkt_correct_answer_by_hand():
    # posterior = .1*.9 / (.1*.9 + .9*.2) = .09/.27 = 1/3; then 1/3 + (2/3)*.2 = 7/15
    assert bkt_update(0.1, True, PARAMS) == pytest.approx(7 / 15)


def test_bkt_wrong_answer_by_hand():
    # posterior = .1*.1 / (.1*.1 + .9*.8) = .01/.73; then post + (1 - post)*.2
    post = 0.01 / 0.73
    assert bkt_update(0.1, False, PARAMS) == pytest.approx(post + (1 - post) * 0.2)
    assert bkt_update(0.1, False, PARAMS) == pytest.approx(0.2109589, abs=1e-7)


def test_bkt_sequence_by_hand():
    # from 7/15: .42 / (.42 + (8/15)*.2) = .797468...; + .202532 * .2 = .837975
    p = bkt_update(bkt_update(0.1, True, PARAMS), True, PARAMS)
    assert p == pytest.approx(0.8379747, abs=1e-7)
    # three right answers in a row master the KC at the default threshold
    assert bkt_update(p, True, PARAMS) >= 0.95


def test_bkt_without_learning_is_pure_bayes():
    params = BktParams(prior=0.5, learn=0.0, guess=0.25, slip=0.25)
    assert bkt_update(0.5, True, params) == pytest.approx(0.75)
    assert bkt_update(0.5, False, params) == pytest.approx(0.25)


def test_bkt_params_refuse_guess_or_slip_of_one_half_or_more():
    with pytest.raises(ValueError):
        BktParams(guess=0.5)
    with pytest.raises(ValueError):
        BktParams(slip=0.7)


@pytest.mark.parametrize("text,value", [
    ("3/4", Fraction(3, 4)), (" 0.75 ", Fraction(3, 4)), ("75%", Fraction(3, 4)),
    ("1 1/2", Fraction(3, 2)), ("-2 1/4", Fraction(-9, 4)), ("12", Fraction(12)),
    ("1,000", Fraction(1000)), ("3/0", None), ("three", None), ("", None),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_numeric_scoring_normalises_and_uses_tolerance():
    assert score_answer("6/8", AnswerType.NUMERIC, "3/4")
    assert score_answer("0.75", AnswerType.NUMERIC, "3/4")
    assert score_answer("0.333", AnswerType.NUMERIC, "1/3", tolerance=0.001)
    assert not score_answer("0.33", AnswerType.NUMERIC, "1/3", tolerance=0.001)
    assert not score_answer("abc", AnswerType.NUMERIC, "1/3")


def test_exact_and_multiple_choice_scoring():
    assert score_answer("  Numerator. ", AnswerType.EXACT, "numerator")
    assert not score_answer("numerators", AnswerType.EXACT, "numerator")
    choices = ["1/4", "1/8", "They are equal"]
    assert score_answer("a", AnswerType.MULTIPLE_CHOICE, "1/4", choices=choices)
    assert score_answer("A)", AnswerType.MULTIPLE_CHOICE, "1/4", choices=choices)
    assert score_answer("1/4", AnswerType.MULTIPLE_CHOICE, "1/4", choices=choices)
    assert not score_answer("b", AnswerType.MULTIPLE_CHOICE, "1/4", choices=choices)
    assert not score_answer("d", AnswerType.MULTIPLE_CHOICE, "1/4", choices=choices)


def test_misconceptions_match_under_the_items_scorer():
    known = {"3/8": "adds-denominators"}
    assert match_misconception("6/16", AnswerType.NUMERIC, known) == "adds-denominators"
    assert match_misconception("1/2", AnswerType.NUMERIC, known) is None
    assert declared_misconception("Adds denominators", ["adds-denominators"]) == \
        "adds-denominators"
    assert declared_misconception("", ["adds-denominators"]) is None


def kc(ident: str, position: int, mastery: float, prerequisites=(), skipped=False) -> KcState:
    return KcState(id=ident, name=ident, position=position, mastery=mastery,
                   prerequisites=list(prerequisites), skipped=skipped)


def test_assign_needs_prerequisites_mastered():
    kcs = [kc("a", 0, 0.5), kc("b", 1, 0.1, ["a"])]
    assert choose_next_kc(kcs, 0.95).id == "a"  # b is lower but blocked
    kcs[0].mastery = 0.96
    assert choose_next_kc(kcs, 0.95).id == "b"


def test_assign_lowest_mastery_first_ties_by_curriculum_order():
    kcs = [kc("a", 0, 0.4), kc("b", 1, 0.2), kc("c", 2, 0.2)]
    assert choose_next_kc(kcs, 0.95).id == "b"


def test_assign_skipped_counts_as_done_and_none_when_all_done():
    kcs = [kc("a", 0, 0.1, skipped=True), kc("b", 1, 0.3, ["a"])]
    assert choose_next_kc(kcs, 0.95).id == "b"
    kcs[1].mastery = 0.95
    assert choose_next_kc(kcs, 0.95) is None
