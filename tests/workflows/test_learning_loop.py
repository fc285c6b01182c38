"""LearningLoopWorkflow on the time-skipping server with the real database
activities (SQLite) and the offline LLM provider."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, CancelledError

from activities.learning_scoring import parse_number
from cli.learning import learning_config, start_learning
from models.common import AuditEntry
from models.learning import (
    Answer,
    LearningPhase,
    LearningProgress,
    LearningResult,
    OpenTest,
    OverrideAck,
    PauseResume,
    SetMastery,
    SkipKc,
    SubmitAck,
    SubmitAnswers,
)
from models.llm import LlmRequest, LlmResponse
from simulation.student import POLL_QUERY_TIMEOUT, SimulatedStudent
from temporal_plumbing.environments import start_time_skipping_env
from tests.conftest import NO_SIGNERS, hanging_llm_complete
from tests.learning_support import imported_database, learning_settings
from worker import make_worker
from workflows.learning_loop import SUBMIT_ANSWERS, LearningLoopWorkflow


@pytest.fixture
def db_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'learning.db'}"
    imported_database(url).dispose()
    return url


@pytest_asyncio.fixture
async def ts_env():
    """A time-skipping server for each test of this module (it overrides the shared
    session one): the simulated student's queries and updates racing a run's end
    can leave the test server's time-skipping lock held, which would stall the
    timer tests that follow on a shared server."""
    env = await start_time_skipping_env()
    try:
        yield env
    finally:
        await env.shutdown()


def student() -> str:
    return f"s{uuid.uuid4().hex[:8]}"


async def refused(call, pattern: str) -> None:
    """The update is refused by its validator with a message matching ``pattern``."""
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await call
    assert re.search(pattern, str(err.value.cause)), str(err.value.cause)


async def wait_for_test(handle, previous: str | None = None) -> OpenTest:
    for _ in range(400):
        try:
            test = await handle.query("open_test", result_type=OpenTest | None,
                                      rpc_timeout=POLL_QUERY_TIMEOUT)
        except Exception:  # noqa: BLE001 - between runs (see POLL_QUERY_TIMEOUT)
            test = None
        if test is not None and test.test_id != previous:
            return test
        await asyncio.sleep(0.02)
    raise AssertionError("no test opened")


async def simulate(ts_env, settings, db_url: str, name: str, *, p: float, seed: int,
                   max_rounds: int):
    """Run a loop to its end, a SimulatedStudent answering right with probability ``p``;
    returns (result, the handle of the first run)."""
    config = learning_config(settings, student=name, curriculum="fractions",
                             max_rounds=max_rounds)
    async with make_worker(ts_env.client, settings):
        handle = await start_learning(ts_env.client, settings, config)
        sim = SimulatedStudent(ts_env.client.get_workflow_handle(handle.id), db_url, p=p,
                               seed=seed)
        await sim.run("fractions")
        result = LearningResult.model_validate(await sim.handle.result())
    assert result.rounds == sim.tests
    return result, handle


async def test_able_student_reaches_mastery(ts_env, task_queue, tmp_path, db_url):
    settings = learning_settings(tmp_path, task_queue, db_url)
    result, _ = await simulate(ts_env, settings, db_url, student(), p=0.95, seed=1,
                               max_rounds=40)
    assert result.outcome == LearningPhase.MASTERED
    assert all(kc.mastered for kc in result.kcs)
    assert result.rounds <= 40
    assert result.items == sum(kc.items for kc in result.kcs) > 0


def history_rows(db_url: str, student_id: str):
    from activities.artifacts import ArtifactStore
    from activities.learning_db import LearningDatabase
    from activities.learning_repo import LearningRepository

    repo = LearningRepository(LearningDatabase(db_url), ArtifactStore(Path(".")))
    return repo.mastery_history(student_id, "fractions")


def db_session(db_url: str):
    from activities.learning_db import LearningDatabase

    return LearningDatabase(db_url).session()


async def test_mastery_history_and_continue_as_new(ts_env, task_queue, tmp_path, db_url):
    from sqlalchemy import select

    from activities.learning_db import MasteryHistory, Response

    settings = learning_settings(tmp_path, task_queue, db_url)
    name = student()
    result, handle = await simulate(ts_env, settings, db_url, name, p=0.9, seed=7,
                                    max_rounds=40)
    first_run = await ts_env.client.get_workflow_handle(
        handle.id, run_id=handle.result_run_id).describe()
    assert first_run.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert result.rounds > 1  # each round was a run of its own
    with db_session(db_url) as s:
        responses = s.scalars(select(Response).where(Response.student_id == name)).all()
        bkt = s.scalars(select(MasteryHistory).where(
            MasteryHistory.student_id == name, MasteryHistory.source == "bkt")).all()
    # BKT once per response ID, and every attempted response was applied
    assert sorted(h.step_key for h in bkt) == sorted(r.id for r in responses if r.attempted)
    assert len(responses) == result.items
    for kc in result.kcs:  # the workflow's state matches the database's last BKT step
        last = [h for h in bkt if h.kc_id == kc.kc][-1]
        assert kc.mastery == pytest.approx(last.p_after)


async def test_weak_student_does_not_reach_mastery(ts_env, task_queue, tmp_path, db_url):
    settings = learning_settings(tmp_path, task_queue, db_url)
    result, _ = await simulate(ts_env, settings, db_url, student(), p=0.2, seed=3,
                               max_rounds=12)
    assert result.outcome == LearningPhase.ROUND_LIMIT
    assert result.rounds == 12
    assert not all(kc.mastered for kc in result.kcs)
    # prerequisites gate Assign: nothing past the first KC before it is mastered
    first = result.kcs[0]
    if not first.mastered:
        assert all(kc.rounds == 0 for kc in result.kcs[1:])


async def test_reminders_then_expiry_scores_not_attempted(ts_env, task_queue, tmp_path, db_url):
    from sqlalchemy import select

    from activities.learning_db import Response, Test

    settings = learning_settings(tmp_path, task_queue, db_url)
    name = student()
    config = learning_config(settings, student=name, curriculum="fractions", max_rounds=2,
                             reminder_after=timedelta(hours=1), expire_after=timedelta(hours=3),
                             on_expiry="continue")
    async with make_worker(ts_env.client, settings):
        handle = await start_learning(ts_env.client, settings, config)
        result = LearningResult.model_validate(await handle.result())  # time skips
        audit = await handle.query("audit_log", result_type=list[AuditEntry])
    assert result.outcome == LearningPhase.ROUND_LIMIT and result.rounds == 2
    assert result.items == 0  # nothing attempted, no evidence
    assert result.kcs[0].mastery == pytest.approx(0.1)  # the prior, unchanged
    kinds = [e.kind for e in audit]
    assert kinds.count("test_expired") == 2
    assert kinds.count("reminder") == 4  # at 1 h and 2 h of each test
    with db_session(db_url) as s:
        tests = s.scalars(select(Test).where(Test.student_id == name)).all()
        responses = s.scalars(select(Response).where(Response.student_id == name)).all()
    assert [t.status for t in tests] == ["expired", "expired"]
    assert responses and all(not r.attempted and r.misconception == "not-attempted"
                             for r in responses)


async def test_expiry_pauses_until_resumed(ts_env, task_queue, tmp_path, db_url):
    settings = learning_settings(tmp_path, task_queue, db_url)
    config = learning_config(settings, student=student(), curriculum="fractions", max_rounds=3,
                             reminder_after=timedelta(hours=1), expire_after=timedelta(hours=2),
                             on_expiry="pause")
    async with make_worker(ts_env.client, settings):
        handle = await start_learning(ts_env.client, settings, config)
        first = await wait_for_test(handle)
        await ts_env.sleep(timedelta(hours=3))
        for _ in range(200):
            progress = await handle.query("state", result_type=LearningProgress)
            if progress.phase == LearningPhase.PAUSED:
                break
            await asyncio.sleep(0.02)
        assert progress.paused and progress.round == 1 and progress.open_test is None
        await refused(handle.execute_update("pause", PauseResume(actor="ms-lee")),
                      "already paused")
        await ts_env.sleep(timedelta(days=30))  # paused: no new test, however long
        assert (await handle.query("state", result_type=LearningProgress)).round == 1
        ack = await handle.execute_update("resume", PauseResume(actor="ms-lee"),
                                          result_type=OverrideAck)
        assert not ack.paused
        second = await wait_for_test(handle, previous=first.test_id)
        assert second.round == 2
        await handle.terminate()


async def test_answers_overrides_and_state_across_runs(ts_env, task_queue, tmp_path, db_url):
    settings = learning_settings(tmp_path, task_queue, db_url)
    config = learning_config(settings, student=student(), curriculum="fractions",
                             max_rounds=10, teachers=["ms-lee"])
    async with make_worker(ts_env.client, settings):
        handle = await start_learning(ts_env.client, settings, config)
        test = await wait_for_test(handle)
        assert test.kc == "fraction-meaning"  # the only KC without prerequisites
        await refused(handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(
                answers=[Answer(item="nope", answer="1")])), "unknown item")
        await refused(handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(
                test_id="other/round-9", answers=[Answer(item=test.items[0].id, answer="1")])),
            "is not open")
        await refused(handle.execute_update("skip_kc", SkipKc(kc="adding-fractions",
                                                          actor="mallory")), "may not override")
        await refused(handle.execute_update("skip_kc", SkipKc(kc="calculus", actor="ms-lee")),
                      "unknown KC")
        # only the run's student (or a teacher) may answer
        await refused(handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(
                student="mallory", answers=[Answer(item=test.items[0].id, answer="1")])),
            f"only the student '{config.student}' or a teacher \\(ms-lee\\) may answer "
            "this test, not 'mallory'")
        first, *rest = test.items
        ack = await handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(
            student=config.student, answers=[Answer(item=first.id, answer="42")]),
            result_type=SubmitAck)
        assert not ack.closed and ack.missing == [i.id for i in rest]
        # a refused signal is audited, not raised
        await handle.signal(SUBMIT_ANSWERS, SubmitAnswers(answers=[Answer(item="x", answer="")]))
        ack = await handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(
            student="ms-lee", answers=[Answer(item=i.id, answer="42") for i in rest]),
            result_type=SubmitAck)
        assert ack.closed
        # ... by its own handler: GatedWorkflow's dynamic signal handler does not take it
        refusals = [e.detail for e in await handle.query("audit_log",
                                                         result_type=list[AuditEntry])
                    if e.kind == "refused"]
        assert any(d.startswith("answers refused") for d in refusals), refusals
        assert not any("no signal of that name" in d for d in refusals)
        # a payload that is not a SubmitAnswers is audited too, never dropped
        await handle.signal(SUBMIT_ANSWERS, {"answers": "42", "student": "sam"})
        for _ in range(200):
            bad = [e for e in await handle.query("audit_log", result_type=list[AuditEntry])
                   if e.kind == "refused" and "signal refused" in e.detail]
            if bad:
                break
            await asyncio.sleep(0.05)
        assert bad and bad[0].actor == "sam", bad
        assert "answers: Input should be a valid list" in bad[0].detail
        await refused(handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(
                answers=[Answer(item=first.id, answer="1")])), "closed|no test is open")
        second = await wait_for_test(handle, previous=test.test_id)
        assert second.round == 2  # a new run (continue-as-new) opened it
        await handle.execute_update("set_mastery", SetMastery(
            kc="fraction-meaning", mastery=0.99, actor="ms-lee", reason="knows it"),
            result_type=OverrideAck)
        await handle.execute_update("skip_kc", SkipKc(kc="comparing-fractions", actor="ms-lee"))
        progress = await handle.query("state", result_type=LearningProgress)
        kcs = {k.id: k for k in progress.kcs}
        assert kcs["fraction-meaning"].mastery == 0.99 and kcs["comparing-fractions"].skipped
        assert kcs["fraction-meaning"].rounds == 1
        assert kcs["fraction-meaning"].items == len(test.items)
        assert progress.last_remediation is not None  # round 1 had wrong answers
        text = open(progress.last_remediation.artifact.path).read()
        assert "## Worked example" in text and "Right answer" in text
        # round 2 answered: its Model step starts from the override, and the
        # state survives the next continue-as-new
        await handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(finish=True))
        third = await wait_for_test(handle, previous=second.test_id)
        assert third.kc == "equivalent-fractions"  # fraction-meaning is mastered now
        progress = await handle.query("state", result_type=LearningProgress)
        kcs = {k.id: k for k in progress.kcs}
        assert kcs["fraction-meaning"].mastery == 0.99  # not attempted: no BKT step
        assert kcs["comparing-fractions"].skipped and progress.round == 2
        audit = await handle.query("audit_log", result_type=list[AuditEntry])
        kinds = [e.kind for e in audit]
        assert "override" in kinds and "refused" in kinds  # carried over from earlier runs
        await handle.terminate()


TEMPLATED = {
    "id": "sums", "title": "Sums", "knowledge_components": [{
        "id": "like-sums", "name": "Adding fractions with like denominators",
        "misconceptions": [{"id": "adds-denominators", "description": "adds both"}],
        "items": [{"id": "ls-1", "prompt": "What is the top number of a fraction called?",
                   "answer_type": "free_text", "answer": "numerator",
                   "alternatives": ["numerater"]}],
        "templates": [{
            "id": "ls-t", "prompt": "What is {a}/{d} + {b}/{d}?", "answer_type": "numeric",
            "variables": {"a": {"min": 1, "max": 5}, "b": {"min": 1, "max": 5},
                          "d": {"min": 3, "max": 12}},
            "constraints": ["a + b < d"], "answer": "frac(a + b, d)",
            "distractors": ["frac(a + b, 2 * d)"],
            "misconceptions": {"frac(a + b, 2 * d)": "adds-denominators"}}]}]}


async def test_templated_items_and_equivalent_free_text(ts_env, task_queue, tmp_path):
    """Offline: the shortfall is drawn from the KC's item template (no LLM item
    generation), the drawn items are correct and the same for the same student and
    round, and a free-text answer equivalent to the key is right without a model."""
    import json as json_module

    from sqlalchemy import select

    from activities.learning_db import Item, Response

    path = tmp_path / "sums.json"
    path.write_text(json_module.dumps(TEMPLATED))
    url = f"sqlite:///{tmp_path / 'sums.db'}"
    imported_database(url, path).dispose()
    settings = learning_settings(tmp_path, task_queue, url)
    config = learning_config(settings, student="ann", curriculum="sums", max_rounds=1,
                             items_per_test=3, llm_grading=True)
    assert config.llm_item_generation is False  # offline settings
    async with make_worker(ts_env.client, settings):
        handle = await start_learning(ts_env.client, settings, config)
        test = await wait_for_test(handle)
        assert [i.origin for i in test.items] == ["authored", "template", "template"]
        with db_session(url) as s:
            keys = {i.id: i.answer_key for i in s.scalars(select(Item))}
        answers = [Answer(item="ls-1", answer="The Numerator.")] + [
            Answer(item=i.id, answer=keys[i.id]) for i in test.items[1:]]
        await handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(answers=answers))
        result = LearningResult.model_validate(await handle.result())
        audit = await handle.query("audit_log", result_type=list[AuditEntry])
        ledger = await handle.query("llm_ledger")
    drawn = [e.detail for e in audit if e.kind == "items_generated"]
    assert drawn == ["like-sums: 2 drawn from templates, 0 refused"]
    with db_session(url) as s:
        rows = {r.item_id: r for r in s.scalars(select(Response))}
        items = {i.id: i for i in s.scalars(select(Item).where(Item.origin == "template"))}
    assert all(r.correct for r in rows.values()) and result.items == 3
    assert rows["ls-1"].graded_by == "exact"  # equivalent, no model asked
    for item in items.values():  # the key is the sum the prompt asks for
        a, b = (int(x.split("/")[0]) for x in item.prompt[8:-1].split(" + "))
        d = int(item.prompt.split("/")[1].split()[0])
        assert parse_number(item.answer_key) == Fraction(a + b, d)
        assert item.misconceptions == {f"{Fraction(a + b, 2 * d)}": "adds-denominators"} \
            or Fraction(a + b, 2 * d).denominator == 1
    phases = [u["phase"] for u in (ledger if isinstance(ledger, list) else ledger["entries"])]
    assert phases == []  # no generation, no grading call
    from activities.artifacts import ArtifactStore
    from activities.learning_db import LearningDatabase
    from activities.learning_repo import LearningRepository
    from models.learning import TemplateItemsInput

    repo = LearningRepository(LearningDatabase(url), ArtifactStore(tmp_path / "a"))
    again = repo.store_template_items(TemplateItemsInput(
        workflow_id="other", student="ann", curriculum="sums", kc="like-sums", round=1,
        count=2))
    assert [i.id for i in again.items] == [i.id for i in test.items[1:]]  # deterministic
    other = repo.store_template_items(TemplateItemsInput(
        workflow_id="other", student="bob", curriculum="sums", kc="like-sums", round=1,
        count=2))
    assert {i.id for i in other.items}.isdisjoint(i.id for i in test.items)
    repo.db.dispose()


async def test_a_failing_llm_leaves_the_test_to_the_bank(ts_env, task_queue, tmp_path, db_url):
    from concurrent.futures import ThreadPoolExecutor

    from temporalio import activity
    from temporalio.exceptions import ApplicationError
    from temporalio.worker import Worker

    from activities.learning import LearningStore
    from workflows.learning_loop import LearningLoopWorkflow

    calls = []

    @activity.defn(name="llm_complete")
    async def llm_down(request: LlmRequest) -> LlmResponse:
        calls.append(request.phase)
        raise ApplicationError("the model is unavailable", non_retryable=True)

    settings = learning_settings(tmp_path, task_queue, db_url)
    store = LearningStore(db_url, tmp_path / "artifacts")
    config = learning_config(settings, student=student(), curriculum="fractions",
                             max_rounds=1, items_per_test=8, llm_grading=True,
                             llm_item_generation=True)
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[LearningLoopWorkflow],
                      activities=[*store.all(), llm_down, NO_SIGNERS],
                      activity_executor=ThreadPoolExecutor(4)):
        handle = await start_learning(ts_env.client, settings, config)
        test = await wait_for_test(handle)
        assert [i.id for i in test.items] == ["fm-1", "fm-2", "fm-3", "fm-4", "fm-6", "fm-5"]
        await handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(
            answers=[Answer(item="fm-4", answer="the top one")], finish=True))
        result = LearningResult.model_validate(await handle.result())
        audit = await handle.query("audit_log", result_type=list[AuditEntry])
    assert calls == ["learning_generate_items", "learning_grade_free_text"]
    details = " | ".join(e.detail for e in audit)
    assert "generation failed (the model is unavailable)" in details
    assert "fm-4: LLM grading failed" in details
    assert result.items == 1  # fm-4 graded without the model: not equivalent, wrong


async def test_an_activity_failure_ends_failed_through_fail(ts_env, task_queue, tmp_path,
                                                             db_url):
    """A curriculum the database lacks: ``learning_begin`` fails for good and the run
    ends through GatedWorkflow.fail(): phase FAILED, a transition audited with the
    reason, a non-retryable LearningLoopFailed."""
    settings = learning_settings(tmp_path, task_queue, db_url)
    config = learning_config(settings, student=student(), curriculum="no-such-set",
                             max_rounds=2)
    async with make_worker(ts_env.client, settings):
        handle = await start_learning(ts_env.client, settings, config)
        with pytest.raises(WorkflowFailureError) as err:
            await handle.result()
        progress = await handle.query(LearningLoopWorkflow.state)
        audit = await handle.query(LearningLoopWorkflow.audit_log)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "LearningLoopFailed"
    assert cause.message.startswith("learning loop failed: learning_begin failed: ")
    assert progress.phase == LearningPhase.FAILED
    assert audit[-1].kind == "transition" and audit[-1].detail.startswith(
        "ASSIGN -> FAILED (learning_begin failed: ")


async def cancelled_progress(handle) -> tuple[LearningProgress, list[AuditEntry]]:
    """Cancel the loop and check it ends cancelled on the server; returns its last
    state and audit log."""
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as err:
        await handle.result()
    assert isinstance(err.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    return (await handle.query(LearningLoopWorkflow.state),
            await handle.query(LearningLoopWorkflow.audit_log))


async def test_cancel_while_the_student_answers_ends_canceled(ts_env, task_queue, tmp_path,
                                                              db_url):
    """Cancelled at TEST (the gate waits for answers): phase CANCELED, audited, the
    test closed as canceled in the database with no responses."""
    from sqlalchemy import select

    from activities.learning_db import Response, Test

    settings = learning_settings(tmp_path, task_queue, db_url)
    name = student()
    config = learning_config(settings, student=name, curriculum="fractions", max_rounds=3)
    async with make_worker(ts_env.client, settings):
        handle = await start_learning(ts_env.client, settings, config)
        test = await wait_for_test(handle)
        progress, audit = await cancelled_progress(
            ts_env.client.get_workflow_handle(handle.id))
    assert progress.phase == LearningPhase.CANCELED and progress.open_test is None
    assert [(e.kind, e.detail) for e in audit[-2:]] == [
        ("canceled", "while at TEST"), ("transition", "TEST -> CANCELED (canceled)")]
    with db_session(db_url) as s:
        row = s.get(Test, test.test_id)
        responses = s.scalars(select(Response).where(Response.student_id == name)).all()
        assert row is not None and row.status == "canceled" and row.closed_at is not None
    assert responses == []


async def test_cancel_while_paused_ends_canceled(ts_env, task_queue, tmp_path, db_url):
    """Cancelled at PAUSED (a later run waits for a teacher to resume): phase
    CANCELED and audited; the expired test of the earlier round stays expired."""
    from activities.learning_db import Test

    settings = learning_settings(tmp_path, task_queue, db_url)
    config = learning_config(settings, student=student(), curriculum="fractions", max_rounds=3,
                             reminder_after=timedelta(hours=1), expire_after=timedelta(hours=2),
                             on_expiry="pause")
    async with make_worker(ts_env.client, settings):
        handle = ts_env.client.get_workflow_handle(
            (await start_learning(ts_env.client, settings, config)).id)
        first = await wait_for_test(handle)
        await ts_env.sleep(timedelta(hours=3))
        for _ in range(200):
            phase = (await handle.query("state", result_type=LearningProgress)).phase
            if phase == LearningPhase.PAUSED:
                break
            await asyncio.sleep(0.02)
        assert phase == LearningPhase.PAUSED
        progress, audit = await cancelled_progress(handle)
    assert progress.phase == LearningPhase.CANCELED and progress.paused
    assert [(e.kind, e.detail) for e in audit[-2:]] == [
        ("canceled", "while at PAUSED"), ("transition", "PAUSED -> CANCELED (canceled)")]
    with db_session(db_url) as s:
        assert s.get(Test, first.test_id).status == "expired"


async def test_cancel_during_an_llm_call_ends_canceled(ts_env, task_queue, tmp_path, db_url):
    """Cancelled mid-activity (the LLM writes items for a short bank): the call is
    cancelled with the run, which ends CANCELED, not on with the bank's items."""
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.worker import Worker

    from activities.learning import LearningStore

    calls: list[str] = []
    settings = learning_settings(tmp_path, task_queue, db_url)
    store = LearningStore(db_url, tmp_path / "artifacts")
    config = learning_config(settings, student=student(), curriculum="fractions",
                             max_rounds=1, items_per_test=8, llm_item_generation=True)
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[LearningLoopWorkflow],
                      activities=[*store.all(), hanging_llm_complete(calls), NO_SIGNERS],
                      activity_executor=ThreadPoolExecutor(4)):
        handle = ts_env.client.get_workflow_handle(
            (await start_learning(ts_env.client, settings, config)).id)
        for _ in range(400):
            if calls:
                break
            await asyncio.sleep(0.02)
        assert calls == ["learning_generate_items"]
        progress, audit = await cancelled_progress(handle)
    assert progress.phase == LearningPhase.CANCELED and progress.open_test is None
    assert [(e.kind, e.detail) for e in audit[-2:]] == [
        ("canceled", "while at TEST"), ("transition", "TEST -> CANCELED (canceled)")]
    assert not any(e.kind == "items_generated" for e in audit)
