"""Models of the A* learning loop (seed 000): curriculum, the loop's state, the
student's answers, teacher overrides, and the inputs and results of its activities.

Learning-science terms: a *knowledge component* (KC) is one skill a student
can master; an *item* is one question tagged with a KC; mastery is the
probability ``P(L)`` that the student knows the KC, kept by Bayesian Knowledge
Tracing (Corbett & Anderson 1995) with the four parameters of :class:`BktParams`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from models.common import ArtifactRef, AuditEntry
from models.signatures import DecisionSignature

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_id(value: str) -> str:
    """An identifier of letters, digits, ``_``, ``.`` and ``-`` (no spaces)."""
    if not _ID_RE.match(value):
        raise ValueError(f"{value!r} must be letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return value


class AnswerType(StrEnum):
    """How an item's answer is scored.

    * ``exact``: equal after normalising case, whitespace and trailing punctuation;
    * ``numeric``: a number (``0.75``, ``3/4``, ``1 1/2``, ``75%``) within ``tolerance``
      of the key;
    * ``multiple_choice``: the right choice, by its letter (``B``) or its text;
    * ``free_text``: equivalent answers are accepted first (normalised text, numbers
      within ``tolerance``, the item's listed ``alternatives``); others are graded by
      the LLM when LLM grading is on.
    """

    EXACT = "exact"
    NUMERIC = "numeric"
    MULTIPLE_CHOICE = "multiple_choice"
    FREE_TEXT = "free_text"


class BktParams(BaseModel):
    """The four Bayesian Knowledge Tracing parameters of one KC (Corbett & Anderson 1995).

    Attributes:
        prior: P(L0), probability the KC is known before any practice.
        learn: P(T), probability of learning the KC at each practice opportunity.
        guess: P(G), probability of a correct answer without knowing the KC.
        slip: P(S), probability of a wrong answer despite knowing the KC.
    All are probabilities; ``guess`` and ``slip`` are below 0.5 so that a correct
    answer is evidence of knowing (the model's identifiability condition).
    """

    prior: float = Field(0.1, ge=0, le=1)
    learn: float = Field(0.2, ge=0, le=1)
    guess: float = Field(0.2, ge=0, lt=0.5)
    slip: float = Field(0.1, ge=0, lt=0.5)


class Misconception(BaseModel):
    """A known wrong idea about a KC and how to repair it."""

    id: str
    description: str = Field(min_length=1)
    remediation: str = ""

    _check = field_validator("id")(lambda cls, v: check_id(v))


class ItemSpec(BaseModel):
    """One item of a curriculum file (its KC is the KC it is listed under).

    Attributes:
        id: unique across the curriculum.
        prompt: the question shown to the student.
        answer_type: how the answer is scored (see :class:`AnswerType`).
        answer: the answer key (for multiple choice: the right choice's text).
        choices: the options of a multiple-choice item (two or more).
        tolerance: absolute tolerance of a numeric answer.
        difficulty: 0 (easy) to 1 (hard); easier items are used first.
        misconceptions: a wrong answer (as written) -> the misconception id it shows.
        alternatives: other accepted answers of a free-text item ("top number" for
            "numerator").
    """

    id: str
    prompt: str = Field(min_length=1)
    answer_type: AnswerType
    answer: str = Field(min_length=1)
    choices: list[str] = Field(default_factory=list)
    alternatives: list[str] = Field(default_factory=list)
    tolerance: float = Field(1e-6, ge=0)
    difficulty: float = Field(0.5, ge=0, le=1)
    misconceptions: dict[str, str] = Field(default_factory=dict)

    _check = field_validator("id")(lambda cls, v: check_id(v))

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _check_type(self) -> ItemSpec:
        if self.answer_type == AnswerType.MULTIPLE_CHOICE:
            if len(self.choices) < 2:
                raise ValueError("a multiple_choice item needs two or more choices")
            if self.answer not in self.choices:
                raise ValueError(f"answer {self.answer!r} is not one of the choices")
        return self


class TemplateVariable(BaseModel):
    """One variable of an item template: an integer drawn from ``min``..``max``
    (inclusive) in steps of ``step``, or one of ``values``."""

    min: int | None = None
    max: int | None = None
    step: int = Field(1, ge=1)
    values: list[int | str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_range(self) -> TemplateVariable:
        if self.values:
            return self
        if self.min is None or self.max is None or self.max < self.min:
            raise ValueError("give min and max (min <= max), or values")
        if (self.max - self.min) // self.step > 100_000:
            raise ValueError("the range is too large (at most 100000 values)")
        return self


class ItemTemplate(BaseModel):
    """A variabilized item (as OATutor's variabilized problems): fresh, correct items
    are drawn from it deterministically per student and round.

    Attributes:
        id: unique across the curriculum's items and templates.
        prompt: the question, with ``{name}`` fields for variables and ``derived`` values.
        answer_type: ``numeric``, ``exact`` or ``multiple_choice``.
        variables: name -> how it is drawn (:class:`TemplateVariable`).
        derived: name -> an expression over the variables (and earlier derived
            names), usable in the prompt, the answer and the distractors.
        constraints: expressions that must all be true (draws that fail are redrawn).
        answer: the expression of the answer key. Expressions are arithmetic on
            integers and exact fractions (``+ - * / // % **``, comparisons, ``and``,
            ``or``, ``not``, ``x if c else y``) and the functions ``frac(a, b)``,
            ``gcd``, ``lcm``, ``abs``, ``min``, ``max``, ``round``, ``str``; a fraction
            result is written ``3/4``, a whole one ``3``. They are evaluated by a
            small whitelisted interpreter, never by ``eval``.
        distractors: expressions of the wrong choices of a multiple-choice template.
        misconceptions: distractor expression -> the misconception id that choice shows.
        difficulty: 0 (easy) to 1 (hard).
    """

    id: str
    prompt: str = Field(min_length=1)
    answer_type: AnswerType
    variables: dict[str, TemplateVariable] = Field(min_length=1)
    derived: dict[str, str] = Field(default_factory=dict)
    constraints: list[str] = Field(default_factory=list)
    answer: str = Field(min_length=1)
    distractors: list[str] = Field(default_factory=list)
    misconceptions: dict[str, str] = Field(default_factory=dict)
    difficulty: float = Field(0.5, ge=0, le=1)

    _check = field_validator("id")(lambda cls, v: check_id(v))

    @model_validator(mode="after")
    def _check_type(self) -> ItemTemplate:
        if self.answer_type == AnswerType.FREE_TEXT:
            raise ValueError("a template's answer_type is numeric, exact or multiple_choice")
        if self.answer_type == AnswerType.MULTIPLE_CHOICE and not self.distractors:
            raise ValueError("a multiple_choice template needs distractors")
        return self


class KnowledgeComponentSpec(BaseModel):
    """One KC of a curriculum file: its prerequisites, BKT parameters, remediation
    content and authored items."""

    id: str
    name: str = Field(min_length=1)
    description: str = ""
    prerequisites: list[str] = Field(default_factory=list)
    bkt: BktParams | None = None
    hint: str = ""
    worked_example: str = ""
    misconceptions: list[Misconception] = Field(default_factory=list)
    items: list[ItemSpec] = Field(default_factory=list)
    templates: list[ItemTemplate] = Field(default_factory=list)

    _check = field_validator("id")(lambda cls, v: check_id(v))


class CurriculumSpec(BaseModel):
    """A curriculum file (YAML or JSON): the objective set a learning loop masters.

    KCs are listed in curriculum order (the tie-break of Assign); a KC's
    prerequisites must be KCs of the same file and form no cycle; item IDs are
    unique across the file. See README "Learning loop" for the format.
    """

    id: str
    title: str = Field(min_length=1)
    bkt_defaults: BktParams = Field(default_factory=BktParams)
    knowledge_components: list[KnowledgeComponentSpec] = Field(min_length=1)

    _check = field_validator("id")(lambda cls, v: check_id(v))


# -- the loop -----------------------------------------------------------------


class LearningPhase(StrEnum):
    """Where the loop is: the five stages and the ends (MASTERED and ROUND_LIMIT are
    a result's outcome; FAILED is where a run that raised ends; CANCELED is where a
    cancelled loop ends, at any phase)."""

    ASSIGN = "ASSIGN"
    TEST = "TEST"
    DIAGNOSE = "DIAGNOSE"
    REMEDIATE = "REMEDIATE"
    MODEL = "MODEL"
    PAUSED = "PAUSED"
    MASTERED = "MASTERED"
    ROUND_LIMIT = "ROUND_LIMIT"
    FAILED = "FAILED"
    CANCELED = "CANCELED"


class LearningConfig(BaseModel):
    """How one loop runs (copied from the settings by the CLI when it starts it).

    Attributes:
        student: the student's ID.
        curriculum: the imported curriculum's ID (the objective set).
        mastery_threshold: P(L) at or above which a KC counts as mastered.
        max_rounds: rounds (one test each) before the loop ends ROUND_LIMIT.
        items_per_test: items per test.
        reminder_after: a reminder is recorded when a test is open this long.
        expire_after: an open test expires after this long and is scored not attempted.
        on_expiry: ``continue`` with the next round, or ``pause`` until a teacher resumes.
        llm_grading: free-text answers that are not equivalent to the key are graded
            by the LLM (else they are wrong).
        llm_item_generation: when the bank and the item templates run short, items
            are written by the LLM (off with the offline provider).
        teachers: who may send overrides; empty = anyone.
    """

    student: str
    curriculum: str
    mastery_threshold: float = Field(0.95, gt=0, le=1)
    max_rounds: int = Field(30, ge=1)
    items_per_test: int = Field(3, ge=1, le=20)
    reminder_after: timedelta = timedelta(days=1)
    expire_after: timedelta = timedelta(days=7)
    on_expiry: Literal["continue", "pause"] = "continue"
    llm_grading: bool = False
    llm_item_generation: bool = True
    teachers: list[str] = Field(default_factory=list)

    _check = field_validator("student", "curriculum")(lambda cls, v: check_id(v))


class KcState(BaseModel):
    """One KC as the loop tracks it.

    Attributes:
        id, name, position: the KC and its curriculum order (0-based).
        prerequisites: IDs of its prerequisite KCs.
        mastery: current P(L).
        skipped: a teacher took it out of the objective set.
        rounds: tests taken on it; items: responses scored on it.
        seconds: workflow time spent on it (test open to model updated), in seconds.
    """

    id: str
    name: str
    position: int
    prerequisites: list[str] = Field(default_factory=list)
    mastery: float = 0.0
    skipped: bool = False
    rounds: int = 0
    items: int = 0
    seconds: float = 0.0


class PublicItem(BaseModel):
    """An item as the student sees it: no answer key. ``origin``: written in the
    curriculum, generated by the LLM, or drawn from an item template."""

    id: str
    kc: str
    prompt: str
    answer_type: AnswerType
    choices: list[str] = Field(default_factory=list)
    origin: Literal["authored", "generated", "template"] = "authored"


class OpenTest(BaseModel):
    """The test waiting for the student's answers (the ``open_test`` query).

    Attributes:
        test_id: ``<workflow id>/round-<n>``; the key of the test's rows in the database.
        answers: item ID -> the answer received so far.
        expires_at: when the test expires (UTC).
    """

    test_id: str
    round: int
    kc: str
    items: list[PublicItem]
    opened_at: datetime
    expires_at: datetime
    answers: dict[str, str] = Field(default_factory=dict)


class RemediationRef(BaseModel):
    """A remediation artifact made after a round (the ``remediations`` query)."""

    round: int
    kc: str
    misconceptions: list[str] = Field(default_factory=list)
    practice_items: list[str] = Field(default_factory=list)
    artifact: ArtifactRef


class LearningProgress(BaseModel):
    """What the ``state`` query returns: where the loop is and mastery per KC; who may
    override (``teachers``, empty = anyone), how many overrides were accepted
    (``override_number``: a signed override is signed for the next one) and the run ID
    a signed override names (``override_run_id``, see :class:`LearningState`; empty
    from a worker older than the field: sign the current run's ID)."""

    student: str
    curriculum: str
    phase: LearningPhase
    paused: bool
    round: int
    max_rounds: int
    mastery_threshold: float
    kcs: list[KcState]
    open_test: OpenTest | None = None
    last_remediation: RemediationRef | None = None
    teachers: list[str] = Field(default_factory=list)
    override_number: int = 0
    override_run_id: str = ""


class LearningState(BaseModel):
    """The one state model of LearningLoopWorkflow; it is also the workflow's input,
    so each round continues as new with it (history stays bounded).

    Attributes:
        config: how the loop runs.
        round: rounds finished (0 at the start).
        kcs: every KC in curriculum order; empty until the first run loads them.
        phase: where the loop is.
        paused: a teacher (or an expired test with on_expiry=pause) paused it.
        last_remediation: the newest remediation, for ``learn remediation``.
        audit_tail: the last audit entries of earlier runs (bounded).
        overrides_applied: how many teacher overrides were written (a step counter).
        override_number: how many teacher overrides of any kind were accepted; a
            signed override is bound to the next number, so it cannot be sent twice.
        override_run_id: the run a signed override names: the run that accepted the
            last override, or the loop's first run (under code that knows this field);
            carried as the loop continues as new, so an override signed just before
            a round ends is still taken (once). The current run's ID is taken too.
        started_at: workflow time the loop began.
        ledger, budget_usd: the LLM cost ledger, carried across runs.
    """

    config: LearningConfig
    round: int = 0
    kcs: list[KcState] = Field(default_factory=list)
    phase: LearningPhase = LearningPhase.ASSIGN
    paused: bool = False
    last_remediation: RemediationRef | None = None
    audit_tail: list[AuditEntry] = Field(default_factory=list)
    overrides_applied: int = 0
    override_number: int = 0
    override_run_id: str = ""
    started_at: datetime | None = None
    ledger: list[dict] = Field(default_factory=list)
    budget_usd: float | None = None


class KcSummary(BaseModel):
    """One row of the final summary."""

    kc: str
    mastery: float
    mastered: bool
    skipped: bool
    rounds: int
    items: int
    seconds: float


class LearningResult(BaseModel):
    """What LearningLoopWorkflow returns.

    Attributes:
        outcome: MASTERED (every KC of the set at the threshold) or ROUND_LIMIT.
        rounds: tests taken; items: responses scored.
        kcs: per-KC mastery, rounds, items and time in seconds.
    """

    student: str
    curriculum: str
    outcome: LearningPhase
    rounds: int
    items: int
    seconds: float
    kcs: list[KcSummary]


# -- signals, updates, queries --------------------------------------------------


class Answer(BaseModel):
    """One answer: the item it is for and what the student wrote."""

    item: str = Field(min_length=1)
    answer: str


class SubmitAnswers(BaseModel):
    """Payload of ``submit_answers`` (signal and validated update).

    Attributes:
        test_id: the open test's ID (refused when it is not the open one); empty =
            the open one.
        answers: answers to items of the open test (a later answer to the same item wins).
        finish: close the test now; items without an answer are scored not attempted.
            The test also closes by itself once every item has an answer.
        student: who answers; must be the run's student or one of its teachers
            (refused otherwise); empty = the run's student.
    """

    test_id: str = ""
    answers: list[Answer] = Field(default_factory=list)
    finish: bool = False
    student: str = ""


class SubmitAck(BaseModel):
    """What the ``submit_answers`` update returns."""

    test_id: str
    accepted: list[str]
    missing: list[str]
    closed: bool


OVERRIDE_GATE = "teacher-override"
"""What a teacher override is signed as, in place of a gate name, in the canonical
message of ``models.signatures.decision_message`` (the override's kind is the verdict,
its reason the comment, :meth:`TeacherOverride.signed_content` the content, and the
loop's next override number the opening)."""


class TeacherOverride(BaseModel):
    """What every teacher override carries: who, why and, when the worker has
    GATE_SIGNERS, the signature that proves who.

    Attributes:
        actor: the teacher: a plain name while the worker has no GATE_SIGNERS, else
            ``key:<principal>`` proved by ``signature``.
        reason: why (audited; the signed comment); at most ``MAX_GATE_TEXT_BYTES``
            (64 KiB) of UTF-8, as a gate comment: a longer one is refused with its size.
        signature: an SSH signature of the override bound to the loop's
            ``LearningProgress.override_run_id`` (or the current run) and its next
            override number (``LearningProgress.override_number`` + 1); required when
            the worker has GATE_SIGNERS.
    """

    actor: str = "teacher"
    reason: str = ""
    signature: DecisionSignature | None = None

    def signed_content(self) -> str | None:
        """The override's own parameters as the canonical JSON that is signed (sorted
        keys, no spaces), or None when it has none (pause, resume)."""
        params = self.model_dump(exclude={"actor", "reason", "signature"})
        return json.dumps(params, sort_keys=True, separators=(",", ":")) if params else None


class SetMastery(TeacherOverride):
    """Teacher override: set a KC's P(L) (``set_mastery`` update)."""

    kc: str
    mastery: float = Field(ge=0, le=1)


class SkipKc(TeacherOverride):
    """Teacher override: take a KC out of the objective set (``skip_kc`` update)."""

    kc: str


class PauseResume(TeacherOverride):
    """Teacher override: pause or resume the loop (``pause`` / ``resume`` updates)."""


class OverrideAck(BaseModel):
    """What an override update returns: the loop's phase and the KC's mastery after it."""

    detail: str
    paused: bool


# -- activity inputs and results -----------------------------------------------


class BeginInput(BaseModel):
    """Activity input: register the student and load the curriculum's KCs."""

    workflow_id: str
    student: str
    curriculum: str


class PickItemsInput(BaseModel):
    """Activity input: choose ``count`` items of ``kc`` the student saw least."""

    student: str
    curriculum: str
    kc: str
    count: int


class PickedItems(BaseModel):
    """Items chosen from the bank and how many more are needed."""

    items: list[PublicItem]
    shortfall: int


class GeneratedItem(BaseModel):
    """An item the LLM proposed, before validation (see ITEM_GENERATION_SCHEMA)."""

    kc: str = ""
    prompt: str = ""
    answer_type: str = ""
    answer: str = ""
    choices: list[str] = Field(default_factory=list)


class StoreGeneratedInput(BaseModel):
    """Activity input: validate generated items and add the valid ones to the bank."""

    workflow_id: str
    step: str
    curriculum: str
    kc: str
    items: list[GeneratedItem]
    provider: str = ""


class TemplateItemsInput(BaseModel):
    """Activity input: draw ``count`` items from the KC's item templates for one
    student and round (the same student and round always get the same items)."""

    workflow_id: str
    student: str
    curriculum: str
    kc: str
    round: int
    count: int = Field(ge=1)


class StoredGenerated(BaseModel):
    """Generated items that passed validation, and why the others were refused."""

    items: list[PublicItem]
    refused: list[str]


class OpenTestInput(BaseModel):
    """Activity input: write the test row (idempotent by test ID)."""

    workflow_id: str
    test_id: str
    round: int
    student: str
    curriculum: str
    kc: str
    item_ids: list[str]


class CloseTestInput(BaseModel):
    """Activity input: store the answers and close the test as answered or expired.

    Attributes:
        answers: item ID -> answer; items missing are not attempted.
        llm_grades: item ID -> grade of a free-text answer by the LLM.
    """

    test_id: str
    status: Literal["answered", "expired"]
    answers: dict[str, str]
    llm_grades: dict[str, FreeTextGrade] = Field(default_factory=dict)


class FreeTextGrade(BaseModel):
    """The LLM's grade of one free-text answer (see FREE_TEXT_GRADE_SCHEMA)."""

    correct: bool
    misconception: str = ""
    feedback: str = ""


class ScoredResponse(BaseModel):
    """One response after Diagnose.

    Attributes:
        response_id: ``<test id>/<item id>``; BKT applies it at most once.
        attempted: False when the student gave no answer (no evidence for BKT).
        misconception: the misconception the wrong answer shows, when known.
        graded_by: ``exact``, ``numeric``, ``multiple_choice``, ``llm`` or ``none``.
    """

    response_id: str
    item: str
    answer: str | None
    correct: bool
    attempted: bool
    misconception: str | None = None
    graded_by: str


class Diagnosis(BaseModel):
    """Diagnose's result for one test: scored responses and misconceptions named."""

    test_id: str
    kc: str
    responses: list[ScoredResponse]
    misconceptions: list[str]

    @property
    def correct(self) -> int:
        """How many responses were right."""
        return sum(r.correct for r in self.responses)


class RemediateInput(BaseModel):
    """Activity input: write the remediation for one diagnosed test."""

    workflow_id: str
    round: int
    student: str
    curriculum: str
    diagnosis: Diagnosis


class MasteryInput(BaseModel):
    """Activity input: apply BKT for each attempted response, once per response ID."""

    workflow_id: str
    student: str
    curriculum: str
    kc: str
    responses: list[ScoredResponse]


class MasteryStep(BaseModel):
    """One BKT step: P(L) before and after a response."""

    response_id: str
    correct: bool
    before: float
    after: float


class MasteryUpdate(BaseModel):
    """Model's result: the KC's new P(L) and the steps that led there."""

    kc: str
    mastery: float
    steps: list[MasteryStep]


class FreeTextRubric(BaseModel):
    """What the LLM grader needs for one free-text answer (from the database)."""

    item: str
    prompt: str
    answer_key: str
    misconceptions: list[str] = Field(default_factory=list)
    alternatives: list[str] = Field(default_factory=list)


class SetMasteryInput(BaseModel):
    """Activity input: a teacher's mastery override, idempotent by ``step``."""

    workflow_id: str
    step: str
    student: str
    curriculum: str
    kc: str
    mastery: float
    actor: str
    reason: str = ""


CloseTestInput.model_rebuild()
