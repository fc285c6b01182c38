"""Signed gate decisions on the time-skipping server: with GATE_SIGNERS on the worker,
unsigned, forged, wrong-key, replayed and altered decisions are refused and audited
(by update and by signal); properly signed ones pass."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.worker import Worker

from activities.signers import GateSignerActivities
from cli.keys import ReviewerKey, sign_bytes, signed_decision
from models.common import AuditEntry, GateDecision, GateInfo, Verdict
from models.sdlc import GATE_1, SdlcPhase, SdlcResult
from models.signatures import DecisionSignature, GateSigners, decision_message, public_key_line
from models.workstream import WorkstreamResult
from settings import Settings
from tests.conftest import NO_SIGNERS
from tests.workflows.test_sdlc import FakeActivities, gate_open, request
from tests.workflows.test_workstream import make_input, shell
from worker import make_worker
from workflows.gates import GATE_SIGNAL, GATE_UPDATE, SIGNERS_QUERY
from workflows.sdlc import SdlcWorkflow


def make_key(tmp_path: Path, name: str) -> ReviewerKey:
    """An ed25519 key file ``name`` (OpenSSH format) as the CLI would find it."""
    private = Ed25519PrivateKey.generate()
    path = tmp_path / name
    path.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    path.chmod(0o600)
    return ReviewerKey(public_key_line(private.public_key().public_bytes_raw()),
                       f"--key {path}", private_path=path)


@pytest.fixture
def keys(tmp_path) -> dict[str, ReviewerKey]:
    return {name: make_key(tmp_path, name) for name in ("alice", "bob", "mallory")}


@pytest.fixture
async def signed_worker(ts_env, task_queue, tmp_path, keys):
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"alice {keys['alice'].public} alice@laptop\n"
                       f"bob {keys['bob'].public}\n")  # mallory is not listed
    loader = GateSignerActivities(allowed).load_gate_signers
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*FakeActivities().all(), loader]):
        yield


async def start(ts_env, task_queue, **overrides) -> WorkflowHandle:
    return await ts_env.client.start_workflow(
        SdlcWorkflow.run, request(reviewers=["key:alice"], **overrides),
        id=f"sdlc-{uuid.uuid4()}", task_queue=task_queue)


async def sign(handle: WorkflowHandle, key: ReviewerKey, verdict: Verdict = Verdict.APPROVE,
               comment: str = "ok", actor: str | None = None,
               gate: GateInfo | None = None) -> GateDecision:
    """A decision for the gate open now on ``handle``, signed by ``key``: as the CLI
    signs it (``signed_decision``) when ``actor`` is None, else claiming ``actor``
    whatever the allowed signers say (an attacker's decision)."""
    gate = gate or await gate_open(handle)
    run_id = (await handle.describe()).run_id
    if actor is None:
        signers = await handle.query(SIGNERS_QUERY, result_type=GateSigners)
        return signed_decision(workflow_id=handle.id, run_id=run_id, gate=gate,
                               verdict=verdict, comment=comment, content=None, keys=[key],
                               signers=signers, actor=None)
    now = datetime.now(UTC).replace(microsecond=0)
    message = decision_message(workflow_id=handle.id, run_id=run_id, gate=gate.gate,
                               opening=gate.opening, verdict=verdict.value, actor=actor,
                               comment=comment, content=None, signed_at=now)
    return GateDecision(gate=gate.gate, verdict=verdict, actor=actor, comment=comment,
                        signature=DecisionSignature(
                            workflow_id=handle.id, run_id=run_id, opening=gate.opening,
                            signed_at=now, sshsig=sign_bytes(key, message)))


async def refused_by_update(handle: WorkflowHandle, decision: GateDecision, why: str) -> None:
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await handle.execute_update(GATE_UPDATE, decision)
    assert why in str(err.value.cause), str(err.value.cause)


async def refusals(handle: WorkflowHandle) -> list[AuditEntry]:
    entries = await handle.query("audit_log", result_type=list[AuditEntry])
    return [e for e in entries if e.kind == "refused"]


async def test_update_refuses_and_audits_every_attack_then_takes_a_signed_decision(
        ts_env, task_queue, signed_worker, keys):
    handle = await start(ts_env, task_queue)
    gate = await gate_open(handle)
    assert gate.signatures_required and gate.opening == 1
    other = await start(ts_env, task_queue)
    await gate_open(other)

    attacks = [
        (GateDecision(gate=GATE_1, verdict=Verdict.APPROVE, actor="alice"),
         "requires a signed decision"),
        (GateDecision(gate=GATE_1, verdict=Verdict.APPROVE, actor="key:alice"),
         "requires a signed decision"),
        (GateDecision(gate=GATE_1, verdict=Verdict.APPROVE, actor="github:alice"),
         "decides only by a comment on the run's GitHub issue"),
        (await sign(handle, keys["mallory"], actor="key:alice"),
         "is not allowed to sign as key:alice"),
        (await sign(handle, keys["bob"], actor="key:bob"),
         "'key:bob' may not decide gate 'GATE_1'"),
        ((await sign(handle, keys["alice"])).model_copy(update={"comment": "changed"}),
         "does not match"),
        ((await sign(handle, keys["alice"])).model_copy(update={"verdict": Verdict.REJECT}),
         "does not match"),
        (await sign(other, keys["alice"]), "replayed: the decision was signed for"),
    ]
    for decision, why in attacks:
        await refused_by_update(handle, decision, why)
    audited = await refusals(handle)
    assert len(audited) == len(attacks)
    assert all("via update refused" in e.detail for e in audited)
    assert [e.actor for e in audited][:3] == ["alice", "key:alice", "github:alice"]

    # round 1: alice revises (signed); the same decision replayed on round 2 is refused
    revise = await sign(handle, keys["alice"], Verdict.REVISE, "add limits")
    await handle.execute_update(GATE_UPDATE, revise)
    for _ in range(200):
        round_2 = await gate_open(handle)
        if round_2.opening == 2:
            break
        await asyncio.sleep(0.05)
    assert round_2.opening == 2
    await refused_by_update(handle, revise, "replayed: the decision was signed for opening 1")
    await handle.execute_update(GATE_UPDATE, await sign(handle, keys["alice"], gate=round_2))
    result = SdlcResult.model_validate(await handle.result())
    assert result.phase == SdlcPhase.DONE and result.rounds == 2
    decisions = [e for e in result.audit if e.kind == "decision"]
    assert [e.actor for e in decisions] == ["key:alice", "key:alice"]
    assert len([e for e in result.audit if e.kind == "refused"]) == len(attacks) + 1
    await other.cancel()  # and wait, so no task is left pending to hold the test server's clock
    with pytest.raises(WorkflowFailureError):
        await other.result()


async def test_signal_refuses_and_audits_then_takes_a_signed_decision(
        ts_env, task_queue, signed_worker, keys):
    handle = await start(ts_env, task_queue)
    await gate_open(handle)
    forged = await sign(handle, keys["mallory"], actor="key:alice")
    unsigned = GateDecision(gate=GATE_1, verdict=Verdict.APPROVE, actor="alice")
    altered = (await sign(handle, keys["alice"])).model_copy(update={"content": "my spec"})
    for decision in (forged, unsigned, altered):
        await handle.signal(GATE_SIGNAL, decision)
    await handle.signal(GATE_SIGNAL, await sign(handle, keys["alice"]))
    result = SdlcResult.model_validate(await handle.result())
    assert result.phase == SdlcPhase.DONE
    refused = [e.detail for e in result.audit if e.kind == "refused"]
    assert len(refused) == 3 and all("via signal refused" in d for d in refused)
    assert "not allowed to sign" in refused[0] and "requires a signed" in refused[1]
    assert "does not match" in refused[2]
    assert [e.actor for e in result.audit if e.kind == "decision"] == ["key:alice"]


async def test_without_signers_gates_say_anyone_decides_and_key_names_are_refused(
        ts_env, task_queue, tmp_path):
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*FakeActivities().all(), NO_SIGNERS]):
        handle = await ts_env.client.start_workflow(
            SdlcWorkflow.run, request(), id=f"sdlc-{uuid.uuid4()}", task_queue=task_queue)
        gate = await gate_open(handle)
        assert not gate.signatures_required
        signers = await handle.query(SIGNERS_QUERY, result_type=GateSigners)
        assert signers.configured is False
        for actor in ("key:alice", "github:alice"):
            await refused_by_update(handle, GateDecision(gate=GATE_1, verdict=Verdict.APPROVE,
                                                         actor=actor), actor)
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate=GATE_1, verdict=Verdict.APPROVE, actor="anyone"))
        result = SdlcResult.model_validate(await handle.result())
    assert result.phase == SdlcPhase.DONE
    assert any(e.kind == "gate_signers" and "not authenticated" in e.detail
               for e in result.audit)


