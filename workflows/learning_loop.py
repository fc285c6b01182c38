"""LearningLoopWorkflow: one student through Assign -> Test -> Diagnose -> Remediate
-> Model until every knowledge component (KC) of the objective set is mastered
(seed 000's "A*" goal state), or a round limit.

Each run of the workflow is one round; it then continues as new with the one
state model (:class:`~models.learning.LearningState`), so a loop that runs for
weeks keeps a bounded history. The student model lives in SQL: every database
call is an activity of :class:`~activities.learning.LearningStore`.

* **Assign** (:func:`choose_next_kc`): a KC whose prerequisites are mastered (or
  skipped), lowest P(L) first, ties by curriculum order.
* **Test**: items from the bank, unseen first; when too few are unseen, items are
  drawn from the KC's item templates (deterministic per student and round), then,
  if still short and ``llm_item_generation`` is on, generated through the LLM
  layer; every drawn or generated item passes the semantic checks before use. The test is a
  gate the student closes with ``submit_answers`` (a signal, and an update whose
  validator refuses unknown items or a closed test); a reminder is recorded every
  ``reminder_after``, and after ``expire_after`` the test expires, is scored not
  attempted, and the loop goes on or pauses (``on_expiry``).
* **Diagnose**: exact, numeric and multiple-choice scoring in the database
  activity; free text accepted when equivalent to the key (normalised text,
  numbers, listed alternatives), else by the LLM when ``llm_grading`` is on.
  Misconceptions named per KC.
* **Remediate**: hint, worked example and practice items as a Markdown artifact.
* **Model**: Bayesian Knowledge Tracing per response, once per response ID.
* **Teacher overrides** (validated updates): ``set_mastery``, ``skip_kc``, ``pause``, ``resume``.
* **Cancel**, at any phase (waiting for answers, paused, mid-activity): a ``canceled``
  audit entry, the open test closed as ``canceled`` in the database, the phase
  CANCELED, and the run ends cancelled. The loop holds no worktree and starts no
  process of its own; a running activity (an LLM call) is cancelled with the run.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows import policies
from workflows.gates import (
    activity_failure,
    audit_comment,
    claimed,
    failure_message,
    parse_payload,
)
from workflows.llm import LlmWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.learning import LearningStore
    from activities.learning_scoring import grade_free_text
    from models.common import GateDecision, Verdict, text_size_problem
    from models.learning import (
        OVERRIDE_GATE,
        BeginInput,
        CloseTestInput,
        Diagnosis,
        FreeTextGrade,
        FreeTextRubric,
        GeneratedItem,
        KcState,
        KcSummary,
        LearningPhase,
        LearningProgress,
        LearningResult,
        LearningState,
        MasteryInput,
        MasteryUpdate,
        OpenTest,
        OpenTestInput,
        OverrideAck,
        PauseResume,
        PickedItems,
        PickItemsInput,
        PublicItem,
        RemediateInput,
        RemediationRef,
        SetMastery,
        SetMasteryInput,
        SkipKc,
        StoredGenerated,
        StoreGeneratedInput,
        SubmitAck,
        SubmitAnswers,
        TeacherOverride,
        TemplateItemsInput,
    )
    from models.llm import LlmRequest, LlmUsage
    from models.signatures import principal_allowed
    from temporal_plumbing import metrics

SUBMIT_ANSWERS = "submit_answers"
ANSWERS_FROM_STUDENT_PATCH = "answers-from-student"
"""Answers are taken only from the run's student or a teacher (runs whose test
opened before this patch take them from anyone, as they did)."""
AUDIT_TAIL = 50  # audit entries carried into the next run
ITEM_TEMPLATES_PATCH = "item-templates"
"""Patch id: item templates before LLM generation, LLM generation only when
``llm_item_generation`` is on, equivalent free-text answers not sent to the LLM."""
SIGNING_RUN_PATCH = "learning-override-binds-run"
"""Patch id: a signed teacher override may name the carried ``override_run_id`` (the
run that accepted the previous override, or the loop's first run) as well as the
current run; runs that replay without it take only the current run's, as they did."""
SIGNED_OVERRIDES_PATCH = "learning-signed-overrides"
"""Patch id: each run loads the worker's GATE_SIGNERS at its start (not at its first
test), and teacher overrides (async handlers) are authenticated like gate decisions:
signed when the signers are configured, refused and audited when not."""
CANCELED_PATCH = "learning-cancel-ends-canceled"
"""Patch id: a cancelled loop closes its open test as ``canceled`` and enters phase
CANCELED at any phase (before, only a cancel that hit an activity was audited, and
the phase stayed where the cancel found it)."""
GENERATE_TEMPLATE = "learning_generate_items.md"
GRADE_TEMPLATE = "learning_grade_free_text.md"
ANSWER_TYPES = ["exact", "numeric", "multiple_choice"]


def test_gate(round_number: int) -> str:
    """The gate name of a round's test: ``TEST-<n>``."""
    return f"TEST-{round_number}"


def choose_next_kc(kcs: list[KcState], threshold: float) -> KcState | None:
    """Assign: the next KC to test, or None when none is left.

    A KC is done when mastered (P(L) >= ``threshold``) or skipped; it is ready
    when it is not done and all its prerequisites are done. Of the ready KCs the
    one with the lowest P(L) is chosen, ties broken by curriculum order.
    """
    done = {k.id for k in kcs if k.skipped or k.mastery >= threshold}
    ready = [k for k in kcs if k.id not in done and all(p in done for p in k.prerequisites)]
    return min(ready, key=lambda k: (k.mastery, k.position), default=None)


def item_generation_schema(kc: str, count: int) -> dict[str, Any]:
    """JSON schema of the LLM's generated items: exactly ``count`` items tagged with ``kc``."""
    return {
        "type": "object",
        "properties": {"items": {
            "type": "array", "minItems": count, "maxItems": count,
            "items": {
                "type": "object",
                "properties": {
                    "kc": {"const": kc},
                    "prompt": {"type": "string", "minLength": 1},
                    "answer_type": {"enum": ANSWER_TYPES},
                    "answer": {"type": "string", "minLength": 1},
                    "choices": {"type": "array", "items": {"type": "string"}, "maxItems": 6},
                },
                "required": ["kc", "prompt", "answer_type", "answer", "choices"],
            },
        }},
        "required": ["items"],
    }


FREE_TEXT_GRADE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "correct": {"type": "boolean"},
        "misconception": {"type": "string"},
        "feedback": {"type": "string"},
    },
    "required": ["correct", "misconception", "feedback"],
}


