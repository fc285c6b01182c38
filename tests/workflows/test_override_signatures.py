"""Signed teacher overrides of the learning loop, on the time-skipping server with the
real worker and database: with GATE_SIGNERS on the worker, unsigned, forged, altered
and replayed overrides are refused and audited; the CLI's signed ones pass."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from cli.keys import ReviewerKey, sign_bytes, signed_override
from cli.learning import learning_config, send_override, start_learning
from models.common import AuditEntry
from models.learning import (
    OVERRIDE_GATE,
    LearningConfig,
    LearningProgress,
    PauseResume,
    SetMastery,
    SubmitAnswers,
    TeacherOverride,
)
from models.signatures import DecisionSignature, decision_message
from settings import Settings
from tests.learning_support import imported_database, learning_settings
from tests.workflows.test_gate_signatures import make_key
from tests.workflows.test_learning_loop import student, wait_for_test
from worker import make_worker
from workflows.learning_loop import SUBMIT_ANSWERS, LearningLoopWorkflow


def forged(handle_id: str, run_id: str, number: int, kind: str, override: TeacherOverride,
           key: ReviewerKey, actor: str) -> TeacherOverride:
    """``override`` claiming ``actor``, signed by ``key`` whatever the allowed signers say."""
    now = datetime.now(UTC).replace(microsecond=0)
    message = decision_message(workflow_id=handle_id, run_id=run_id, gate=OVERRIDE_GATE,
                               opening=number, verdict=kind, actor=actor,
                               comment=override.reason, content=override.signed_content(),
                               signed_at=now)
    return override.model_copy(update={"actor": actor, "signature": DecisionSignature(
        workflow_id=handle_id, run_id=run_id, opening=number, signed_at=now,
        sshsig=sign_bytes(key, message))})


def signed_loop(tmp_path: Path, task_queue: str, keys: dict[str, ReviewerKey]
                ) -> tuple[Settings, LearningConfig]:
    """Settings of a worker on a new learning database whose GATE_SIGNERS allows ``keys``
    (name -> key), and the config of a five-round loop on fractions with alice as its
    teacher."""
    url = f"sqlite:///{tmp_path / 'learning.db'}"
    imported_database(url).dispose()
    allowed = tmp_path / "allowed_signers"
    allowed.write_text("".join(f"{name} {key.public}\n" for name, key in keys.items()))
    settings = learning_settings(tmp_path, task_queue, url).model_copy(
        update={"gate_signers": allowed})
    return settings, learning_config(settings, student=student(), curriculum="fractions",
                                     max_rounds=5, teachers=["alice"])


async def refused(handle: WorkflowHandle, kind: str, override: TeacherOverride,
                  pattern: str) -> None:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(kind, override)
    assert re.search(pattern, str(err.value.cause)), str(err.value.cause)


async def test_overrides_must_be_signed_by_an_allowed_teacher(ts_env, task_queue, tmp_path):
    keys = {name: make_key(tmp_path, name) for name in ("alice", "mallory")}
    settings, config = signed_loop(tmp_path, task_queue, keys)
    alice_key = str(keys["alice"].private_path)
    async with make_worker(ts_env.client, settings):
        started = await start_learning(ts_env.client, settings, config)
        handle = ts_env.client.get_workflow_handle(started.id)
        await wait_for_test(handle)
        run_id = (await handle.describe()).run_id
        mastery = SetMastery(kc="fraction-meaning", mastery=0.5, reason="checked in class")
        # unsigned, under a plain name or claiming alice's key
        await refused(handle, "set_mastery", mastery.model_copy(update={"actor": "alice"}),
                      "teacher overrides must be signed")
        await refused(handle, "pause", PauseResume(actor="key:alice"),
                      "teacher overrides must be signed")
        # mallory's key (allowed, but as mallory) claiming alice; mallory as herself
        # is no teacher (the validator refuses her before any audit)
        await refused(handle, "set_mastery", forged(
            handle.id, run_id, 1, "set_mastery", mastery, keys["mallory"], "key:alice"),
            "not allowed to sign as key:alice")
        # alice's signature on 0.5, sent with 0.99; and on set_mastery, sent as skip
        signed = forged(handle.id, run_id, 1, "set_mastery", mastery, keys["alice"],
                        "key:alice")
        await refused(handle, "set_mastery", signed.model_copy(update={"mastery": 0.99}),
                      "bad signature")
        # the CLI signs with alice's key: accepted, as key:alice
        ack = await send_override(handle, "set_mastery", LearningLoopWorkflow.set_mastery,
                                  mastery, None, alice_key)
        assert "P(L)" in ack.detail and "0.500" in ack.detail
        # the same signed override again is a replay (the loop's override number moved)
        await refused(handle, "set_mastery", signed, "replayed")
        await send_override(handle, "pause", LearningLoopWorkflow.pause,
                            PauseResume(reason="holiday"), None, alice_key)
        await send_override(handle, "resume", LearningLoopWorkflow.resume,
                            PauseResume(), "key:alice", alice_key)
        progress = await handle.query(LearningLoopWorkflow.state)
        audit = await handle.query("audit_log", result_type=list[AuditEntry])
        await handle.terminate()

    assert isinstance(progress, LearningProgress) and progress.override_number == 3
    refusals = [(e.actor, e.detail) for e in audit if e.kind == "refused"]
    assert [a for a, _ in refusals] == ["alice", "key:alice", "key:alice", "key:alice",
                                        "key:alice"]
    assert all(d.startswith(("set_mastery refused", "pause refused")) for _, d in refusals)
    accepted = [(e.kind, e.actor) for e in audit
                if e.kind in ("override", "paused", "resumed")]
    assert accepted == [("override", "key:alice"), ("paused", "key:alice"),
                        ("resumed", "key:alice")]


async def test_without_signers_overrides_take_a_plain_name(ts_env, task_queue, tmp_path):
    """No GATE_SIGNERS: the CLI sends the plain name, as before, and refuses a key:
    principal it cannot prove."""
    url = f"sqlite:///{tmp_path / 'learning.db'}"
    imported_database(url).dispose()
    settings = learning_settings(tmp_path, task_queue, url)
    config = learning_config(settings, student=student(), curriculum="fractions",
                             max_rounds=5, teachers=["ms-lee"])
    async with make_worker(ts_env.client, settings):
        started = await start_learning(ts_env.client, settings, config)
        handle = ts_env.client.get_workflow_handle(started.id)
        await wait_for_test(handle)
        # a reason over 64 KiB is refused with its size before it reaches the history
        await refused(handle, "pause", PauseResume(actor="ms-lee", reason="x" * 70_000),
                      r"the reason is 70,000 bytes, over the limit of 65,536 bytes \(64 KiB\)")
        await send_override(handle, "pause", LearningLoopWorkflow.pause, PauseResume(),
                            "ms-lee", None)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update("resume", PauseResume(actor="key:ms-lee"))
        await send_override(handle, "resume", LearningLoopWorkflow.resume, PauseResume(),
                            "ms-lee", None)
        audit = await handle.query("audit_log", result_type=list[AuditEntry])
        history = await handle.fetch_history()
        await handle.terminate()
    assert [(e.kind, e.actor) for e in audit if e.kind in ("paused", "resumed", "refused")] \
        == [("paused", "ms-lee"), ("refused", "key:ms-lee"), ("resumed", "ms-lee")]
    # payloads are base64 in the history's JSON: "xxx" is "eHh4"
    assert "eHh4" * 100 not in history.to_json()


def test_the_override_parameters_are_what_is_signed(tmp_path: Path):
    a = SetMastery(kc="k", mastery=0.5, actor="key:x", reason="r")
    assert a.signed_content() == '{"kc":"k","mastery":0.5}'
    assert PauseResume(actor="x").signed_content() is None


async def test_an_override_signed_before_the_round_ends_is_taken_once_in_the_next_run(
        ts_env, task_queue, tmp_path):
    """alice signs a set_mastery as the CLI does while round 1's test is open; the round ends
    and the loop continues as new before the override arrives: it is taken once (the
    loop's override number and the run it names are carried), and refused as a replay
    when sent again."""
    alice = make_key(tmp_path, "alice")
    settings, config = signed_loop(tmp_path, task_queue, {"alice": alice})
    async with make_worker(ts_env.client, settings):
        started = await start_learning(ts_env.client, settings, config)
        handle = ts_env.client.get_workflow_handle(started.id)
        test = await wait_for_test(handle)
        first_run = (await handle.describe()).run_id
        progress = await handle.query(LearningLoopWorkflow.state)
        assert progress.override_run_id == first_run
        signers = await handle.query(LearningLoopWorkflow.gate_signers)
        mastery = SetMastery(kc=test.kc, mastery=0.5, reason="checked in class")
        principal, signature = signed_override(
            workflow_id=handle.id, run_id=progress.override_run_id,
            number=progress.override_number + 1, kind="set_mastery", reason=mastery.reason,
            content=mastery.signed_content(), keys=[alice], signers=signers,
            teachers=progress.teachers, actor=None)
        mastery = mastery.model_copy(update={"actor": principal, "signature": signature})
        await handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(finish=True))
        await wait_for_test(handle, previous=test.test_id)
        assert (await handle.describe()).run_id != first_run  # continued as new
        ack = await handle.execute_update(LearningLoopWorkflow.set_mastery, mastery)
        assert "0.500" in ack.detail
        await refused(handle, "set_mastery", mastery, "replayed")
        progress = await handle.query(LearningLoopWorkflow.state)
        audit = await handle.query("audit_log", result_type=list[AuditEntry])
        await handle.terminate()
    assert progress.override_number == 1
    assert progress.override_run_id == (await handle.describe()).run_id  # took it
    assert [(e.kind, e.actor) for e in audit if e.kind in ("override", "refused")] == [
        ("override", "key:alice"), ("refused", "key:alice")]