async def fill_until_continued(handle: WorkflowHandle) -> tuple[str, str]:
    """Send refused signals (an unknown name), ten at a time, until the run's history
    passes its budget and it continues as new; returns (first run, next run). Between
    batches it waits for the continue-as-new (a signal arriving meanwhile makes the
    server refuse it, to be tried again), and it stops once the run has continued, so
    the next run does not fill up and continue again too."""
    first = (await handle.describe()).run_id
    for batch in range(30):
        for n in range(10):
            await handle.signal("gate_decison", {"n": 10 * batch + n})
        for _ in range(20):
            run_id = (await handle.describe()).run_id
            if run_id != first:
                return first, run_id
            await asyncio.sleep(0.05)
    raise AssertionError("the run never continued as new")


async def test_a_decision_signed_before_a_continue_as_new_is_taken_once(
        ts_env, task_queue, signed_worker, keys):
    """alice signs a revise at GATE_1 as the CLI does; the run then continues as new
    (refused signals fill its history past its budget) before the decision arrives:
    it is taken once, since the gate opening is the same; sent again at the next
    opening it is a replay, and so it is on a new run of the same workflow ID (another
    chain), and so is a decision signed for another gate."""
    handle = await start(ts_env, task_queue, history_budget=100)
    gate = await gate_open(handle)
    assert gate.signing_run_id == (await handle.describe()).run_id and gate.opening == 1
    signers = await handle.query(SIGNERS_QUERY, result_type=GateSigners)

    def cli_signed(at: GateInfo, verdict: Verdict, comment: str) -> GateDecision:
        return signed_decision(workflow_id=handle.id, run_id=at.signing_run_id, gate=at,
                               verdict=verdict, comment=comment, content=None,
                               keys=[keys["alice"]], signers=signers, actor=None)

    revise = cli_signed(gate, Verdict.REVISE, "add limits")
    other_gate = cli_signed(gate.model_copy(update={"gate": "GATE_2"}), Verdict.REVISE,
                            "add limits").model_copy(update={"gate": GATE_1})
    first_run, second_run = await fill_until_continued(handle)
    carried = await gate_open(handle)
    assert (carried.opening, carried.signing_run_id) == (1, first_run)

    await refused_by_update(handle, other_gate, "does not match")
    await handle.execute_update(GATE_UPDATE, revise)  # taken in the next run
    for _ in range(200):
        round_2 = await gate_open(handle)
        if round_2.opening == 2:
            break
        await asyncio.sleep(0.05)
    assert round_2.signing_run_id == second_run  # opened in this run
    await refused_by_update(handle, revise, f"replayed: the decision was signed for "
                            f"{handle.id} run {first_run}")
    await handle.execute_update(GATE_UPDATE, cli_signed(round_2, Verdict.APPROVE, "ok"))
    result = SdlcResult.model_validate(await handle.result())
    assert result.phase == SdlcPhase.DONE and result.rounds == 2
    assert "continued_as_new" in [e.kind for e in result.audit]
    assert [(e.actor, e.detail) for e in result.audit if e.kind == "decision"] == [
        ("key:alice", "GATE_1: revise (via update)"),
        ("key:alice", "GATE_1: approve (via update)")]

    # the same workflow ID started again is another chain: its GATE_1 opening 1 is
    # not the one alice signed for
    again = await ts_env.client.start_workflow(
        SdlcWorkflow.run, request(reviewers=["key:alice"]), id=handle.id,
        task_queue=task_queue)
    await gate_open(again)
    await refused_by_update(again, revise, f"signed for {handle.id} run {first_run}")
    await again.terminate()


