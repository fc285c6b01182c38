"""Item templates: variabilized items (OATutor-style) drawn deterministically and
evaluated safely.

* :func:`evaluate` interprets an expression's syntax tree with a whitelist
  (numbers, strings, variables, ``+ - * / // % **``, comparisons, ``and``/``or``/
  ``not``, ``x if c else y`` and the functions of :data:`FUNCTIONS`); anything
  else (attributes, subscripts, lambdas, comprehensions, other calls) is refused.
  Arithmetic is exact: ``/`` gives a :class:`fractions.Fraction`.
* :func:`draw` turns a template into an item for a seed string: variables are drawn
  with ``random.Random(sha256(seed))`` (the same seed always gives the same item),
  redrawn until every constraint holds (at most :data:`MAX_DRAWS` times).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import math
import operator
import random
import re
from fractions import Fraction
from typing import Any

from activities.learning_scoring import parse_number
from activities.llm import template_lines
from models.learning import AnswerType, GeneratedItem, ItemTemplate

MAX_DRAWS = 200
MAX_EXPRESSION = 300  # characters
MAX_POWER = 12
MAX_TEXT = 1000  # characters of a text value
Value = int | Fraction | str | bool


class TemplateError(ValueError):
    """A template expression is invalid, or no draw satisfies its constraints."""


def frac(numerator: Any, denominator: Any = 1) -> Fraction:
    """The exact fraction numerator/denominator."""
    return Fraction(numerator) / Fraction(denominator)


FUNCTIONS: dict[str, Any] = {
    "frac": frac, "gcd": math.gcd, "lcm": math.lcm, "abs": abs, "min": min, "max": max,
    "round": round, "str": lambda v: fmt(v),
}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: frac, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
            ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}


def evaluate(expression: str, env: dict[str, Value]) -> Value:
    """The value of ``expression`` with the variables of ``env`` (see the module docstring).

    Raises:
        TemplateError: a syntax error, a construct outside the whitelist, an unknown
            name, a division by zero, or an exponent above MAX_POWER.
    """
    if len(expression) > MAX_EXPRESSION:
        raise TemplateError(f"expression longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise TemplateError(f"{expression!r} is not an expression: {err.msg}") from None
    try:
        return _eval(tree.body, env)
    except ZeroDivisionError:
        raise TemplateError(f"{expression!r} divides by zero") from None
    except (TypeError, ValueError, OverflowError) as err:
        raise TemplateError(f"{expression!r} cannot be evaluated: {err}") from None


def _eval(node: ast.AST, env: dict[str, Value]) -> Value:  # noqa: C901 - one case per node
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
        return Fraction(str(node.value)) if isinstance(node.value, float) else node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise TemplateError(f"unknown name {node.id!r}")
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, env), _eval(node.right, env)
        if isinstance(node.op, ast.Pow):
            if not isinstance(right, int) or abs(right) > MAX_POWER:
                raise TemplateError(f"exponents are whole numbers up to {MAX_POWER}")
            return Fraction(left) ** right if isinstance(left, Fraction) else left ** right
        op = _BINARY.get(type(node.op))
        if op is None:
            raise TemplateError(f"operator {type(node.op).__name__} is not allowed")
        if isinstance(left, str) or isinstance(right, str):
            if not isinstance(node.op, ast.Add) or len(str(left)) + len(str(right)) > \
                    MAX_TEXT:
                raise TemplateError("text can only be joined with +, up to "
                                    f"{MAX_TEXT} characters")
        return _normal(op(left, right))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, env)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return value
        if isinstance(node.op, ast.Not):
            return not value
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, env) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, env)
            if type(op) not in _COMPARE or not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, env) else node.orelse, env)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id in FUNCTIONS and not node.keywords:
        return _normal(FUNCTIONS[node.func.id](*(_eval(a, env) for a in node.args)))
    raise TemplateError(f"{ast.unparse(node)!r} is not allowed in a template expression")


def _normal(value: Any) -> Value:
    """Whole fractions as ints, so ``6/3`` prints as ``2``."""
    if isinstance(value, Fraction) and value.denominator == 1:
        return int(value.numerator)
    return value


def fmt(value: Value) -> str:
    """An answer as the student writes it: ``3/4``, ``2``, ``-1/3`` or the text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    return str(value)


