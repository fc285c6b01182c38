"""SdlcWorkflow: a feature request through IDLE -> PHASE_1 -> PHASE_2 -> GATE_1 -> DONE.

PHASE_1 opens the tracking issue, creates the branch ``NNN-slug`` and its git
worktree. PHASE_2 has an agent write ``specs/<branch>/spec.md`` there and
commits it. GATE_1 waits for a human decision: approve ends DONE; reject or
revise sends the reviewer's feedback back to PHASE_2, up to ``max_rounds``
rounds, past which the run ends FAILED. Cancelling, in any phase, kills the
agent's processes, removes the worktree (the branch and its commits stay) and
ends CANCELED; a run that ends FAILED removes its worktree too.

With GitHub (the worker's tracker returns an issue whose provider is ``github``)
three things are added, all as activities: while GATE_1 is open the issue's
comments are polled on a durable timer for ``/approve``, ``/reject <reason>`` and
``/revise <feedback>``, which go through the same decision handler as signals and
updates; reminders are posted as comments; and approval pushes the branch and
opens a pull request before DONE. Without GitHub the command sequence is unchanged.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, is_cancelled_exception

from workflows import policies, search_attributes
from workflows.gates import GITHUB_CHANNEL, activity_failure
from workflows.llm import LlmWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.agents import AgentActivities
    from activities.git import GitActivities
    from activities.issues import IssueTracker
    from models.common import ArtifactRef, GateDecision, GateInfo, Verdict
    from models.git import PrepareBranchInput, WorktreeInput
    from models.issues import (
        CommentInput,
        CommentPoll,
        CommentPollInput,
        CommentWatchInput,
        PullRequestInput,
    )
    from models.llm import LlmUsage
    from models.sdlc import (
        FEEDBACK_EXCERPT_CHARS,
        GATE_1,
        AgentTask,
        FeatureRequest,
        OpenIssueInput,
        PendingReply,
        PhaseLabelInput,
        SdlcCarry,
        SdlcPhase,
        SdlcResult,
        SdlcState,
    )
    from models.signatures import GITHUB_PREFIX
    from models.text import excerpt

# workflow.patched ID: a FAILED run removes its worktree before it ends (runs
# recorded before this change end FAILED without that activity)
PATCH_FAILED_RUN_REMOVES_WORKTREE = "failed-run-removes-worktree"
# workflow.patched ID: GATE_1 polls GitHub comments with one long-running, heartbeating
# activity that returns only on news (instead of a poll activity per durable timer),
# and continues as new when the history is full. A patch is decided once per run:
# a run started before this change keeps polling on a timer, without continuing as
# new, until it ends; runs started after it (and their continuations) take the watch.
PATCH_LONG_GATE = "sdlc-gate-watch-and-continue-as-new"
# workflow.patched ID: a reply to a refused GitHub comment command is queued in the state
# and posted by a task of its own, which the gate's closing and continue-as-new wait for
# (before, the comment poll posted it itself and lost it when it was cancelled)
PATCH_REPLIES_ONCE = "sdlc-github-replies-posted-once"
# workflow.patched ID: on GitHub, each GATE_1 reminder also re-applies the phase label
# (a label a person removed from the issue, or deleted from the repository, comes back)
PATCH_REMINDER_LABEL = "sdlc-reminder-reapplies-label"


@workflow.defn(name="SdlcWorkflow")
class SdlcWorkflow(LlmWorkflow):
    """The SDLC phase machine as a durable workflow (see module docstring)."""

    phase_attribute = search_attributes.SDLC_PHASE
    failed_phase: ClassVar[SdlcPhase] = SdlcPhase.FAILED
    failure_type = "SdlcFailed"
    failure_label = "SDLC run"

    @workflow.init
    def __init__(self, req: FeatureRequest) -> None:
        super().__init__()
        self._state = SdlcState()
        self._req = req
        self._replier: asyncio.Task[None] | None = None  # posts state.pending_replies
        if req.carried is not None:  # continued as new at GATE_1
            self._state = req.carried.state.model_copy()
            self._audit.extend(req.carried.audit)
            self.ledger = [LlmUsage.model_validate(u) for u in req.carried.ledger]

    @workflow.query(name="state")
    def state(self) -> SdlcState:
        """Current phase, round, issue, branch, worktree, specs, open gates and the
        feedback (the newest round's as an excerpt, a count and the committed file
        that holds every round's)."""
        return self._state.excerpt().model_copy(update={"pending_gates": self.pending_gates()})

    @property
    def phase(self) -> SdlcPhase:
        """The current phase (``state().phase``)."""
        return self._state.phase

    @phase.setter
    def phase(self, value: SdlcPhase) -> None:
        self._state.phase = value

    @workflow.run
    async def run(self, req: FeatureRequest) -> SdlcResult:
        """Run the request to DONE; raise ApplicationError when it ends FAILED."""
        wf_id = workflow.info().workflow_id
        carried = req.carried
        try:
            if carried is None:
                await self._phase_1(req, wf_id)
            while True:
                if carried is None:
                    spec = await self._write_spec()
                    decision = await self._gate()
                else:  # the previous run waited at GATE_1: wait on
                    spec = carried.spec
                    decision = await self._gate(resume=carried.gate)
                    carried = None
                if decision is None:
                    await self.fail("gate expired")
                if decision.verdict == Verdict.APPROVE:
                    if self._on_github:
                        await self._open_pull_request(spec, decision)
                    await self.transition(SdlcPhase.DONE, actor=decision.actor)
                    await self.handlers_finished()
                    return self._result(spec)
                self._state.feedback = decision.comment
                self._state.feedback_rounds += 1
                if self._state.round >= req.max_rounds:
                    await self.fail(
                        f"spec not approved after {req.max_rounds} round(s); last "
                        f"feedback: {excerpt(decision.comment, FEEDBACK_EXCERPT_CHARS)}")
        except asyncio.CancelledError:
            await self._cleanup_on_cancel()
            raise
        except ActivityError as err:
            if is_cancelled_exception(err):  # an activity cancelled with the run
                await self._cleanup_on_cancel()
                raise
            await self.fail(activity_failure(err))

    async def _phase_1(self, req: FeatureRequest, wf_id: str) -> None:
        """PHASE_1: the tracking issue, the branch and its worktree."""
        await self.transition(SdlcPhase.PHASE_1)
        self._state.issue = await workflow.execute_activity_method(
            IssueTracker.open_issue,
            OpenIssueInput(workflow_id=wf_id, repo_path=req.repo_path, title=req.title,
                           body=req.description, since=workflow.info().workflow_start_time),
            start_to_close_timeout=policies.TRACKER_TIMEOUT,
            retry_policy=policies.TRACKER_RETRY,
            summary="open the tracking issue",
        )
        await self._sync_label()
        self._state.branch = await workflow.execute_activity_method(
            GitActivities.prepare_branch,
            PrepareBranchInput(workflow_id=wf_id, repo_path=req.repo_path,
                               base_branch=req.base_branch, slug=req.effective_slug()),
            start_to_close_timeout=policies.GIT_TIMEOUT, retry_policy=policies.GIT_RETRY,
            summary=f"create the feature branch from {req.base_branch}",
        )
        self._state.worktree = await workflow.execute_activity_method(
            GitActivities.add_worktree,
            WorktreeInput(repo_path=req.repo_path, branch=self._state.branch.name),
            start_to_close_timeout=policies.GIT_TIMEOUT, retry_policy=policies.GIT_RETRY,
            summary=f"add a worktree for {self._state.branch.name}",
        )
        self.record("phase_1_done", f"issue #{self._state.issue.number}, branch "
                    f"{self._state.branch.name}, worktree {self._state.worktree}")

    async def _write_spec(self) -> ArtifactRef:
        assert self._req and self._state.branch and self._state.worktree
        self._state.round += 1
        await self.transition(SdlcPhase.PHASE_2, f"round {self._state.round}")
        task = AgentTask(
            workflow_id=workflow.info().workflow_id, round=self._state.round,
            runner=self._req.agent, worktree=self._state.worktree,
            branch=self._state.branch.name, title=self._req.title,
            description=self._req.description,
            # one round's feedback and a reference to the earlier ones (the previous
            # round's commit holds them in its feedback file): bounded per round
            new_feedback=self._state.feedback,
            feedback_from=(self._state.specs[-1].commit or "") if self._state.specs else "",
            timeout_seconds=self._req.agent_timeout.total_seconds(),
        )
        spec = await workflow.execute_activity_method(
            AgentActivities.run_agent, task,
            start_to_close_timeout=self._req.agent_timeout + policies.AGENT_TIMEOUT_MARGIN,
            heartbeat_timeout=policies.AGENT_HEARTBEAT_TIMEOUT,
            retry_policy=policies.AGENT_RETRY,
            summary=f"agent writes the spec, round {self._state.round}",
        )
        if spec.usage is not None:  # the anthropic runner reports into the ledger
            self.ledger.append(spec.usage)
        self._state.specs.append(spec)
        if self._state.feedback_rounds and spec.commit:
            # the feedback file committed with this spec holds every round's feedback
            self._state.feedback_file = f"{spec.commit}:{task.feedback_relpath}"
        self.record("spec_committed", f"round {self._state.round}: {spec.path} at "
                    f"{(spec.commit or '')[:12]}")
        return spec

    async def _gate(self, resume: GateInfo | None = None) -> GateDecision | None:
        """Wait at GATE_1 (``resume``: the gate a previous run left open)."""
        assert self._req
        if resume is None:
            await self.transition(SdlcPhase.GATE_1)
        long_gate = self.long_gate()
        hook, interval = None, None
        if self._on_github:
            hook, interval = ((self._watch_comments, None) if long_gate else
                              (self._poll_comments, self._req.comment_poll_interval))
            self._start_replier()  # replies a previous run carried over, if any
        decision = await self.wait_for_decision(
            GATE_1,
            prompt=f"approve, reject or revise the spec of round {self._state.round}",
            artifact=self._spec_to_judge(),
            allowed_actors=self._req.reviewers,
            reminder_interval=self._req.reminder_interval,
            expires_after=self._req.gate_expiry,
            on_reminder=self._on_reminder,
            while_open=hook,
            poll_interval=interval,
            resume=resume,
            on_history_full=self._continue_as_new if long_gate else None,
            history_budget=self._req.history_budget,
        )
        await self._replies_posted()
        return decision

    def long_gate(self) -> bool:
        """Whether this gate polls with the long-running watch activity and continues
        as new when the history is full (:data:`PATCH_LONG_GATE`)."""
        return workflow.patched(PATCH_LONG_GATE)

    async def _continue_as_new(self, gate: GateInfo) -> NoReturn:
        """Continue as new at GATE_1, carrying the state, the audit log, the ledger and
        the open gate (the on_history_full hook)."""
        assert self._req and self._state.specs
        await self._replies_posted()  # a reply in flight is posted by this run, once
        self.record("continued_as_new", f"{gate.gate} still open after "
                    f"{workflow.info().get_current_history_length()} history events")
        # bounded: the feedback and the decisions' comments as excerpts (every round's
        # feedback is committed in state.feedback_file); an excerpt carried from an
        # earlier run stays as it is, with its original length
        audit = [entry.model_copy(
                     update={"comment": excerpt(entry.comment, FEEDBACK_EXCERPT_CHARS)})
                 for entry in self.audit_log()]
        carry = SdlcCarry(state=self._state.excerpt().model_copy(update={"pending_gates": []}),
                          audit=audit, ledger=[u.model_dump() for u in self.ledger],
                          gate=gate, spec=self._state.specs[-1])
        workflow.continue_as_new(self._req.model_copy(update={"carried": carry}))

    def _spec_to_judge(self) -> str:
        """The spec of this round and the command showing its diff from the
        previous round (each round is one commit on the branch)."""
        if not self._state.specs:
            return ""
        path = self._state.specs[-1].path
        if self._state.round > 1 and self._state.worktree:
            return (f"{path} (changes since round {self._state.round - 1}: "
                    f"git -C {self._state.worktree} diff HEAD~1 -- {path})")
        return path

    @property
    def _on_github(self) -> bool:
        return self._state.issue is not None and self._state.issue.provider == "github"

    async def _on_reminder(self, gate: GateInfo) -> None:
        """Post the reminder as a comment and re-apply the phase label (GitHub only)."""
        workflow.logger.info("%s still open after %d reminder(s)", gate.gate, gate.reminders_sent)
        if self._on_github:
            await self._comment(
                f"Reminder {gate.reminders_sent}: {gate.gate} still waits for a decision "
                f"({gate.prompt}). Comment `/approve`, `/reject <reason>` or "
                "`/revise <feedback>`.",
                key=f"reminder-{gate.gate}-round-{self._state.round}-{gate.reminders_sent}")
            if workflow.patched(PATCH_REMINDER_LABEL):
                try:  # a person may have removed the label while the gate waits
                    await self._sync_label()
                except ActivityError as err:
                    if is_cancelled_exception(err):
                        raise
                    self.record("label_failed", activity_failure(err))

    async def _watch_comments(self, gate: GateInfo) -> None:
        """Wait for gate commands in new issue comments with one long-running,
        heartbeating activity that returns only on news, then act on them (the
        while-open hook). Waiting adds no history: the activity's attempts and
        Temporal's retries between them do the polling."""
        assert self._req and self._state.issue
        try:
            poll = await workflow.execute_activity_method(
                IssueTracker.watch_comments,
                CommentWatchInput(
                    poll=CommentPollInput(
                        issue=self._state.issue, after_id=self._state.last_comment_id,
                        since=self._state.last_comment_since, not_before=gate.opened_at,
                        gate=gate.gate),
                    interval=self._req.comment_poll_interval,
                    window=self._req.comment_watch_window),
                start_to_close_timeout=self._req.comment_watch_window + policies.COMMENT_TIMEOUT,
                heartbeat_timeout=policies.COMMENT_WATCH_HEARTBEAT_TIMEOUT,
                # a cancelled watch has stopped before the gate moves on (no two watches
                # of one gate poll at once across continue-as-new)
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                retry_policy=policies.comment_watch_retry(self._req.comment_poll_interval),
                summary=f"watch issue #{self._state.issue.number} for /approve, /reject, "
                        "/revise",
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            self.record("comment_poll_failed", activity_failure(err))
            await workflow.sleep(policies.COMMENT_WATCH_RESTART,
                                 summary="restart the comment watch")
            return
        if not any(open_gate is gate for open_gate in self.pending_gates()):
            # the watch finished with news just as its gate closed (the cancel came too
            # late and was dropped): the news is not this opening's; leave the cursor,
            # so the next opening's watch reads and judges those comments, and stop
            raise asyncio.CancelledError(f"{gate.gate} closed while its watch returned")
        await self._act_on_commands(gate, poll)

    async def _poll_comments(self, gate: GateInfo) -> None:
        """Act on the gate commands found in new issue comments (the while-open hook)."""
        assert self._state.issue
        try:
            poll = await workflow.execute_activity_method(
                IssueTracker.poll_comments,
                CommentPollInput(issue=self._state.issue, after_id=self._state.last_comment_id,
                                 since=self._state.last_comment_since,
                                 not_before=gate.opened_at, gate=gate.gate),
                start_to_close_timeout=policies.COMMENT_TIMEOUT,
                retry_policy=policies.COMMENT_RETRY,
                summary=f"poll issue #{self._state.issue.number} for /approve, /reject, /revise",
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            self.record("comment_poll_failed", activity_failure(err))
            return
        await self._act_on_commands(gate, poll)

    async def _act_on_commands(self, gate: GateInfo, poll: CommentPoll) -> None:
        """Advance the comment cursor and pass each command to the gate's decision
        handler; a refused one gets a reply comment saying why."""
        self._state.last_comment_id = poll.last_seen_id
        self._state.last_comment_since = poll.since
        for command in poll.commands:
            # GitHub authenticated the commenter (the poll checked their write permission)
            decision = GateDecision(gate=gate.gate, verdict=command.verdict,
                                    actor=f"{GITHUB_PREFIX}{command.author}",
                                    comment=command.text).authenticated(GITHUB_CHANNEL)
            problem = self.gate_problem(decision)
            self.receive_decision(decision, f"github comment {command.comment_id}")
            if problem:
                body = f"@{command.author}: `/{command.verdict.value}` ignored: {problem}."
                key = f"refused-{command.comment_id}"
                if workflow.patched(PATCH_REPLIES_ONCE):
                    # queued with the cursor it came from: posted once even when this
                    # poll is cancelled (the gate closes, the run continues as new)
                    self._state.pending_replies.append(PendingReply(key=key, body=body))
                    self._start_replier()
                else:
                    await self._comment(body, key=key)

    def _start_replier(self) -> None:
        """Start the task that posts ``state.pending_replies``, unless it runs or there
        is nothing to post. It is no part of the comment poll, so cancelling the poll
        never cuts a reply off."""
        if self._state.pending_replies and (self._replier is None or self._replier.done()):
            self._replier = asyncio.create_task(self._post_replies())

    async def _post_replies(self) -> None:
        """Post the pending replies, oldest first; each leaves the queue once posted (or
        once posting failed for good, recorded as ``comment_failed``)."""
        while self._state.pending_replies:
            reply = self._state.pending_replies[0]
            await self._comment(reply.body, key=reply.key)
            self._state.pending_replies.pop(0)

    async def _replies_posted(self) -> None:
        """Wait until every pending reply is posted (the gate closed, or the run is
        about to continue as new); adds no history when there is none."""
        self._start_replier()
        if self._replier is not None:
            await self._replier

    async def _comment(self, body: str, key: str) -> None:
        assert self._state.issue
        try:
            await workflow.execute_activity_method(
                IssueTracker.post_comment, CommentInput(issue=self._state.issue, body=body,
                                                        key=key),
                start_to_close_timeout=policies.COMMENT_TIMEOUT,
                retry_policy=policies.COMMENT_RETRY,
                summary=f"comment on issue #{self._state.issue.number}",
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            self.record("comment_failed", activity_failure(err))

    async def _open_pull_request(self, spec: ArtifactRef, decision: GateDecision) -> None:
        assert self._req and self._state.issue and self._state.branch
        branch = self._state.branch.name
        pull = await workflow.execute_activity_method(
            IssueTracker.open_pull_request,
            PullRequestInput(
                repo_path=self._req.repo_path, issue=self._state.issue, branch=branch,
                base=self._req.base_branch, title=self._req.title,
                workflow_id=workflow.info().workflow_id,
                body=(f"{self._req.description}\n\nSpec: `specs/{branch}/spec.md` (round "
                      f"{self._state.round}, approved by {decision.actor}).")),
            start_to_close_timeout=policies.TRACKER_TIMEOUT, retry_policy=policies.TRACKER_RETRY,
            summary=f"push {branch}, open its pull request to {self._req.base_branch}",
        )
        self._state.pr_url = pull.url
        self.record("pull_request", f"#{pull.number} {pull.url}")

    async def on_transition(self, previous: SdlcPhase, to: SdlcPhase) -> None:
        """Every phase change moves the issue's phase label (once the issue exists)."""
        if self._state.issue is not None:
            await self._sync_label()

    async def _sync_label(self) -> None:
        assert self._req and self._state.issue
        await workflow.execute_activity_method(
            IssueTracker.sync_phase_label,
            PhaseLabelInput(repo_path=self._req.repo_path, issue=self._state.issue,
                            phase=self._state.phase),
            start_to_close_timeout=policies.TRACKER_TIMEOUT, retry_policy=policies.TRACKER_RETRY,
            summary=f"issue label -> {self._state.phase.value}",
        )

    async def on_fail(self, reason: str) -> None:
        """Before FAILED (see :meth:`fail`): keep the reason and remove the worktree
        (the branch and its commits stay)."""
        self._state.failure_reason = reason
        if workflow.patched(PATCH_FAILED_RUN_REMOVES_WORKTREE):
            try:
                await self._remove_worktree("failed")
            except ActivityError as err:  # the run fails anyway; say what was left
                self.record("worktree_left", activity_failure(err))

    async def _cleanup_on_cancel(self) -> None:
        assert self._req
        self._state.failure_reason = "canceled"
        await self._remove_worktree("canceled")
        await self.transition(SdlcPhase.CANCELED)

    async def _remove_worktree(self, why: str) -> None:
        """Kill the processes still fenced in the worktree and remove it (the branch
        and its commits stay); nothing when no branch was made yet."""
        assert self._req
        if self._state.branch is not None:
            await workflow.execute_activity_method(
                GitActivities.remove_worktree,
                WorktreeInput(repo_path=self._req.repo_path, branch=self._state.branch.name),
                start_to_close_timeout=policies.GIT_TIMEOUT, retry_policy=policies.GIT_RETRY,
                summary=f"remove the worktree ({why})",
            )
            self._state.worktree = None

    def _result(self, spec: ArtifactRef) -> SdlcResult:
        return SdlcResult(
            phase=self._state.phase, rounds=self._state.round, issue=self._state.issue,
            branch=self._state.branch, spec=spec, pr_url=self._state.pr_url,
            audit=self.audit_log(),
        )