async def test_a_workstream_review_signed_before_a_continue_as_new_is_taken_once(
        ts_env, task_queue, tmp_path, keys):
    """The same for a workstream review gate, which the run carries over continue-as-new
    with its opening number and the run it opened in: alice's revise, signed in the
    first run, is taken once in the next; sent again at the step's next review it is a
    replay."""
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"alice {keys['alice'].public}\n")
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                        workstream_trust_spec_tools=True, gate_signers=allowed)
    inp = make_input(tmp_path, [shell("draft", "echo draft > draft.txt", gate=True)])
    inp = inp.model_copy(update={"history_budget": 100})
    async with make_worker(ts_env.client, settings):
        handle = await ts_env.client.start_workflow(
            "WorkstreamWorkflow", inp, id=f"workstream-{inp.spec.work_item}",
            task_queue=task_queue)
        gate = await gate_open(handle, "review-draft")
        signers = await handle.query(SIGNERS_QUERY, result_type=GateSigners)

        def cli_signed(at: GateInfo, verdict: Verdict, comment: str) -> GateDecision:
            return signed_decision(workflow_id=handle.id, run_id=at.signing_run_id, gate=at,
                                   verdict=verdict, comment=comment, content=None,
                                   keys=[keys["alice"]], signers=signers, actor=None)

        revise = cli_signed(gate, Verdict.REVISE, "say hello")
        first_run, _ = await fill_until_continued(handle)
        carried = await gate_open(handle, "review-draft")
        assert (carried.opening, carried.signing_run_id) == (gate.opening, first_run)
        await handle.execute_update(GATE_UPDATE, revise)
        for _ in range(200):
            again = await gate_open(handle, "review-draft")
            if again.opening > gate.opening:
                break
            await asyncio.sleep(0.05)
        await refused_by_update(handle, revise, "replayed")
        await handle.execute_update(GATE_UPDATE, cli_signed(again, Verdict.APPROVE, "ok"))
        result = WorkstreamResult.model_validate(await handle.result())
    assert result.state == "succeeded"
    assert [(e.actor, e.detail) for e in result.audit if e.kind == "decision"] == [
        ("key:alice", "review-draft: revise (via update)"),
        ("key:alice", "review-draft: approve (via update)")]