def draw(template: ItemTemplate, kc: str, seed: str) -> tuple[GeneratedItem, dict[str, str]]:
    """One item of ``template`` for ``seed`` (deterministic).

    Returns:
        The item (prompt filled in, answer key, and for multiple choice the key and
        distractors as choices, in a seed-dependent order so the key's position
        gives nothing away), and its misconceptions: each distractor's value ->
        the misconception id ``template.misconceptions`` gives its expression.

    Raises:
        TemplateError: an expression is invalid, the prompt names an unknown field,
            or MAX_DRAWS draws all failed the constraints or repeated a value among
            the answer and the distractors.
    """
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    for _ in range(MAX_DRAWS):
        env: dict[str, Value] = {}
        for name, var in template.variables.items():
            env[name] = rng.choice(var.values) if var.values else \
                rng.randrange(var.min, var.max + 1, var.step)  # type: ignore[arg-type]
        for name, expression in template.derived.items():
            env[name] = evaluate(expression, env)
        if not all(evaluate(c, env) for c in template.constraints):
            continue
        answer = fmt(evaluate(template.answer, env))
        wrong = [fmt(evaluate(d, env)) for d in template.distractors]
        if len(set([answer, *wrong])) < len(wrong) + 1:
            continue
        choices: list[str] = []
        if template.answer_type == AnswerType.MULTIPLE_CHOICE:
            choices = sorted([answer, *wrong], key=lambda c: hashlib.sha256(
                f"{seed}/{c}".encode()).hexdigest())
        try:
            prompt = template.prompt.format_map({k: fmt(v) for k, v in env.items()})
        except (KeyError, IndexError, ValueError) as err:
            raise TemplateError(f"the prompt of {template.id!r} names {err}, which is "
                                "not a variable or derived value") from None
        misconceptions = {value: template.misconceptions[expr]
                          for expr, value in zip(template.distractors, wrong, strict=True)
                          if expr in template.misconceptions}
        return GeneratedItem(kc=kc, prompt=prompt, answer_type=template.answer_type.value,
                             answer=answer, choices=choices), misconceptions
    raise TemplateError(f"no draw of {template.id!r} in {MAX_DRAWS} satisfied its "
                        "constraints with distinct answer and distractors")


_FIELD = re.compile(r"\{[A-Za-z_]\w*\}")
SHINGLE = 5  # words: an item sharing a run this long with the generator's prompt carries it
GENERATOR_TEMPLATE = "learning_generate_items.md"  # the prompt whose text must not leak


@functools.cache
def _template_shingles() -> frozenset[tuple[str, ...]]:
    """The SHINGLE-word runs of the item generator's prompt (its fixed wording, lower
    case)."""
    runs = set()
    for line in template_lines(min_words=SHINGLE).get(GENERATOR_TEMPLATE, []):
        words = re.findall(r"[\w'-]+", line.lower())
        runs.update(tuple(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1))
    return frozenset(runs)


def template_text(text: str) -> str | None:
    """The prompt-template text ``text`` carries (an unfilled ``{field}``, a
    backticked schema field, or a run of SHINGLE words of the item generator's
    prompt), or None."""
    if m := _FIELD.search(text):
        return m.group(0)
    if m := re.search(r"`(kc|prompt|answer_type|answer|choices)`", text):
        return m.group(0)
    words = re.findall(r"[\w'-]+", text.lower())
    shingles = _template_shingles()
    for i in range(len(words) - SHINGLE + 1):
        if tuple(words[i:i + SHINGLE]) in shingles:
            return " ".join(words[i:i + SHINGLE])
    return None


def item_problem(gen: GeneratedItem, kc: str) -> str | None:
    """Why a generated item (from a template or an LLM) cannot be used, or None:
    it must be tagged with ``kc``, have a known answer type, a prompt and an answer
    key free of prompt-template text (:func:`template_text`), a numeric key that
    parses as a number, and, for multiple choice, two or more distinct choices free
    of template text with the key among them."""
    if gen.kc != kc:
        return f"tagged with KC {gen.kc!r}, not {kc!r}"
    if gen.answer_type not in {t.value for t in AnswerType}:
        return f"unknown answer type {gen.answer_type!r}"
    if not gen.prompt.strip():
        return "no prompt"
    if not gen.answer.strip():
        return "no answer key"
    for what, text in (("prompt", gen.prompt), ("answer key", gen.answer),
                       *(("a choice", c) for c in gen.choices)):
        if (found := template_text(text)) is not None:
            return f"{what} contains prompt-template text ({found!r})"
    if gen.answer_type == AnswerType.NUMERIC and parse_number(gen.answer) is None:
        return f"numeric answer key {gen.answer!r} is not a number"
    if gen.answer_type == AnswerType.MULTIPLE_CHOICE and (
            len(set(gen.choices)) < 2 or len(set(gen.choices)) < len(gen.choices)
            or gen.answer not in gen.choices):
        return ("a multiple-choice item needs two or more distinct choices, one of them "
                "the answer key")
    return None