@workflow.defn(name="LearningLoopWorkflow")
class LearningLoopWorkflow(LlmWorkflow):
    """The A* learning loop as a durable workflow (see module docstring)."""

    failed_phase: ClassVar[LearningPhase] = LearningPhase.FAILED
    failure_type = "LearningLoopFailed"
    failure_label = "learning loop"

    @workflow.init
    def __init__(self, state: LearningState) -> None:
        super().__init__()
        # the carried state is set here, before any handler can run
        self._s: LearningState = state
        if not state.override_run_id:  # a new loop, or carried by code before the field
            state.override_run_id = workflow.info().run_id
        self._audit.extend(state.audit_tail)
        self.ledger = [LlmUsage.model_validate(u) for u in state.ledger]
        self.budget_usd = state.budget_usd
        self._test: OpenTest | None = None
        self._test_closed = False
        self._answers_checked = False  # set when a test opens (patch answers-from-student)

    # -- queries -----------------------------------------------------------
    @workflow.query(name="state")
    def state(self) -> LearningProgress:
        """Phase, round, mastery per KC, the open test and the newest remediation."""
        s = self._state
        return LearningProgress(
            student=s.config.student, curriculum=s.config.curriculum, phase=s.phase,
            paused=s.paused, round=s.round, max_rounds=s.config.max_rounds,
            mastery_threshold=s.config.mastery_threshold, kcs=list(s.kcs),
            open_test=self._open_test(), last_remediation=s.last_remediation,
            teachers=list(s.config.teachers), override_number=s.override_number,
            override_run_id=s.override_run_id)

    @workflow.query(name="open_test")
    def open_test(self) -> OpenTest | None:
        """The test waiting for answers (no answer keys), or None."""
        return self._open_test()

    @workflow.query(name="remediation")
    def remediation(self) -> RemediationRef | None:
        """The newest remediation artifact, or None."""
        return self._state.last_remediation

    @property
    def _state(self) -> LearningState:
        return self._s

    @property
    def phase(self) -> LearningPhase:
        """The current phase (``state().phase``)."""
        return self._s.phase

    @phase.setter
    def phase(self, value: LearningPhase) -> None:
        self._s.phase = value

    def _open_test(self) -> OpenTest | None:
        return None if self._test is None or self._test_closed else self._test

    # -- the loop ------------------------------------------------------------
    @workflow.run
    async def run(self, state: LearningState) -> LearningResult:
        """Run one round, then continue as new; return the summary once every KC is
        mastered (or skipped) or the round limit is reached."""
        try:
            if workflow.patched(SIGNED_OVERRIDES_PATCH):
                # before anything a teacher may override (a paused loop waits below)
                await self._load_gate_signers()
            if not state.kcs:
                state.started_at = workflow.now()
                state.kcs = await self._db(
                    LearningStore.begin, BeginInput(
                        workflow_id=workflow.info().workflow_id, student=state.config.student,
                        curriculum=state.config.curriculum),
                    f"load {state.config.curriculum} for {state.config.student}")
                self.record("started", f"{len(state.kcs)} KCs of {state.config.curriculum}, "
                            f"threshold {state.config.mastery_threshold}")
            await self._wait_while_paused()
            outcome = self._outcome()
            if outcome is None:
                kc = choose_next_kc(state.kcs, state.config.mastery_threshold)
                if kc is None:
                    await self.fail("no KC can be assigned: check the prerequisites")
                await self._round(kc)
                outcome = self._outcome()
            # an override (set_mastery runs an activity) finishes before the run
            # returns or continues as new, and its result is carried
            await self.handlers_finished()
            outcome = self._outcome()
            if outcome is None:
                state.audit_tail = self.audit_log()[-AUDIT_TAIL:]
                state.ledger = [u.model_dump() for u in self.ledger]
                state.budget_usd = self.budget_usd
                workflow.continue_as_new(state)
            return await self._finish(outcome)
        except asyncio.CancelledError:  # cancelled while it waits (answers, a teacher)
            if workflow.patched(CANCELED_PATCH):
                await self._end_canceled(f"while at {self.phase.value}")
            raise
        except ActivityError as err:
            if is_cancelled_exception(err):  # cancelled: ends CANCELED, not FAILED
                detail = f"{err.activity_type} was cancelled with the run"
                if workflow.patched(CANCELED_PATCH):
                    await self._end_canceled(detail)
                else:
                    self.record("canceled", detail)
                raise
            await self.fail(activity_failure(err))
        except ApplicationError as err:  # e.g. stopped at the budget gate
            if self.phase == LearningPhase.FAILED:  # raised by fail()
                raise
            await self.fail(err.message)

    async def _end_canceled(self, detail: str) -> None:
        """End a cancelled run: record a ``canceled`` audit entry (``detail``: where the
        cancel found the run), close this run's test as ``canceled`` in the database
        (nothing when it was answered, expired or never written), and enter CANCELED.
        The caller re-raises the cancellation, so the run ends cancelled. A database
        that fails for good leaves the test open; that is audited (``test_left_open``)
        and the run still ends CANCELED."""
        self.record("canceled", detail)
        test = self._test
        if test is not None:
            self._test_closed = True
            try:
                await self._db(LearningStore.cancel_test, test.test_id,
                               f"close test {test.test_id} as canceled")
            except ActivityError as err:
                self.record("test_left_open", f"{test.test_id}: {activity_failure(err)}")
        await self.transition(LearningPhase.CANCELED, "canceled")

    def _outcome(self) -> LearningPhase | None:
        s = self._state
        if all(k.skipped or k.mastery >= s.config.mastery_threshold for k in s.kcs):
            return LearningPhase.MASTERED
        if s.round >= s.config.max_rounds:
            return LearningPhase.ROUND_LIMIT
        return None

    async def _finish(self, outcome: LearningPhase) -> LearningResult:
        s = self._state
        await self.transition(outcome, f"after {s.round} round(s)")
        threshold = s.config.mastery_threshold
        kcs = [KcSummary(kc=k.id, mastery=k.mastery, mastered=k.mastery >= threshold,
                         skipped=k.skipped, rounds=k.rounds, items=k.items, seconds=k.seconds)
               for k in s.kcs]
        started = s.started_at or workflow.now()
        return LearningResult(student=s.config.student, curriculum=s.config.curriculum,
                              outcome=outcome, rounds=s.round,
                              items=sum(k.items for k in s.kcs),
                              seconds=(workflow.now() - started).total_seconds(), kcs=kcs)

    async def _wait_while_paused(self) -> None:
        if self._state.paused:
            previous = self._state.phase
            await self.transition(LearningPhase.PAUSED, "waiting for a teacher to resume")
            await workflow.wait_condition(lambda: not self._state.paused)
            await self.transition(previous, "resumed")

    async def _round(self, kc: KcState) -> None:
        s = self._state
        cfg = s.config
        number = s.round + 1
        started = workflow.now()
        wf_id = workflow.info().workflow_id
        await self.transition(LearningPhase.ASSIGN,
                              f"round {number}: {kc.id}, P(L)={kc.mastery:.3f}")

        await self.transition(LearningPhase.TEST, f"round {number}: {kc.id}")
        items = await self._items_for(kc, number)
        test_id = f"{wf_id}/round-{number}"
        await self._db(LearningStore.open_test, OpenTestInput(
            workflow_id=wf_id, test_id=test_id, round=number, student=cfg.student,
            curriculum=cfg.curriculum, kc=kc.id, item_ids=[i.id for i in items]),
            f"open test {test_id}")
        self._answers_checked = workflow.patched(ANSWERS_FROM_STUDENT_PATCH)
        self._test = OpenTest(test_id=test_id, round=number, kc=kc.id, items=items,
                              opened_at=workflow.now(),
                              expires_at=workflow.now() + cfg.expire_after)
        self._test_closed = False
        decision = await self.wait_for_decision(
            test_gate(number), prompt=f"{cfg.student} answers {len(items)} item(s) on {kc.id}",
            reminder_interval=cfg.reminder_after, expires_after=cfg.expire_after)
        self._test_closed = True
        answers = dict(self._test.answers)
        if decision is None:
            self.record("test_expired", f"{test_id}: {len(items) - len(answers)} item(s) "
                        f"not attempted; on expiry: {cfg.on_expiry}")

        await self.transition(LearningPhase.DIAGNOSE, test_id)
        grades = await self._llm_grades(test_id, items, answers) if cfg.llm_grading else {}
        diagnosis: Diagnosis = await self._db(LearningStore.close_test, CloseTestInput(
            test_id=test_id, status="answered" if decision else "expired", answers=answers,
            llm_grades=grades), f"score {len(items)} response(s)")
        self.record("diagnosed", f"{kc.id}: {diagnosis.correct}/{len(diagnosis.responses)} "
                    "right" + (f"; misconceptions: {', '.join(diagnosis.misconceptions)}"
                               if diagnosis.misconceptions else ""))

        if diagnosis.correct < len(diagnosis.responses):
            await self.transition(LearningPhase.REMEDIATE, kc.id)
            s.last_remediation = await self._db(LearningStore.remediate, RemediateInput(
                workflow_id=wf_id, round=number, student=cfg.student, curriculum=cfg.curriculum,
                diagnosis=diagnosis), f"remediation for {kc.id}")
            self.record("remediation", f"{kc.id}: {s.last_remediation.artifact.path}")

        await self.transition(LearningPhase.MODEL, kc.id)
        update: MasteryUpdate = await self._db(LearningStore.update_mastery, MasteryInput(
            workflow_id=wf_id, student=cfg.student, curriculum=cfg.curriculum, kc=kc.id,
            responses=diagnosis.responses), f"BKT update of {kc.id}")
        kc.mastery = update.mastery
        kc.rounds += 1
        kc.items += sum(r.attempted for r in diagnosis.responses)
        kc.seconds += (workflow.now() - started).total_seconds()
        s.round = number
        before = update.steps[0].before if update.steps else kc.mastery
        metrics.learning_answers(workflow.metric_meter(), cfg.curriculum, diagnosis.correct,
                                 len(diagnosis.responses))
        threshold = s.config.mastery_threshold
        metrics.mastery_event(workflow.metric_meter(), cfg.curriculum,
                              "mastered" if before < threshold <= kc.mastery
                              else "lost" if kc.mastery < threshold <= before else "updated")
        self.record("mastery", f"{kc.id}: P(L) {before:.3f} -> {kc.mastery:.3f}")
        if decision is None and cfg.on_expiry == "pause":
            s.paused = True
            self.record("paused", f"{test_id} expired; waiting for a teacher to resume")

    async def _items_for(self, kc: KcState, number: int) -> list[PublicItem]:
        cfg = self._state.config
        count = cfg.items_per_test
        picked: PickedItems = await self._db(LearningStore.pick_items, PickItemsInput(
            student=cfg.student, curriculum=cfg.curriculum, kc=kc.id, count=count),
            f"pick {count} item(s) of {kc.id}")
        fresh = picked.items[:count - picked.shortfall]
        seen = picked.items[count - picked.shortfall:]
        generated: list[PublicItem] = []
        if picked.shortfall and workflow.patched(ITEM_TEMPLATES_PATCH):
            drawn: StoredGenerated = await self._db(
                LearningStore.store_template_items, TemplateItemsInput(
                    workflow_id=workflow.info().workflow_id, student=cfg.student,
                    curriculum=cfg.curriculum, kc=kc.id, round=number,
                    count=picked.shortfall), f"draw {picked.shortfall} templated item(s)")
            if drawn.items or drawn.refused:
                self.record("items_generated", f"{kc.id}: {len(drawn.items)} drawn from "
                            f"templates, {len(drawn.refused)} refused" + (
                                f" ({'; '.join(drawn.refused)})" if drawn.refused else ""))
            generated = list(drawn.items)
            short = picked.shortfall - len(generated)
            if short and cfg.llm_item_generation:
                generated += await self._generate(
                    kc, number, picked.model_copy(update={"shortfall": short}))
        elif picked.shortfall:
            generated = await self._generate(kc, number, picked)
        items = (fresh + generated + seen)[:count]
        if not items:
            await self.fail(f"KC {kc.id!r} has no items and none could be generated; "
                            "add items to the curriculum and import it again")
        return items

    async def _generate(self, kc: KcState, number: int, picked: PickedItems
                        ) -> list[PublicItem]:
        """New items from the LLM layer, validated and stored; [] when the LLM call
        fails for good (the test then uses the items the bank has)."""
        cfg = self._state.config
        try:
            response = await self.call_llm(LlmRequest(
                phase="learning_generate_items", template=GENERATE_TEMPLATE,
                variables={"kc": kc.id, "kc_name": kc.name, "count": picked.shortfall,
                           "round": number, "answer_types": ", ".join(ANSWER_TYPES),
                           "examples": "\n".join(f"- {i.prompt}" for i in picked.items)
                           or "(none yet)"},
                output_schema=item_generation_schema(kc.id, picked.shortfall)),
                summary=f"generate {picked.shortfall} item(s) for {kc.id}")
        except ActivityError as err:
            self.record("items_generated", f"{kc.id}: generation failed "
                        f"({failure_message(err)}); "
                        "the test uses the bank's items")
            return []
        proposed = [GeneratedItem.model_validate(x) for x in
                    (response.data or {}).get("items", []) if isinstance(x, dict)]
        stored: StoredGenerated = await self._db(
            LearningStore.store_generated, StoreGeneratedInput(
                workflow_id=workflow.info().workflow_id, step=f"round-{number}-generate",
                curriculum=cfg.curriculum, kc=kc.id, items=proposed,
                provider=response.usage.provider),
            f"validate {len(proposed)} generated item(s)")
        self.record("items_generated", f"{kc.id}: {len(stored.items)} accepted, "
                    f"{len(stored.refused)} refused" + (
                        f" ({'; '.join(stored.refused)})" if stored.refused else ""))
        return stored.items

    async def _llm_grades(self, test_id: str, items: list[PublicItem],
                          answers: dict[str, str]) -> dict[str, FreeTextGrade]:
        if not any(i.answer_type == "free_text" and answers.get(i.id) for i in items):
            return {}
        rubrics: list[FreeTextRubric] = await self._db(
            LearningStore.rubrics, test_id, "answer keys of free-text items")
        grades: dict[str, FreeTextGrade] = {}
        equivalent_first = workflow.patched(ITEM_TEMPLATES_PATCH)
        for rubric in rubrics:
            answer = answers.get(rubric.item, "")
            if not answer.strip():
                continue
            if equivalent_first and grade_free_text(answer, rubric.answer_key,
                                                    rubric.alternatives):
                continue  # right without asking a model (Diagnose scores it)
            try:
                response = await self.call_llm(LlmRequest(
                    phase="learning_grade_free_text", template=GRADE_TEMPLATE,
                    variables={"prompt": rubric.prompt, "answer_key": rubric.answer_key,
                               "answer": answer,
                               "alternatives": "; ".join(rubric.alternatives) or "(none)",
                               "misconceptions": ", ".join(rubric.misconceptions) or "(none)"},
                    output_schema=FREE_TEXT_GRADE_SCHEMA), summary=f"grade {rubric.item}")
            except ActivityError as err:
                self.record("grading", f"{rubric.item}: LLM grading failed "
                            f"({failure_message(err)}); "
                            "graded by exact match")
                continue
            grades[rubric.item] = FreeTextGrade.model_validate(response.data or {
                "correct": False, "feedback": "the grader gave no structured answer"})
        return grades

    async def _db(self, method: Any, arg: Any, summary: str) -> Any:
        return await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=policies.DB_TIMEOUT,
            retry_policy=policies.DB_RETRY, summary=summary)

    # -- the student's answers -----------------------------------------------
    def answers_problem(self, sub: SubmitAnswers) -> str | None:
        """Why a submission cannot be taken now, or None when it can."""
        test = self._open_test()
        if test is None:
            closed = f"test {self._test.test_id} is closed; " if self._test else ""
            return f"{closed}no test is open (the loop is at {self._state.phase.value})"
        if sub.test_id and sub.test_id != test.test_id:
            return f"test {sub.test_id} is not open; the open test is {test.test_id}"
        cfg = self._state.config
        if (self._answers_checked and sub.student and sub.student != cfg.student
                and sub.student not in cfg.teachers):
            teachers = f" or a teacher ({', '.join(cfg.teachers)})" if cfg.teachers else ""
            return (f"only the student {cfg.student!r}{teachers} may answer this test, "
                    f"not {sub.student!r}")
        ids = [i.id for i in test.items]
        unknown = [a.item for a in sub.answers if a.item not in ids]
        if unknown:
            return (f"unknown item(s) {', '.join(unknown)}; the items of {test.test_id} "
                    f"are {', '.join(ids)}")
        if not sub.answers and not sub.finish:
            return "no answers given (pass answers, or finish to close the test)"
        return None

    def _take_answers(self, sub: SubmitAnswers, source: str) -> SubmitAck:
        test = self._test
        assert test is not None
        for answer in sub.answers:
            test.answers[answer.item] = answer.answer
        missing = [i.id for i in test.items if i.id not in test.answers]
        closed = sub.finish or not missing
        actor = sub.student or self._state.config.student
        self.record("answers", f"{test.test_id}: {len(sub.answers)} answer(s) via {source}"
                    + ("; test closed" if closed else f"; {len(missing)} to go"),
                    actor=actor)
        if closed:
            self._test_closed = True
            self._accept(GateDecision(gate=test_gate(test.round), verdict=Verdict.APPROVE,
                                      actor=actor, comment="answers submitted"), source)
        return SubmitAck(test_id=test.test_id, accepted=[a.item for a in sub.answers],
                         missing=missing, closed=closed)

    @workflow.signal(name=SUBMIT_ANSWERS)
    def submit_answers_signal(self, *payload: object) -> None:
        """Signal form: a submission that cannot be taken is audited as refused,
        and so is a payload that is not a SubmitAnswers (validated here, from the
        raw input, with the validation error as the reason)."""
        sub, error = parse_payload(SubmitAnswers, payload)
        if sub is None:
            first = payload[0] if len(payload) == 1 else None
            self.record("refused", f"{SUBMIT_ANSWERS} signal refused: {error}",
                        actor=claimed(first, "student"))
            return
        problem = self.answers_problem(sub)
        if problem:
            self.record("refused", f"answers refused: {problem}",
                        actor=sub.student or self._state.config.student)
            return
        self._take_answers(sub, "signal")

    @workflow.update(name=SUBMIT_ANSWERS)
    def submit_answers(self, sub: SubmitAnswers) -> SubmitAck:
        """Update form: refused at once by the validator (unknown items, closed test)."""
        return self._take_answers(sub, "update")

    @submit_answers.validator
    def _validate_answers(self, sub: SubmitAnswers) -> None:
        problem = self.answers_problem(sub)
        if problem:
            raise ValueError(problem)

    def decision_problem(self, decision: GateDecision) -> str | None:
        """Gate checks, plus: a test gate is closed by answers, not by a gate decision."""
        if decision.gate.startswith("TEST-"):
            return "a test closes when the student submits answers (`learn answer`)"
        return super().decision_problem(decision)

    # -- teacher overrides -----------------------------------------------------
    def _override_problem(self, req: TeacherOverride, kc: str | None = None) -> str | None:
        """Why an override cannot be taken now (validators; who the actor really is,
        :meth:`_authenticate_override`'s question, is checked in the handler, so a
        refusal is audited): a ``reason`` over ``MAX_GATE_TEXT_BYTES`` (refused with
        its size, before the update and its text reach the history, as a gate comment
        sent by update is), an actor who is not a teacher, an unknown ``kc``."""
        too_large = text_size_problem("reason", req.reason)
        if too_large:
            return too_large
        actor = req.actor
        s = self._state
        if not principal_allowed(actor, s.config.teachers):
            return f"{actor!r} may not override (teachers: {', '.join(s.config.teachers)})"
        if kc is not None and kc not in {k.id for k in s.kcs}:
            return f"unknown KC {kc!r}; the KCs are {', '.join(k.id for k in s.kcs)}"
        return None

    def _kc(self, kc_id: str) -> KcState:
        return next(k for k in self._state.kcs if k.id == kc_id)

    async def _authenticate_override(self, kind: str, req: TeacherOverride) -> None:
        """Take the override's number, or refuse it: with GATE_SIGNERS on the worker an
        override must be signed by an allowed key as ``key:<principal>``, for the loop's
        ``override_run_id`` (kept across continue-as-new) or the current run, and the
        loop's next override number (:data:`~models.learning.OVERRIDE_GATE`,
        :meth:`GatedWorkflow.authentication_problem`); without them a plain name is
        taken, as before. Loads the signers first when this run has not yet.

        Raises:
            ApplicationError: ``OverrideRefused`` (non-retryable), after recording a
                ``refused`` audit entry with the reason; the update fails, the loop
                goes on.
        """
        if self._signers is None and workflow.patched(SIGNED_OVERRIDES_PATCH):
            await self._load_gate_signers()
        number = self._state.override_number + 1
        run_id = workflow.info().run_id
        bound = self._state.override_run_id
        if (self.signatures_required and bound != run_id
                and not workflow.patched(SIGNING_RUN_PATCH)):
            bound = run_id
        if self.signatures_required and req.signature is None:
            source = self._signers.source if self._signers else "GATE_SIGNERS"
            problem = (f"teacher overrides must be signed ({source} is set on the worker):"
                       " run the `learn` command with --key PATH or an ssh-agent key")
        else:
            problem = self.authentication_problem(
                actor=req.actor, signature=req.signature, gate=OVERRIDE_GATE,
                opening=number, verdict=kind, comment=req.reason,
                content=req.signed_content(), opened_run_id=bound)
        if problem:
            self.record("refused", f"{kind} refused: {problem}", actor=req.actor,
                        comment=audit_comment(req.reason))
            raise ApplicationError(problem, type="OverrideRefused", non_retryable=True)
        self._state.override_number = number
        self._state.override_run_id = run_id

    @workflow.update(name="set_mastery")
    async def set_mastery(self, req: SetMastery) -> OverrideAck:
        """Set a KC's P(L) (written to the mastery history as an override); refused
        and audited when the teacher is not authenticated."""
        await self._authenticate_override("set_mastery", req)
        s = self._state
        s.overrides_applied += 1
        step = f"override-{s.overrides_applied}"
        value = await self._db(LearningStore.set_mastery, SetMasteryInput(
            workflow_id=workflow.info().workflow_id, step=step, student=s.config.student,
            curriculum=s.config.curriculum, kc=req.kc, mastery=req.mastery, actor=req.actor,
            reason=req.reason), f"override: P(L) of {req.kc} -> {req.mastery}")
        kc = self._kc(req.kc)
        before, kc.mastery = kc.mastery, value
        detail = f"{req.kc}: P(L) {before:.3f} -> {value:.3f}"
        self.record("override", detail, actor=req.actor, comment=req.reason)
        return OverrideAck(detail=detail, paused=s.paused)

    @set_mastery.validator
    def _validate_set_mastery(self, req: SetMastery) -> None:
        if problem := self._override_problem(req, req.kc):
            raise ValueError(problem)

    @workflow.update(name="skip_kc")
    async def skip_kc(self, req: SkipKc) -> OverrideAck:
        """Take a KC out of the objective set (it counts as done for Assign); refused
        and audited when the teacher is not authenticated."""
        await self._authenticate_override("skip_kc", req)
        self._kc(req.kc).skipped = True
        self.record("override", f"{req.kc} skipped", actor=req.actor, comment=req.reason)
        return OverrideAck(detail=f"{req.kc} skipped", paused=self._state.paused)

    @skip_kc.validator
    def _validate_skip(self, req: SkipKc) -> None:
        if problem := self._override_problem(req, req.kc):
            raise ValueError(problem)
        if self._kc(req.kc).skipped:
            raise ValueError(f"{req.kc} is already skipped")

    @workflow.update(name="pause")
    async def pause(self, req: PauseResume) -> OverrideAck:
        """Pause the loop before its next round (an open test stays open); refused
        and audited when the teacher is not authenticated."""
        await self._authenticate_override("pause", req)
        self._state.paused = True
        self.record("paused", "paused by a teacher", actor=req.actor, comment=req.reason)
        return OverrideAck(detail="paused", paused=True)

    @pause.validator
    def _validate_pause(self, req: PauseResume) -> None:
        if problem := self._override_problem(req):
            raise ValueError(problem)
        if self._state.paused:
            raise ValueError("the loop is already paused")

    @workflow.update(name="resume")
    async def resume(self, req: PauseResume) -> OverrideAck:
        """Resume a paused loop; refused and audited when the teacher is not
        authenticated."""
        await self._authenticate_override("resume", req)
        self._state.paused = False
        self.record("resumed", "resumed by a teacher", actor=req.actor, comment=req.reason)
        return OverrideAck(detail="resumed", paused=False)

    @resume.validator
    def _validate_resume(self, req: PauseResume) -> None:
        if problem := self._override_problem(req):
            raise ValueError(problem)
        if not self._state.paused:
            raise ValueError("the loop is not paused")

