"""SdlcWorkflow on the time-skipping server, with its activities replaced by name."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models.common import ArtifactRef, AuditEntry, GateDecision, GateInfo, Verdict
from models.git import BranchRef, PrepareBranchInput, WorktreeInput
from models.sdlc import (
    GATE_1,
    AgentTask,
    FeatureRequest,
    IssueRef,
    OpenIssueInput,
    PhaseLabelInput,
    SdlcPhase,
    SdlcResult,
    SdlcState,
)
from tests.conftest import NO_SIGNERS
from workflows.gates import GATE_SIGNAL, GATE_UPDATE
from workflows.sdlc import SdlcWorkflow


class FakeActivities:
    """Stand-ins for the outside world, registered under the real activity names."""

    def __init__(self) -> None:
        self.tasks: list[AgentTask] = []
        self.labels: list[str] = []
        self.removed: list[str] = []

    def all(self) -> list:
        @activity.defn(name="open_issue")
        async def open_issue(inp: OpenIssueInput) -> IssueRef:
            return IssueRef(number=42)

        @activity.defn(name="sync_phase_label")
        async def sync_phase_label(inp: PhaseLabelInput) -> list[str]:
            self.labels.append(inp.phase.value)
            return [inp.phase.value]

        @activity.defn(name="prepare_branch")
        async def prepare_branch(inp: PrepareBranchInput) -> BranchRef:
            return BranchRef(name=f"001-{inp.slug}", number=1, base=inp.base_branch,
                             base_commit="0" * 40)

        @activity.defn(name="add_worktree")
        async def add_worktree(inp: WorktreeInput) -> str:
            return f"/worktrees/{inp.branch}"

        @activity.defn(name="remove_worktree")
        async def remove_worktree(inp: WorktreeInput) -> None:
            self.removed.append(inp.branch)

        @activity.defn(name="run_agent")
        async def run_agent(task: AgentTask) -> ArtifactRef:
            self.tasks.append(task)
            return ArtifactRef(path=f"{task.worktree}/{task.spec_relpath}", sha256="a" * 64,
                               bytes=100, commit=f"{task.round:040d}")

        return [open_issue, sync_phase_label, prepare_branch, add_worktree, remove_worktree,
                run_agent]


def request(**overrides) -> FeatureRequest:
    fields = {"title": "Add CSV export", "description": "Export results as CSV.",
              "repo_path": "/repo", "max_rounds": 3}
    return FeatureRequest(**{**fields, **overrides})


async def start(env: WorkflowEnvironment, tq: str, req: FeatureRequest) -> WorkflowHandle:
    return await env.client.start_workflow(SdlcWorkflow.run, req, id=f"sdlc-{uuid.uuid4()}",
                                           task_queue=tq)


async def gate_open(handle: WorkflowHandle, gate: str = GATE_1, polls: int = 200) -> GateInfo:
    """Poll until ``gate`` is open, at most ``polls`` times 0.05 s apart (queries do not
    skip time)."""
    for _ in range(polls):
        gates = await handle.query("pending_gates", result_type=list[GateInfo])
        if any(g.gate == gate for g in gates):
            return next(g for g in gates if g.gate == gate)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{gate} never opened")


async def decide(handle: WorkflowHandle, verdict: Verdict, comment: str = "", actor: str = "ann",
                 gate: str = GATE_1) -> None:
    await handle.execute_update(GATE_UPDATE, GateDecision(gate=gate, verdict=verdict,
                                                          actor=actor, comment=comment))


async def audit(handle: WorkflowHandle) -> list[AuditEntry]:
    return await handle.query("audit_log", result_type=list[AuditEntry])


@pytest.fixture
def fakes() -> FakeActivities:
    return FakeActivities()


@pytest.fixture
async def worker(ts_env: WorkflowEnvironment, task_queue: str, fakes: FakeActivities):
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*fakes.all(), NO_SIGNERS]):
        yield


async def test_happy_path_ends_done_with_labels_projected(ts_env, task_queue, fakes, worker):
    handle = await start(ts_env, task_queue, request())
    await gate_open(handle)
    state = await handle.query("state", result_type=SdlcState)
    assert state.phase == SdlcPhase.GATE_1
    assert state.branch.name == "001-add-csv-export" and state.issue.number == 42
    await decide(handle, Verdict.APPROVE)
    result = SdlcResult.model_validate(await handle.result())
    assert result.phase == SdlcPhase.DONE and result.rounds == 1
    assert result.spec.commit == f"{1:040d}"
    assert fakes.labels == ["PHASE_1", "PHASE_2", "GATE_1", "DONE"]
    transitions = [e.detail for e in result.audit if e.kind == "transition"]
    assert transitions == ["IDLE -> PHASE_1", "PHASE_1 -> PHASE_2 (round 1)",
                           "PHASE_2 -> GATE_1", "GATE_1 -> DONE"]
    decision = next(e for e in result.audit if e.kind == "decision")
    assert decision.actor == "ann" and "approve" in decision.detail


async def test_reject_then_revise_then_approve_passes_feedback(ts_env, task_queue, fakes, worker):
    handle = await start(ts_env, task_queue, request())
    await gate_open(handle)
    await decide(handle, Verdict.REJECT, "cover empty input")
    await gate_open(handle)
    await handle.signal(GATE_SIGNAL, GateDecision(gate=GATE_1, verdict=Verdict.REVISE,
                                                  actor="bob", comment="name the limits"))
    await gate_open(handle)
    await decide(handle, Verdict.APPROVE)
    result = SdlcResult.model_validate(await handle.result())
    assert result.phase == SdlcPhase.DONE and result.rounds == 3
    # each round carries only the new feedback and the previous round's commit
    assert [(t.new_feedback, t.feedback_from, t.feedback) for t in fakes.tasks] == [
        ("", "", []), ("cover empty input", f"{1:040d}", []),
        ("name the limits", f"{2:040d}", [])]
    assert [t.round for t in fakes.tasks] == [1, 2, 3]
    sources = [e.detail for e in result.audit if e.kind == "decision"]
    assert "via signal" in sources[1] and "via update" in sources[0]


async def test_round_limit_ends_failed_with_reason(ts_env, task_queue, fakes, worker):
    handle = await start(ts_env, task_queue, request(max_rounds=2))
    long_feedback = "still vague. " * 3000  # 39 KB, within the 64 KiB a comment may have
    for comment in ("too short", long_feedback):
        await gate_open(handle)
        await decide(handle, Verdict.REJECT, comment)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    message = str(failure.value.cause)
    assert "not approved after 2 round(s); last feedback: still vague." in message
    # the reason holds an excerpt of the feedback, not all of it
    assert len(message) < 1000 and "[39,000 characters in all]" in message, message
    state = await handle.query("state", result_type=SdlcState)
    assert state.phase == SdlcPhase.FAILED and state.failure_reason in message
    assert fakes.labels[-1] == "FAILED"


async def test_reminders_are_recorded_while_the_gate_waits(ts_env, task_queue, fakes, worker):
    handle = await start(ts_env, task_queue, request(reminder_interval=timedelta(days=1)))
    await gate_open(handle)
    await ts_env.sleep(timedelta(days=3, hours=1))
    info = await gate_open(handle)
    assert info.reminders_sent == 3
    assert [e.kind for e in await audit(handle)].count("reminder") == 3
    await decide(handle, Verdict.APPROVE)
    assert SdlcResult.model_validate(await handle.result()).phase == SdlcPhase.DONE


async def test_gate_expiry_ends_failed(ts_env, task_queue, fakes, worker):
    handle = await start(ts_env, task_queue, request(reminder_interval=timedelta(hours=10),
                                                     gate_expiry=timedelta(days=1)))
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert "gate expired" in str(failure.value.cause)
    entries = await audit(handle)
    assert [e.kind for e in entries].count("reminder") == 2
    assert "expired" in [e.kind for e in entries]
    assert entries[-1].detail == "GATE_1 -> FAILED (gate expired)"
    assert (await handle.query("state", result_type=SdlcState)).phase == SdlcPhase.FAILED


@pytest.mark.parametrize(
    ("decision", "message"),
    [
        (GateDecision(gate="GATE_9", verdict=Verdict.APPROVE, actor="ann"), "not open"),
        (GateDecision(gate=GATE_1, verdict=Verdict.REJECT, actor="ann"), "needs a comment"),
        (GateDecision(gate=GATE_1, verdict=Verdict.APPROVE, actor="mallory"), "may not decide"),
    ],
)
async def test_update_validator_refuses_bad_decisions(ts_env, task_queue, fakes, worker,
                                                      decision, message):
    handle = await start(ts_env, task_queue, request(reviewers=["ann"]))
    await gate_open(handle)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(GATE_UPDATE, decision)
    assert message in str(refused.value.cause)
    assert (await handle.query("state", result_type=SdlcState)).phase == SdlcPhase.GATE_1
    await decide(handle, Verdict.APPROVE, actor="ann")
    assert SdlcResult.model_validate(await handle.result()).phase == SdlcPhase.DONE


async def test_malformed_update_payload_is_refused(ts_env, task_queue, fakes, worker):
    handle = await start(ts_env, task_queue, request())
    await gate_open(handle)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(GATE_UPDATE, {"gate": GATE_1, "verdict": "maybe"})
    assert ("verdict: Input should be 'approve', 'reject' or 'revise'; actor: Field required"
            in str(refused.value.cause))
    await decide(handle, Verdict.APPROVE)
    assert SdlcResult.model_validate(await handle.result()).phase == SdlcPhase.DONE


async def test_signal_from_someone_not_allowed_is_recorded_as_refused(ts_env, task_queue, fakes,
                                                                       worker):
    handle = await start(ts_env, task_queue, request(reviewers=["ann"]))
    await gate_open(handle)
    await handle.signal(GATE_SIGNAL, GateDecision(gate=GATE_1, verdict=Verdict.APPROVE,
                                                  actor="mallory"))
    for _ in range(100):
        refused = [e for e in await audit(handle) if e.kind == "refused"]
        if refused:
            break
        await asyncio.sleep(0.05)
    assert refused and refused[0].actor == "mallory" and "may not decide" in refused[0].detail
    assert (await handle.query("state", result_type=SdlcState)).phase == SdlcPhase.GATE_1
    await decide(handle, Verdict.APPROVE, actor="ann")
    assert SdlcResult.model_validate(await handle.result()).phase == SdlcPhase.DONE


async def test_cancel_removes_the_worktree_and_ends_canceled(ts_env, task_queue, fakes, worker):
    handle = await start(ts_env, task_queue, request())
    await gate_open(handle)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert fakes.removed == ["001-add-csv-export"]
    state = await handle.query("state", result_type=SdlcState)
    assert state.phase == SdlcPhase.CANCELED and state.worktree is None


async def test_cancel_during_the_agent_ends_canceled_not_failed(private_ts_env, task_queue, fakes):
    started = asyncio.Event()

    @activity.defn(name="run_agent")
    async def run_agent(task: AgentTask) -> ArtifactRef:
        started.set()
        while True:  # an agent that runs until the run is cancelled
            activity.heartbeat()
            await asyncio.sleep(0.1)

    others = [a for a in fakes.all() if activity._Definition.from_callable(a).name
              != "run_agent"]
    async with Worker(private_ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*others, run_agent, NO_SIGNERS]):
        handle = await start(private_ts_env, task_queue, request())
        await asyncio.wait_for(started.wait(), 30)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as err:
            await handle.result()
        assert "cancel" in str(err.value.cause).lower()
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        state = await handle.query("state", result_type=SdlcState)
    assert state.phase == SdlcPhase.CANCELED and state.worktree is None
    assert fakes.removed == ["001-add-csv-export"]


async def test_a_failed_run_removes_its_worktree(ts_env, task_queue, fakes, worker):
    handle = await start(ts_env, task_queue, request(max_rounds=1))
    await gate_open(handle)
    await decide(handle, Verdict.REJECT, comment="not what we need")
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED
    assert fakes.removed == ["001-add-csv-export"]
    state = await handle.query("state", result_type=SdlcState)
    assert state.phase == SdlcPhase.FAILED and state.worktree is None
