"""SdlcWorkflow's GitHub path on the time-skipping server: the comment watch (one
long-running activity per gate command, retried every 30 s while nothing is new),
commands through the gate's decision handler, replies, reminder comments, a failed
poll, the pull request before DONE. The outside world (issue tracker, git, agent) is
replaced by scripted activities under the real names."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from models.common import Verdict
from models.issues import (
    CommentCommand,
    CommentInput,
    CommentPoll,
    CommentPollInput,
    CommentWatchInput,
    PullRequestInput,
    PullRequestRef,
)
from models.sdlc import (
    FeatureRequest,
    IssueRef,
    OpenIssueInput,
    SdlcPhase,
    SdlcResult,
    SdlcState,
)
from tests.conftest import NO_SIGNERS
from tests.workflows.test_sdlc import FakeActivities, decide, gate_open, request
from workflows import policies
from workflows.sdlc import SdlcWorkflow

URL = "https://github.example/octo/shop/issues/7"
SINCE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class ScriptedGitHub:
    """Poll results in order; records polls, comments and pull requests."""

    def __init__(self, polls: list[CommentPoll | Exception]) -> None:
        self.script = polls
        self.polls: list[tuple[CommentPollInput, object]] = []
        self.attempts: list[int] = []
        self.comments: list[CommentInput] = []
        self.pulls: list[PullRequestInput] = []
        self.opened: list[OpenIssueInput] = []

    def all(self) -> list:
        @activity.defn(name="open_issue")
        async def open_issue(inp: OpenIssueInput) -> IssueRef:
            self.opened.append(inp)
            return IssueRef(number=7, url=URL, provider="github")

        @activity.defn(name="poll_issue_comments")
        async def poll_issue_comments(inp: CommentPollInput) -> CommentPoll:
            self.polls.append((inp, activity.info().scheduled_time))
            step = self.script.pop(0) if self.script else CommentPoll(last_seen_id=inp.after_id)
            if isinstance(step, Exception):
                raise step
            return step

        @activity.defn(name="watch_issue_comments")
        async def watch_issue_comments(inp: CommentWatchInput) -> CommentPoll:
            # one scripted poll per attempt; a poll without a command ends the attempt
            # as the real activity does after its window, and Temporal retries it
            self.polls.append((inp.poll, activity.info().current_attempt_scheduled_time))
            self.attempts.append(activity.info().attempt)
            step = (self.script.pop(0) if self.script
                    else CommentPoll(last_seen_id=inp.poll.after_id))
            if isinstance(step, Exception):
                raise step
            if not step.commands:
                raise ApplicationError("no news", type="NoNewComments")
            return step

        @activity.defn(name="post_issue_comment")
        async def post_issue_comment(inp: CommentInput) -> int:
            self.comments.append(inp)
            return len(self.comments)

        @activity.defn(name="open_pull_request")
        async def open_pull_request(inp: PullRequestInput) -> PullRequestRef:
            self.pulls.append(inp)
            return PullRequestRef(number=8, url="https://github.example/octo/shop/pull/8")

        return [open_issue, poll_issue_comments, watch_issue_comments, post_issue_comment,
                open_pull_request]


def command(cid: int, author: str, verdict: Verdict, text: str = "") -> CommentCommand:
    return CommentCommand(comment_id=cid, author=author, verdict=verdict, text=text)


async def test_comment_commands_drive_the_gate(ts_env):
    github = ScriptedGitHub([
        ApplicationError("GitHub is down", non_retryable=True),
        CommentPoll(last_seen_id=0),  # nothing new: Temporal retries the watch in 30 s
        CommentPoll(commands=[command(11, "alice", Verdict.REJECT)], last_seen_id=11,
                    since=SINCE),
        CommentPoll(commands=[command(12, "alice", Verdict.REVISE, "add limits")],
                    last_seen_id=12),
        CommentPoll(commands=[command(13, "carol", Verdict.APPROVE),
                              command(14, "bob", Verdict.APPROVE)], last_seen_id=15),
    ])
    fakes = FakeActivities()
    others = [a for a in fakes.all()
              if activity._Definition.must_from_callable(a).name != "open_issue"]
    task_queue = f"tq-{uuid.uuid4()}"
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*github.all(), *others, NO_SIGNERS]):
        handle = await ts_env.client.start_workflow(
            SdlcWorkflow.run, request(reviewers=["alice", "bob"],
                                      reminder_interval=timedelta(seconds=45)),
            id=f"sdlc-{uuid.uuid4()}", task_queue=task_queue)
        result = SdlcResult.model_validate(await handle.result())
        state = await handle.query("state", result_type=SdlcState)

    assert result.phase == SdlcPhase.DONE and result.rounds == 2
    assert [t.new_feedback for t in fakes.tasks] == ["", "add limits"]
    # one long-running watch per gate command; its retries (every 30 s, the default)
    # poll while nothing is new; each starts after the last seen comment
    assert [inp.after_id for inp, _ in github.polls] == [0, 0, 0, 11, 12]
    assert github.attempts == [1, 1, 2, 1, 1]
    # GitHub's ``since`` travels with the ID: the cursor a poll returns is the next input's
    assert [inp.since for inp, _ in github.polls] == [None, None, None, SINCE, None]
    # the issue search is bounded by the run's start; the PR names the run
    assert github.opened[0].since is not None
    assert [p.workflow_id for p in github.pulls] == [handle.id]
    times = [at for _, at in github.polls]
    assert times[1] - times[0] >= policies.COMMENT_WATCH_RESTART  # after a failed watch
    # the attempt that found nothing added no event: 4 watches scheduled for 5 polls
    history = await handle.fetch_history()
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name
                 for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    assert scheduled.count("watch_issue_comments") == 4
    assert "poll_issue_comments" not in scheduled
    assert github.polls[4][0].not_before > github.polls[3][0].not_before  # round 2's gate
    assert state.last_comment_id == 15
    kinds = [e.kind for e in result.audit]
    assert "comment_poll_failed" in kinds
    decisions = [(e.actor, e.detail) for e in result.audit if e.kind == "decision"]
    # GitHub commenters are github: principals; a bare reviewer name matches them
    assert decisions == [("github:alice", "GATE_1: revise (via github comment 12)"),
                         ("github:bob", "GATE_1: approve (via github comment 14)")]
    refused = [e.actor for e in result.audit if e.kind == "refused"]
    assert refused == ["github:alice", "github:carol"]
    bodies = [c.body for c in github.comments]
    assert any(b.startswith("@alice") and "needs a comment" in b for b in bodies)
    assert any(b.startswith("@carol") and "may not decide" in b for b in bodies)
    assert any(b.startswith("Reminder 1") for b in bodies)
    assert len({c.key for c in github.comments}) == len(github.comments)
    assert [(p.branch, p.base) for p in github.pulls] == [("001-add-csv-export", "main")]
    assert result.pr_url == "https://github.example/octo/shop/pull/8"
    assert fakes.labels[-1] == "DONE"
    details = [e.detail for e in result.audit]
    assert kinds.index("pull_request") < details.index("GATE_1 -> DONE")


async def test_without_github_no_poll_runs(ts_env, task_queue):
    """A local issue: the gate waits by signal/update only, as before."""
    fakes = FakeActivities()
    github = ScriptedGitHub([])
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*fakes.all(), *github.all()[1:], NO_SIGNERS]):
        handle = await ts_env.client.start_workflow(
            SdlcWorkflow.run, request(gate_expiry=timedelta(minutes=5)),
            id=f"sdlc-{uuid.uuid4()}", task_queue=task_queue)
        with pytest.raises(WorkflowFailureError):  # nobody decides: the gate expires
            await handle.result()
    assert github.polls == [] and github.comments == [] and github.pulls == []


async def test_a_reply_in_flight_is_posted_once_before_continuing_as_new(ts_env, task_queue):
    """A refused comment command's reply is still being posted when the history fills
    up at GATE_1: the run posts it before it continues as new, the next run does not
    post it again, and what the run carries over stays small although a reviewer's
    feedback was 20 KB."""
    github = ScriptedGitHub([])
    release = asyncio.Event()
    posting: list[str] = []

    @activity.defn(name="post_issue_comment")
    async def slow_post(inp: CommentInput) -> int:
        posting.append(inp.key)
        await release.wait()  # GitHub is slow: the reply is in flight meanwhile
        github.comments.append(inp)
        return len(github.comments)

    fakes = FakeActivities()
    others = [a for a in fakes.all()
              if activity._Definition.must_from_callable(a).name != "open_issue"]
    scripted = [a for a in github.all()
                if activity._Definition.must_from_callable(a).name != "post_issue_comment"]
    feedback = "spell out the columns. " * 900  # about 20 KB
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*scripted, slow_post, *others, NO_SIGNERS]):
        handle = await ts_env.client.start_workflow(
            SdlcWorkflow.run, request(reviewers=["alice", "bob"], history_budget=100,
                                      comment_poll_interval=timedelta(milliseconds=200)),
            id=f"sdlc-{uuid.uuid4()}", task_queue=task_queue)
        await gate_open(handle)
        await decide(handle, Verdict.REVISE, feedback, actor="bob")
        for _ in range(200):
            state = await handle.query("state", result_type=SdlcState)
            if state.round == 2 and state.pending_gates:
                break
            await asyncio.sleep(0.05)
        first_run = (await handle.describe()).run_id
        github.script.append(CommentPoll(commands=[command(13, "carol", Verdict.APPROVE)],
                                         last_seen_id=13))
        for _ in range(400):
            if posting:
                break
            await asyncio.sleep(0.05)
        assert posting == ["refused-13"]
        for n in range(40):  # refused signals fill the history past its budget
            await handle.signal("gate_decison", {"n": n})
        await asyncio.sleep(0.5)
        assert (await handle.describe()).run_id == first_run  # waits for the reply
        release.set()
        for _ in range(400):
            if (await handle.describe()).run_id != first_run:
                break
            await asyncio.sleep(0.05)
        await gate_open(handle)
        state = await handle.query("state", result_type=SdlcState)
        await decide(handle, Verdict.APPROVE, actor="bob")
        result = SdlcResult.model_validate(await handle.result())
        first = await ts_env.client.get_workflow_handle(handle.id,
                                                        run_id=first_run).fetch_history()

    assert result.phase == SdlcPhase.DONE and result.rounds == 2
    assert "continued_as_new" in [e.kind for e in result.audit]
    assert [c.key for c in github.comments] == ["refused-13"] and posting == ["refused-13"]
    # the first run posted it: its history holds the completed reply
    completed = [e for e in first.events
                 if e.HasField("activity_task_completed_event_attributes")]
    scheduled = {e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
                 for e in first.events
                 if e.HasField("activity_task_scheduled_event_attributes")}
    assert "post_issue_comment" in [
        scheduled[e.activity_task_completed_event_attributes.scheduled_event_id]
        for e in completed]
    # the carried state: the newest feedback as an excerpt, a count, the committed file
    assert len(state.feedback) < 600 and state.feedback.startswith("spell out")
    assert state.feedback_rounds == 1 and state.pending_replies == []
    assert state.feedback_file == f"{2:040d}:specs/001-add-csv-export/feedback.md"
    # what the first run handed the next holds no whole copy of the 20 KB feedback (its
    # audit log of 40 refused signals is most of it)
    can = first.events[-1].workflow_execution_continued_as_new_event_attributes
    assert feedback[:1000].encode() not in can.input.payloads[0].data
    assert can.input.payloads[0].ByteSize() < len(feedback)
    [carried] = await ts_env.client.data_converter.decode(can.input.payloads,
                                                          [FeatureRequest])
    revise = next(e for e in carried.carried.audit if e.kind == "decision")
    assert len(revise.comment) < 600 and "characters in all" in revise.comment


async def test_a_watch_that_returns_as_its_gate_closes_decides_nothing_later(
        ts_env, task_queue):
    """The watch of round 1 finds `/approve` just as the gate is decided another way
    (the cancel reaches the activity too late). That news belongs to no open gate: it
    must not approve round 2's spec, which no one has read yet, and the stale watch
    must not go on polling beside round 2's own."""
    release = asyncio.Event()
    watches: list[int] = []

    @activity.defn(name="watch_issue_comments")
    async def watch(inp: CommentWatchInput) -> CommentPoll:
        watches.append(inp.poll.after_id)
        if len(watches) == 1:  # round 1's watch: slow, and deaf to the cancel
            await release.wait()
            return CommentPoll(commands=[command(21, "alice", Verdict.APPROVE)],
                               last_seen_id=21)
        raise ApplicationError("no news", type="NoNewComments")

    github = ScriptedGitHub([])
    fakes = FakeActivities()
    others = [a for a in fakes.all()
              if activity._Definition.must_from_callable(a).name != "open_issue"]
    scripted = [a for a in github.all()
                if activity._Definition.must_from_callable(a).name != "watch_issue_comments"]
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*scripted, watch, *others, NO_SIGNERS]):
        handle = await ts_env.client.start_workflow(
            SdlcWorkflow.run, request(reviewers=["alice", "bob"],
                                      comment_poll_interval=timedelta(milliseconds=200)),
            id=f"sdlc-{uuid.uuid4()}", task_queue=task_queue)
        await gate_open(handle)
        await decide(handle, Verdict.REVISE, "name the columns", actor="bob")
        for _ in range(200):
            state = await handle.query("state", result_type=SdlcState)
            if state.round == 2 and state.pending_gates and len(watches) >= 2:
                break
            await asyncio.sleep(0.05)
        release.set()  # round 1's watch returns its /approve now
        await asyncio.sleep(1.0)
        state = await handle.query("state", result_type=SdlcState)
        assert state.phase == SdlcPhase.GATE_1 and state.round == 2  # not approved
        assert state.last_comment_id == 0  # round 2's watch reads comment 21 itself
        await decide(handle, Verdict.APPROVE, actor="bob")
        result = SdlcResult.model_validate(await handle.result())

    decisions = [(e.actor, e.detail.split(" (via")[0]) for e in result.audit
                 if e.kind in ("decision", "refused")]
    assert decisions == [("bob", "GATE_1: revise"), ("bob", "GATE_1: approve")]
    assert github.comments == []  # no reply about a gate that was not open
