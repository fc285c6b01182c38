"""The learning loop's reads and writes, one transaction each (SQLAlchemy 2).

Every write is idempotent, keyed by the workflow ID and step, so an activity
that runs twice (a crash after the commit, before Temporal recorded the result)
changes nothing the second time:

* tests by ``<workflow id>/round-<n>``, responses by ``<test id>/<item id>``;
* BKT steps by response ID (``mastery_history.step_key`` is unique);
* generated items by ``<workflow id>/<step>/<index>``; overrides by ``<workflow id>/<step>``;
* remediations by test ID (the artifact's bytes are the same on a rerun).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activities.artifacts import ArtifactStore
from activities.item_templates import TemplateError, draw, item_problem
from activities.learning_db import (
    Curriculum,
    Item,
    KcPrerequisite,
    KnowledgeComponent,
    LearningDatabase,
    Mastery,
    MasteryHistory,
    Remediation,
    Response,
    Student,
    Test,
    utcnow,
)
from activities.learning_scoring import (
    bkt_update,
    declared_misconception,
    grade_free_text,
    match_misconception,
    score_answer,
)
from models.learning import (
    AnswerType,
    BeginInput,
    BktParams,
    CloseTestInput,
    Diagnosis,
    FreeTextRubric,
    ItemTemplate,
    KcState,
    MasteryInput,
    MasteryStep,
    MasteryUpdate,
    OpenTestInput,
    PickedItems,
    PickItemsInput,
    PublicItem,
    RemediateInput,
    RemediationRef,
    ScoredResponse,
    SetMasteryInput,
    StoredGenerated,
    StoreGeneratedInput,
    TemplateItemsInput,
)

NOT_ATTEMPTED = "not-attempted"
UNCLASSIFIED = "unclassified-error"
PRACTICE_ITEMS = 3


class UnknownCurriculum(LookupError):
    """The curriculum (or a KC of it) is not in the database; import it first."""


def public(item: Item) -> PublicItem:
    """An item without its answer key."""
    return PublicItem(id=item.id, kc=item.kc_id, prompt=item.prompt,
                      answer_type=AnswerType(item.answer_type), choices=list(item.choices),
                      origin=item.origin)  # type: ignore[arg-type]


def bkt_params(kc: KnowledgeComponent) -> BktParams:
    """The BKT parameters stored with a KC."""
    return BktParams(prior=kc.p_prior, learn=kc.p_learn, guess=kc.p_guess, slip=kc.p_slip)


class LearningRepository:
    """Reads and writes of the learning loop (see the module docstring).

    Args:
        database: the learning database (migrated on first use).
        artifacts: where remediation artifacts are written.
    """

    def __init__(self, database: LearningDatabase, artifacts: ArtifactStore) -> None:
        self.db = database
        self.artifacts = artifacts

    def _kc(self, session: Session, curriculum: str, kc: str) -> KnowledgeComponent:
        row = session.get(KnowledgeComponent, (curriculum, kc))
        if row is None:
            raise UnknownCurriculum(f"KC {kc!r} of curriculum {curriculum!r} is not in the "
                                    "database; import the curriculum with `learn import FILE`")
        return row

    # -- Assign --------------------------------------------------------------
    def begin(self, inp: BeginInput) -> list[KcState]:
        """Register the student and give every KC of the curriculum, in curriculum
        order, with the student's current P(L) (the KC's prior on first contact).

        Raises:
            UnknownCurriculum: the curriculum has not been imported.
        """
        with self.db.session() as s:
            if s.get(Curriculum, inp.curriculum) is None:
                known = ", ".join(s.scalars(select(Curriculum.id))) or "none"
                raise UnknownCurriculum(
                    f"curriculum {inp.curriculum!r} is not imported (imported: {known}); "
                    "import it with `learn import FILE`")
            if s.get(Student, inp.student) is None:
                s.add(Student(id=inp.student, created_at=utcnow()))
                s.flush()
            kcs = s.scalars(select(KnowledgeComponent).where(
                KnowledgeComponent.curriculum_id == inp.curriculum).order_by(
                KnowledgeComponent.position)).all()
            prereqs: dict[str, list[str]] = {}
            for p in s.scalars(select(KcPrerequisite).where(
                    KcPrerequisite.curriculum_id == inp.curriculum)):
                prereqs.setdefault(p.kc_id, []).append(p.prerequisite_id)
            states = []
            for kc in kcs:
                mastery = s.get(Mastery, (inp.student, inp.curriculum, kc.id))
                if mastery is None:
                    mastery = Mastery(student_id=inp.student, curriculum_id=inp.curriculum,
                                      kc_id=kc.id, p_known=kc.p_prior, opportunities=0,
                                      updated_at=utcnow())
                    s.add(mastery)
                    s.add(MasteryHistory(
                        step_key=f"prior/{inp.student}/{inp.curriculum}/{kc.id}",
                        student_id=inp.student, curriculum_id=inp.curriculum, kc_id=kc.id,
                        source="prior", p_after=kc.p_prior, actor=inp.workflow_id,
                        at=utcnow()))
                states.append(KcState(id=kc.id, name=kc.name, position=kc.position,
                                      prerequisites=sorted(prereqs.get(kc.id, [])),
                                      mastery=mastery.p_known))
            return states

    # -- Test ----------------------------------------------------------------
    def pick_items(self, inp: PickItemsInput) -> PickedItems:
        """Up to ``count`` items of the KC: those the student has not seen first
        (easiest first, authored before generated), then the least seen.
        ``shortfall`` is how many unseen items are missing for a full test."""
        with self.db.session() as s:
            self._kc(s, inp.curriculum, inp.kc)
            items = s.scalars(select(Item).where(
                Item.curriculum_id == inp.curriculum, Item.kc_id == inp.kc)).all()
            seen = Counter(s.scalars(select(Response.item_id).where(
                Response.student_id == inp.student, Response.curriculum_id == inp.curriculum,
                Response.kc_id == inp.kc)))
            ordered = sorted(items, key=lambda i: (seen[i.id], i.origin != "authored",
                                                   i.difficulty, i.id))
            unseen = sum(1 for i in items if not seen[i.id])
            return PickedItems(items=[public(i) for i in ordered[:inp.count]],
                               shortfall=max(0, inp.count - unseen))

    def store_generated(self, inp: StoreGeneratedInput) -> StoredGenerated:
        """Validate generated items (KC tag, answer type, answer key, prompt, choices)
        and add the valid ones to the bank as ``origin=generated``. An item is
        refused, with the reason, when any check fails or its prompt repeats one
        of the KC's items."""
        with self.db.session() as s:
            self._kc(s, inp.curriculum, inp.kc)
            prompts = {p.strip().lower() for p in s.scalars(select(Item.prompt).where(
                Item.curriculum_id == inp.curriculum, Item.kc_id == inp.kc))}
            stored: list[PublicItem] = []
            refused: list[str] = []
            for index, gen in enumerate(inp.items):
                item_id = "gen-" + hashlib.sha256(
                    f"{inp.workflow_id}/{inp.step}/{index}".encode()).hexdigest()[:12]
                existing = s.get(Item, (inp.curriculum, item_id))
                if existing is not None:  # a rerun of this step
                    stored.append(public(existing))
                    continue
                problem = generated_item_problem(gen, inp.kc)
                if problem is None and gen.prompt.strip().lower() in prompts:
                    problem = "repeats the prompt of an item in the bank"
                if problem:
                    refused.append(f"item {index + 1}: {problem}")
                    continue
                prompts.add(gen.prompt.strip().lower())
                row = Item(curriculum_id=inp.curriculum, id=item_id, kc_id=inp.kc,
                           prompt=gen.prompt.strip(), answer_type=gen.answer_type,
                           answer_key=gen.answer.strip(), choices=list(gen.choices),
                           tolerance=1e-6, difficulty=0.5, origin="generated",
                           misconceptions={}, created_by=f"{inp.workflow_id}/{inp.step}",
                           created_at=utcnow())
                s.add(row)
                stored.append(public(row))
            return StoredGenerated(items=stored, refused=refused)

    def store_template_items(self, inp: TemplateItemsInput) -> StoredGenerated:
        """Draw ``inp.count`` items from the KC's item templates (in turn) for one
        student and round, check each like a generated item (:func:`item_problem`)
        and add the valid ones to the bank as ``origin=template``; a draw whose prompt
        a template item of the bank already has reuses that item, one that repeats an
        authored or LLM item is refused. The seed of draw ``k`` is ``student/curriculum/template/
        round/k``, so a rerun (or a replay) finds the same items by their IDs.
        No templates -> nothing stored, nothing refused."""
        with self.db.session() as s:
            kc = self._kc(s, inp.curriculum, inp.kc)
            templates = [ItemTemplate.model_validate(t) for t in kc.item_templates or []]
            bank = {i.prompt.strip().lower(): i for i in s.scalars(select(Item).where(
                Item.curriculum_id == inp.curriculum, Item.kc_id == inp.kc))}
            stored: list[PublicItem] = []
            refused: list[str] = []
            for k in range(inp.count if templates else 0):
                template = templates[k % len(templates)]
                seed = f"{inp.student}/{inp.curriculum}/{template.id}/{inp.round}/{k}"
                item_id = f"{template.id}-" + hashlib.sha256(seed.encode()).hexdigest()[:10]
                existing = s.get(Item, (inp.curriculum, item_id))
                if existing is not None:
                    stored.append(public(existing))
                    continue
                try:
                    gen, misconceptions = draw(template, inp.kc, seed)
                    problem = item_problem(gen, inp.kc)
                except TemplateError as err:
                    problem = str(err)
                same = bank.get(gen.prompt.strip().lower()) if problem is None else None
                if same is not None and same.origin == "template":
                    if all(i.id != same.id for i in stored):  # drawn before: reuse it
                        stored.append(public(same))
                    continue
                if same is not None:
                    problem = "repeats the prompt of an item in the bank"
                if problem:
                    refused.append(f"template {template.id} draw {k + 1}: {problem}")
                    continue
                row = Item(curriculum_id=inp.curriculum, id=item_id, kc_id=inp.kc,
                           prompt=gen.prompt, answer_type=gen.answer_type,
                           answer_key=gen.answer, choices=list(gen.choices),
                           tolerance=1e-6, difficulty=template.difficulty, origin="template",
                           misconceptions=misconceptions, alternatives=[],
                           created_by=f"{inp.workflow_id}/round-{inp.round}",
                           created_at=utcnow())
                s.add(row)
                bank[gen.prompt.strip().lower()] = row
                stored.append(public(row))
            return StoredGenerated(items=stored, refused=refused)

    def open_test(self, inp: OpenTestInput) -> None:
        """Write the test row once (a rerun finds it)."""
        with self.db.session() as s:
            if s.get(Test, inp.test_id) is None:
                s.add(Test(id=inp.test_id, workflow_id=inp.workflow_id, round=inp.round,
                           student_id=inp.student, curriculum_id=inp.curriculum,
                           kc_id=inp.kc, item_ids=list(inp.item_ids), status="open",
                           assigned_at=utcnow()))

    def cancel_test(self, test_id: str) -> bool:
        """Close a test of a cancelled loop as ``canceled``: no responses are stored,
        so nothing of it is scored or counts as evidence. Returns True when the test
        was open; False when it was closed before or never written (the loop was
        cancelled before ``open_test`` ran), so a rerun changes nothing."""
        with self.db.session() as s:
            test = s.get(Test, test_id, with_for_update=True)
            if test is None or test.status != "open":
                return False
            test.status, test.closed_at = "canceled", utcnow()
            return True

    # -- Diagnose --------------------------------------------------------------
    def rubrics(self, test_id: str) -> list[FreeTextRubric]:
        """Prompt, answer key and the KC's misconception IDs of each free-text item
        of a test, for the LLM grader."""
        with self.db.session() as s:
            test = s.get(Test, test_id)
            if test is None:
                raise LookupError(f"no test {test_id!r}")
            kc = self._kc(s, test.curriculum_id, test.kc_id)
            out = []
            for item_id in test.item_ids:
                item = s.get(Item, (test.curriculum_id, item_id))
                if item is not None and item.answer_type == AnswerType.FREE_TEXT:
                    out.append(FreeTextRubric(item=item.id, prompt=item.prompt,
                                              answer_key=item.answer_key,
                                              misconceptions=[m["id"] for m in kc.misconceptions],
                                              alternatives=list(item.alternatives)))
            return out

    def close_test(self, inp: CloseTestInput) -> Diagnosis:
        """Score every item of the test, store the responses and close the test.

        Items without an answer are not attempted (wrong, and no evidence for BKT).
        A free-text answer equivalent to the key or a listed alternative is right
        (:func:`grade_free_text`); otherwise ``inp.llm_grades`` decides when given.
        A test closed before returns the stored diagnosis.

        Raises:
            LookupError: no such test.
        """
        with self.db.session() as s:
            test = s.get(Test, inp.test_id, with_for_update=True)
            if test is None:
                raise LookupError(f"no test {inp.test_id!r}")
            if test.status == "open":
                kc = self._kc(s, test.curriculum_id, test.kc_id)
                for item_id in test.item_ids:
                    item = s.get(Item, (test.curriculum_id, item_id))
                    assert item is not None
                    s.add(self._grade(test, item, kc, inp))
                test.status, test.closed_at = inp.status, utcnow()
                s.flush()
            rows = {r.item_id: r for r in s.scalars(select(Response).where(
                Response.test_id == test.id))}
            responses = [ScoredResponse(
                response_id=r.id, item=r.item_id, answer=r.answer, correct=r.correct,
                attempted=r.attempted, misconception=r.misconception, graded_by=r.graded_by)
                for r in (rows[i] for i in test.item_ids)]
            names = [r.misconception for r in responses if r.misconception]
            return Diagnosis(test_id=test.id, kc=test.kc_id, responses=responses,
                             misconceptions=list(dict.fromkeys(names)))

    def _grade(self, test: Test, item: Item, kc: KnowledgeComponent,
               inp: CloseTestInput) -> Response:
        answer = inp.answers.get(item.id)
        answer_type = AnswerType(item.answer_type)
        misconception: str | None = None
        feedback = ""
        if answer is None or not answer.strip():
            attempted, correct, graded_by = False, False, "none"
            misconception = NOT_ATTEMPTED
        elif answer_type == AnswerType.FREE_TEXT and item.id in inp.llm_grades and \
                not grade_free_text(answer, item.answer_key, item.alternatives,
                                    tolerance=item.tolerance):
            grade = inp.llm_grades[item.id]
            attempted, correct, graded_by, feedback = True, grade.correct, "llm", grade.feedback
            if not correct:
                misconception = declared_misconception(
                    grade.misconception, [m["id"] for m in kc.misconceptions]) or UNCLASSIFIED
        else:
            attempted, graded_by = True, answer_type.value
            if answer_type == AnswerType.FREE_TEXT:
                graded_by = "exact"
            correct = score_answer(answer, answer_type, item.answer_key, choices=item.choices,
                                   tolerance=item.tolerance, alternatives=item.alternatives)
            if not correct:
                misconception = match_misconception(
                    answer, answer_type, item.misconceptions, choices=item.choices
                ) or UNCLASSIFIED
        return Response(id=f"{test.id}/{item.id}", test_id=test.id, student_id=test.student_id,
                        curriculum_id=test.curriculum_id, item_id=item.id, kc_id=test.kc_id,
                        answer=answer, attempted=attempted, correct=correct,
                        misconception=misconception, graded_by=graded_by, feedback=feedback,
                        answered_at=utcnow())

    # -- Remediate -------------------------------------------------------------
    def remediate(self, inp: RemediateInput) -> RemediationRef:
        """Write the remediation of a diagnosed test: a hint, the misconceptions
        named with their repair, the worked example, the right answers of the
        items missed, and practice items of the KC not in the test. The artifact
        is Markdown at ``learning/<workflow id>/round-<n>-remediation.md``."""
        diagnosis = inp.diagnosis
        with self.db.session() as s:
            kc = self._kc(s, inp.curriculum, diagnosis.kc)
            in_test = {r.item for r in diagnosis.responses}
            practice = [i for i in s.scalars(select(Item).where(
                Item.curriculum_id == inp.curriculum, Item.kc_id == kc.id).order_by(
                Item.difficulty, Item.id)) if i.id not in in_test][:PRACTICE_ITEMS]
            missed = [(r, s.get(Item, (inp.curriculum, r.item)))
                      for r in diagnosis.responses if not r.correct]
            declared = {m["id"]: m for m in kc.misconceptions}
            lines = [f"# Remediation: {kc.name} (round {inp.round})", "",
                     f"Student: {inp.student}. Right: {diagnosis.correct} of "
                     f"{len(diagnosis.responses)}.", "", "## Hint", "",
                     kc.hint or f"Review {kc.name}: {kc.description}", ""]
            named = [m for m in diagnosis.misconceptions if m != NOT_ATTEMPTED]
            if named:
                lines += ["## What went wrong", ""]
                for name in named:
                    m = declared.get(name)
                    lines.append(f"- **{name}**: " + (
                        f"{m['description']} {m.get('remediation', '')}".strip() if m else
                        "the answer matches no known misconception; compare it with the "
                        "worked example."))
                lines.append("")
            if kc.worked_example:
                lines += ["## Worked example", "", kc.worked_example.strip(), ""]
            if missed:
                lines += ["## Items you missed", ""]
                for response, item in missed:
                    assert item is not None
                    given = response.answer if response.attempted else "(not attempted)"
                    lines.append(f"- {item.prompt} Your answer: {given}. "
                                 f"Right answer: {item.answer_key}.")
                lines.append("")
            if practice:
                lines += ["## Practice", ""]
                lines += [f"{n}. {i.prompt}" + (f" Choices: {', '.join(i.choices)}."
                                                 if i.choices else "")
                          for n, i in enumerate(practice, 1)]
                lines.append("")
            ref = self.artifacts.write(
                f"learning/{inp.workflow_id}/round-{inp.round}-remediation.md",
                "\n".join(lines))
            if s.get(Remediation, diagnosis.test_id) is None:
                s.add(Remediation(
                    id=diagnosis.test_id, workflow_id=inp.workflow_id, round=inp.round,
                    student_id=inp.student, curriculum_id=inp.curriculum, kc_id=kc.id,
                    misconceptions=list(diagnosis.misconceptions), hint=kc.hint,
                    worked_example=kc.worked_example,
                    practice_item_ids=[i.id for i in practice], artifact_path=ref.path,
                    artifact_sha256=ref.sha256, created_at=utcnow()))
            return RemediationRef(round=inp.round, kc=kc.id,
                                  misconceptions=list(diagnosis.misconceptions),
                                  practice_items=[i.id for i in practice], artifact=ref)

    # -- Model -----------------------------------------------------------------
    def update_mastery(self, inp: MasteryInput) -> MasteryUpdate:
        """Apply one BKT step per attempted response, in order, each response ID at
        most once (a rerun returns the same P(L)). Not-attempted responses are no
        evidence and leave P(L) as it is."""
        with self.db.session() as s:
            kc = self._kc(s, inp.curriculum, inp.kc)
            params = bkt_params(kc)
            mastery = s.get(Mastery, (inp.student, inp.curriculum, inp.kc),
                            with_for_update=True)
            if mastery is None:
                raise LookupError(f"no mastery of {inp.kc!r} for {inp.student!r}; "
                                  "the loop registers the student first")
            steps = []
            for r in inp.responses:
                if not r.attempted:
                    continue
                done = s.scalar(select(MasteryHistory).where(
                    MasteryHistory.step_key == r.response_id))
                if done is not None:
                    steps.append(MasteryStep(response_id=r.response_id, correct=r.correct,
                                             before=done.p_before or 0.0, after=done.p_after))
                    continue
                before = mastery.p_known
                mastery.p_known = bkt_update(before, r.correct, params)
                mastery.opportunities += 1
                mastery.updated_at = utcnow()
                s.add(MasteryHistory(step_key=r.response_id, student_id=inp.student,
                                     curriculum_id=inp.curriculum, kc_id=inp.kc, source="bkt",
                                     correct=r.correct, p_before=before,
                                     p_after=mastery.p_known, actor=inp.workflow_id,
                                     at=utcnow()))
                s.flush()
                steps.append(MasteryStep(response_id=r.response_id, correct=r.correct,
                                         before=before, after=mastery.p_known))
            return MasteryUpdate(kc=inp.kc, mastery=mastery.p_known, steps=steps)

    def set_mastery(self, inp: SetMasteryInput) -> float:
        """A teacher's override of P(L), recorded in the history once per step."""
        with self.db.session() as s:
            self._kc(s, inp.curriculum, inp.kc)
            key = f"{inp.workflow_id}/{inp.step}"
            mastery = s.get(Mastery, (inp.student, inp.curriculum, inp.kc),
                            with_for_update=True)
            if mastery is None:
                raise LookupError(f"no mastery of {inp.kc!r} for {inp.student!r}")
            if s.scalar(select(func.count()).select_from(MasteryHistory).where(
                    MasteryHistory.step_key == key)):
                return mastery.p_known
            s.add(MasteryHistory(step_key=key, student_id=inp.student,
                                 curriculum_id=inp.curriculum, kc_id=inp.kc, source="override",
                                 p_before=mastery.p_known, p_after=inp.mastery,
                                 actor=inp.actor, at=utcnow()))
            mastery.p_known, mastery.updated_at = inp.mastery, utcnow()
            return mastery.p_known

    # -- reading (CLI, tests) --------------------------------------------------
    def mastery_history(self, student: str, curriculum: str) -> list[MasteryHistory]:
        """Every change of the student's P(L) in a curriculum, oldest first."""
        with self.db.session() as s:
            return list(s.scalars(select(MasteryHistory).where(
                MasteryHistory.student_id == student,
                MasteryHistory.curriculum_id == curriculum).order_by(MasteryHistory.id)))

    def answer_key(self, curriculum: str, item_id: str) -> tuple[str, list[str]]:
        """An item's answer key and wrong answers a student might give (its known
        misconception answers, or the other choices) - for simulated students.

        Raises:
            LookupError: no such item.
        """
        with self.db.session() as s:
            item = s.get(Item, (curriculum, item_id))
            if item is None:
                raise LookupError(f"no item {item_id!r} in {curriculum!r}")
            wrong = list(item.misconceptions) or [c for c in item.choices
                                                  if c != item.answer_key]
            return item.answer_key, wrong or [f"not {item.answer_key}"]


generated_item_problem = item_problem  # the semantic checks of every generated item


def read_artifact_text(path: str) -> str:
    """The text of an artifact file (the CLI shows remediations with it)."""
    return Path(path).read_text(encoding="utf-8")
