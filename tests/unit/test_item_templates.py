"""Item templates: the whitelisted evaluator, deterministic draws, the semantic
checks of generated items, the curriculum checks, equivalent free-text answers."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from activities.curriculum import CurriculumError, parse_curriculum
from activities.item_templates import TemplateError, draw, evaluate, item_problem
from activities.learning_scoring import grade_free_text
from models.learning import GeneratedItem, ItemTemplate


def template(**overrides) -> ItemTemplate:
    fields = {"id": "t", "prompt": "Which is {a}/{d} + {b}/{d}?",
              "answer_type": "multiple_choice",
              "variables": {"a": {"min": 1, "max": 5}, "b": {"min": 1, "max": 5},
                            "d": {"min": 3, "max": 12}},
              "constraints": ["a + b < d"], "answer": "frac(a + b, d)",
              "distractors": ["frac(a + b, 2 * d)", "frac(a * b, d)"],
              "misconceptions": {"frac(a + b, 2 * d)": "adds-denominators"}}
    return ItemTemplate.model_validate({**fields, **overrides})


def test_the_evaluator_is_exact_and_refuses_everything_else():
    assert evaluate("frac(6, 8)", {}) == Fraction(3, 4)
    assert evaluate("a / b + 1", {"a": 1, "b": 2}) == Fraction(3, 2)
    assert evaluate("6 / 3", {}) == 2 and isinstance(evaluate("6 / 3", {}), int)
    assert evaluate("gcd(a, 12) == 4 and not a > 9", {"a": 8}) is True
    assert evaluate("x if x > 0 else -x", {"x": -3}) == 3
    for bad in ("__import__('os').system('true')", "a.__class__", "[1, 2][0]",
                "(lambda: 1)()", "open('f')", "2 ** 99", "1 / 0", "y + 1", "a +",
                "'a' * 10 ** 9", "1 + 'x'"):
        with pytest.raises(TemplateError):
            evaluate(bad, {"a": 1})


def test_draws_are_deterministic_correct_and_checked():
    t = template()
    first, misconceptions = draw(t, "kc", "ann/c/t/1/0")
    assert draw(t, "kc", "ann/c/t/1/0") == (first, misconceptions)
    others = {draw(t, "kc", f"ann/c/t/{r}/0")[0].prompt for r in range(1, 8)}
    assert len(others) > 3  # rounds get fresh items
    for r in range(20):
        item, wrong = draw(t, "kc", f"s/{r}")
        a, b, d = (int(x) for x in re.findall(r"\d+", item.prompt)[:3:2]
                   + [re.findall(r"\d+", item.prompt)[3]])
        assert Fraction(item.answer) == Fraction(a + b, d)
        assert item.answer in item.choices and len(set(item.choices)) == 3
        assert item_problem(item, "kc") is None
        assert list(wrong.values()) == ["adds-denominators"]
        assert Fraction(next(iter(wrong))) == Fraction(a + b, 2 * d)


def test_impossible_constraints_and_bad_fields_are_refused():
    with pytest.raises(TemplateError, match="no draw"):
        draw(template(constraints=["a > 100"]), "kc", "s")
    with pytest.raises(TemplateError, match="names 'zz'"):
        draw(template(prompt="What is {zz}?"), "kc", "s")


def test_semantic_checks_of_generated_items():
    ok = GeneratedItem(kc="k", prompt="What is 1/4 + 1/4?", answer_type="numeric",
                       answer="1/2")
    assert item_problem(ok, "k") is None
    # wording the grader's prompt also uses is a fine question: only the generator's
    # own prompt counts as leaked text
    assert item_problem(ok.model_copy(update={
        "prompt": "Say whether the answer is correct: 1/2 + 1/2 = 1"}), "k") is None
    bad = {
        "the options of a multiple-choice item": ok.model_copy(update={
            "prompt": "List the options of a multiple-choice item"}),
        "not a number": ok.model_copy(update={"answer": "half"}),
        "answer key": ok.model_copy(update={"answer_type": "multiple_choice",
                                            "choices": ["1/3", "1/4"]}),
        "{x}": ok.model_copy(update={"prompt": "What is {x}?"}),
    }
    for expected, item in bad.items():
        problem = item_problem(item, "k")
        assert problem is not None, expected
        assert expected in problem or "template text" in problem, problem


def test_the_curriculum_check_draws_every_template():
    data = {"id": "c", "title": "C", "knowledge_components": [{
        "id": "k", "name": "K", "misconceptions": [
            {"id": "adds-denominators", "description": "adds both"}],
        "templates": [template().model_dump(mode="json"),
                      template(id="t2", answer="frac(a, ").model_dump(mode="json"),
                      template(id="t3", misconceptions={"frac(a, d)": "nope"}).model_dump(
                          mode="json")]}]}
    with pytest.raises(CurriculumError) as err:
        parse_curriculum(data)
    text = str(err.value)
    assert "templates[1] (id 't2')" in text and "not an expression" in text
    assert "'nope' is not declared" in text and "not one of its distractors" in text
    assert "(id 't')" not in text  # the good template passes


def test_free_text_accepts_equivalent_answers():
    assert grade_free_text("  The Numerator. ", "numerator")
    assert grade_free_text("0.5", "1/2") and grade_free_text("50%", "one half", ["1/2"])
    assert grade_free_text("numerater", "numerator", ["numerater"])
    assert not grade_free_text("denominator", "numerator")
    assert not grade_free_text("", "numerator")
