"""An SDLC run started on the code before PATCH_LONG_GATE (comment polls on a timer)
is finished by a worker with today's code: its history replays, and the run keeps
the behaviour it started with to the end (a patch is decided once per run), while a
run started on today's code takes the patched path (the long-running comment watch).
Both histories replay on today's code."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from activities.signers import GateSignerActivities
    from models.common import Verdict
    from models.issues import CommentCommand, CommentPoll, CommentPollInput, CommentWatchInput
    from models.sdlc import FeatureRequest, IssueRef, OpenIssueInput, SdlcPhase, SdlcResult
    from temporal_plumbing.workers import replayer
    from tests.workflows.test_sdlc import FakeActivities, gate_open, request
    from workflows.sdlc import PATCH_LONG_GATE, SdlcWorkflow


@workflow.defn(name="SdlcWorkflow")
class SdlcWorkflowBeforeLongGate(SdlcWorkflow):
    """The workflow as it was before PATCH_LONG_GATE: every gate polls on a timer and
    never continues as new."""

    @workflow.run
    async def run(self, req: FeatureRequest) -> SdlcResult:
        return await super().run(req)

    def long_gate(self) -> bool:
        return False


class GitHubScript:
    """Comment polls (old way) and watches (new way); a command is handed out once."""

    def __init__(self) -> None:
        self.poll_commands: list[CommentCommand] = []
        self.watch_commands: list[CommentCommand] = []
        self.polls = 0
        self.watches = 0

    def activities(self) -> list:
        @activity.defn(name="open_issue")
        async def open_issue(inp: OpenIssueInput) -> IssueRef:
            return IssueRef(number=7, url="https://github.example/o/r/issues/7",
                            provider="github")

        @activity.defn(name="poll_issue_comments")
        async def poll_issue_comments(inp: CommentPollInput) -> CommentPoll:
            self.polls += 1
            commands = self.poll_commands[:1]
            del self.poll_commands[:1]
            return CommentPoll(commands=commands, last_seen_id=inp.after_id + len(commands))

        @activity.defn(name="watch_issue_comments")
        async def watch_issue_comments(inp: CommentWatchInput) -> CommentPoll:
            self.watches += 1
            if not self.watch_commands:
                raise ApplicationError("no news", type="NoNewComments")
            commands, self.watch_commands = self.watch_commands, []
            return CommentPoll(commands=commands, last_seen_id=inp.poll.after_id + 1)

        @activity.defn(name="post_issue_comment")
        async def post_issue_comment(inp) -> int:  # noqa: ANN001 - a CommentInput
            return 1

        @activity.defn(name="open_pull_request")
        async def open_pull_request(inp) -> dict:  # noqa: ANN001 - a PullRequestInput
            return {"number": 8, "url": "https://github.example/o/r/pull/8"}

        return [open_issue, poll_issue_comments, watch_issue_comments, post_issue_comment,
                open_pull_request]


async def test_a_run_started_on_old_code_finishes_on_new_code(ts_env: WorkflowEnvironment):
    task_queue = f"tq-{uuid.uuid4()}"
    github = GitHubScript()
    others = [a for a in FakeActivities().all()
              if activity._Definition.must_from_callable(a).name != "open_issue"]
    acts = [*github.activities(), *others, GateSignerActivities(None).load_gate_signers]
    req = request(comment_poll_interval=timedelta(seconds=30))

    # the old code: the run reaches GATE_1 and polls on its timer
    # (no workflow cache: the next task goes to the shared queue, not to this worker's)
    async with Worker(ts_env.client, task_queue=task_queue,
                      workflows=[SdlcWorkflowBeforeLongGate], activities=acts,
                      max_cached_workflows=0):
        handle = await ts_env.client.start_workflow(
            SdlcWorkflowBeforeLongGate.run, req, id=f"sdlc-{uuid.uuid4()}",
            task_queue=task_queue)
        await gate_open(handle)
        await ts_env.sleep(timedelta(seconds=70))
        assert github.polls >= 1 and github.watches == 0

    # the upgrade: today's worker replays the history and finishes the run; the run
    # keeps the behaviour it started with (a patch is decided once per run)
    github.poll_commands = [
        CommentCommand(comment_id=1, author="alice", verdict=Verdict.REVISE, text="add limits"),
        CommentCommand(comment_id=2, author="alice", verdict=Verdict.APPROVE)]
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=acts):
        result = SdlcResult.model_validate(await handle.result())
        history = await handle.fetch_history()
        # a run started on today's code takes the patched path
        github.watch_commands = [CommentCommand(comment_id=3, author="bob",
                                                verdict=Verdict.APPROVE)]
        new = await ts_env.client.start_workflow(SdlcWorkflow.run, req,
                                                 id=f"sdlc-{uuid.uuid4()}",
                                                 task_queue=task_queue)
        assert SdlcResult.model_validate(await new.result()).phase == SdlcPhase.DONE
        new_history = await new.fetch_history()

    assert result.phase == SdlcPhase.DONE and result.rounds == 2
    assert [d.detail.split(" (via")[0] for d in result.audit if d.kind == "decision"] == [
        "GATE_1: revise", "GATE_1: approve"]
    assert scheduled(history).count("watch_issue_comments") == 0
    assert not markers(history, PATCH_LONG_GATE)
    assert "watch_issue_comments" in scheduled(new_history)
    assert "poll_issue_comments" not in scheduled(new_history)
    assert markers(new_history, PATCH_LONG_GATE)
    # both histories replay on today's code
    replay = replayer([SdlcWorkflow])
    for h in (history, new_history):
        assert (await replay.replay_workflow(h)).replay_failure is None


def scheduled(history) -> list[str]:  # noqa: ANN001 - a WorkflowHistory
    """Activity types scheduled, in order."""
    return [e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]


def markers(history, patch_id: str) -> list:  # noqa: ANN001 - a WorkflowHistory
    """The marker events that record ``patch_id``."""
    return [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and patch_id.encode() in e.SerializeToString()]
