"""WorkstreamWorkflow: a work item's DAG of steps run on tools, durably (seeds 001, 003).

Lifecycle ``pending -> running -> succeeded / failed / quarantined / canceled``:

* **Admission**: the worker checks the run's router config and python callables
  against its own configuration (``ws_check_run``); a refused run fails before
  anything runs, with every reason in its error.
* **Workspace**: a worktree of the spec's repository on a branch of its own
  (``NNN-<work item>``, via the SDLC git activities), or a fresh repository.
  A run that ends failed or canceled removes its worktree (the branch and its
  commits stay); a fresh repository stays.
* **Scheduling**: ready steps (every dependency succeeded) launch in a stable
  order, higher ``priority`` first and then spec order, while fewer than
  ``max_parallel`` steps run; every launch is a ``scheduled`` event. A failed
  step marks its dependents ``blocked``; independent branches go on.
* **Routing**: the step's task kind names a route of the router config; the
  strategy (fixed / round_robin / auto) orders the route's healthy tools, the
  shared BreakerWorkflow grants the first whose breaker is not open, and the
  run waits on a durable timer when every tool is open. Each decision is a
  ``routed`` event with its reason.
* **Execution**: one activity per step with the step's Temporal retry policy;
  its outcome is reported to the tool's breaker and written as a handoff
  artifact committed to the run's branch (one commit per finished attempt, in
  order, each linking to the previous artifact's SHA-256).
* **Quarantine**: more failed steps than ``failure_budget`` stop all launches;
  the ``resume`` update re-runs the failed (and so blocked) steps; cancelling
  ends the run ``canceled``.
* **Gate reviews**: a ``gate: true`` step waits at gate ``review-<step>`` after it
  succeeds: approve lets dependents run, revise runs it again with the comment
  in the step's feedback file (``WORKSTREAM_FEEDBACK_FILE``; agent steps get
  ``SDLC_FEEDBACK_FILE``), reject fails it.
* **Agent steps** run the SDLC agent runners; ``inputs.instructions`` replaces
  the spec request and ``inputs.output`` names the file written and committed
  (default: ``specs/<branch>/spec.md``). Each execution's input carries only
  the newest comment: the file holds the earlier ones.
* With ``merge_to_base``, the branch is merged into the base branch at the end.
* **Bounded history**: a run whose history reaches ``history_budget`` events
  (default 5,000), or whose history Temporal suggests to continue as new
  (``is_continue_as_new_suggested``), continues as new at its next safe point:
  no step activity or timer in flight, i.e. between scheduling waves, while the
  run is quarantined, or while every started step waits at its review gate. It
  first waits for its message handlers, then carries the run so far
  (``WorkstreamCarry``: step states, executions, events, handoff chain,
  workspace, audit log, the open review gates) so that the queries show the
  whole run and each open gate reopens as it was. A run can pass its budget by
  the events of the steps it waits for (one wave).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import ClassVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    is_cancelled_exception,
)
from temporalio.workflow import ActivityCancellationType

from workflows import policies, search_attributes
from workflows.gates import GatedWorkflow, activity_failure, history_full

with workflow.unsafe.imports_passed_through():
    from activities.agents import AgentActivities
    from activities.breaker import BreakerActivities
    from activities.git import GitActivities
    from activities.workstream import WorkstreamActivities, digest, exit_code_error_type
    from models.common import ArtifactRef, AuditEntry, GateInfo, Verdict
    from models.git import PrepareBranchInput, WorktreeInput
    from models.sdlc import AgentTask
    from models.text import excerpt
    from models.workstream import (
        CARRIED_TEXT_LIMIT,
        CARRIED_TEXT_PREVIEW,
        BreakerGrant,
        BreakerPick,
        BreakerReport,
        HandoffInput,
        MergeInput,
        Progress,
        ResumeAck,
        ResumeRequest,
        RunEvent,
        RunState,
        StepAttempt,
        StepOutput,
        StepSpec,
        StepState,
        StepTask,
        Strategy,
        Workspace,
        WorkspaceInput,
        WorkstreamCarry,
        WorkstreamInput,
        WorkstreamReport,
        WorkstreamResult,
        WorkstreamStatus,
    )
    from temporal_plumbing import metrics

# Breaker questions are local, fast updates.
BREAKER_TIMEOUT = timedelta(seconds=30)
BREAKER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=10), maximum_attempts=10)
STEP_TIMEOUT_MARGIN = timedelta(seconds=30)  # past the step's own timeout, for clean-up
SHELL_HEARTBEAT_TIMEOUT = timedelta(seconds=5)  # as policies.AGENT_HEARTBEAT_TIMEOUT
MIN_BREAKER_WAIT = timedelta(seconds=1)
# workflow.patched ID: lost attempts are retried by the platform, the step's own
# failures by the workflow (runs recorded before this change used one Temporal
# retry policy of retry.max_attempts for both)
PATCH_INFRA_RETRY = "step-infra-retry"
# workflow.patched ID: a failed or canceled run removes its worktree (runs recorded
# before this change end without that activity)
PATCH_END_REMOVES_WORKTREE = "end-removes-worktree"
# workflow.patched ID: a step attempt lost after the run was cancelled (the server
# does not retry it) ends canceled, not failed (no breaker report, no handoff)
PATCH_LOST_AFTER_CANCEL_IS_CANCELED = "lost-after-cancel-is-canceled"
# workflow.patched ID: a failed or canceled run in a fresh workspace kills the
# process groups its fences still record (e.g. left by a worker killed before)
PATCH_END_KILLS_WORKSPACE_PROCESSES = "end-kills-workspace-processes"
# workflow.patched ID: a run continues as new at a safe point once its history is
# full (runs recorded before this change never continue as new)
PATCH_CONTINUE_AS_NEW = "workstream-continue-as-new"
MIN_EVENTS_PER_RUN = 100  # a run continues as new only after this many history events
_DONE = (StepState.SUCCEEDED,)
_DEAD = (StepState.FAILED, StepState.BLOCKED, StepState.CANCELED)


@workflow.defn(name="WorkstreamWorkflow")
class WorkstreamWorkflow(GatedWorkflow):
    """The workstream engine (see the module docstring). Its phase is the run state:
    it changes only through :meth:`GatedWorkflow.transition` (via :meth:`_enter`) and
    the run ends failed only through :meth:`GatedWorkflow.fail`."""

    phase_attribute = search_attributes.WORKSTREAM_STATE
    failed_phase: ClassVar[RunState] = RunState.FAILED
    failure_type = "WorkstreamFailed"

    @workflow.init
    def __init__(self, inp: WorkstreamInput) -> None:
        super().__init__()
        self._inp = inp
        self.failure_label = f"workstream {inp.spec.work_item}"
        self._state = RunState.PENDING
        self._reason = ""
        self._steps: dict[str, StepState] = {s.id: StepState.PENDING for s in inp.spec.steps}
        self._executions: dict[str, int] = {}
        self._feedback: dict[str, list[str]] = {}
        self._attempts: list[StepAttempt] = []
        self._events: list[RunEvent] = []
        self._handoffs: list[ArtifactRef] = []
        self._failures = 0
        self._trips = 0
        self._turns: dict[str, int] = {}
        self._workspace: Workspace | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed = False
        self._commit_lock = asyncio.Lock()
        self._started_at = None
        self._finished_at = None
        self._bounded = False
        if inp.carried is not None:  # continued as new: the run so far
            c = inp.carried
            self._state, self._reason, self._started_at = c.state, c.reason, c.started_at
            self._steps = dict(c.steps)
            self._executions = dict(c.executions)
            self._attempts = [a.model_copy() for a in c.attempts]
            self._events = list(c.events)
            self._handoffs = list(c.handoffs)
            self._failures, self._trips, self._turns = c.failures, c.trips, dict(c.turns)
            self._workspace = c.workspace
            self._audit.extend(c.audit)
            self._openings = c.openings

    # -- queries and updates ---------------------------------------------------
    @workflow.query(name="state")
    def state(self) -> WorkstreamStatus:
        """Run state, step states, workspace, failures and open gates."""
        return WorkstreamStatus(
            work_item=self._inp.spec.work_item if self._inp else "", state=self._state,
            reason=self._reason, steps=dict(self._steps),
            workspace=self._workspace.path if self._workspace else None,
            branch=self._workspace.branch if self._workspace else None,
            failures_since_resume=self._failures, breaker_trips=self._trips,
            pending_gates=self.pending_gates())

    @workflow.query(name="progress")
    def progress(self) -> Progress:
        """Step IDs by where they are: done, running, review, failed, blocked, pending."""
        p = Progress(state=self._state)
        lists = {StepState.SUCCEEDED: p.done, StepState.RUNNING: p.running,
                 StepState.REVIEW: p.review, StepState.FAILED: p.failed,
                 StepState.BLOCKED: p.blocked, StepState.CANCELED: p.blocked,
                 StepState.PENDING: p.pending}
        for step_id, st in self._steps.items():
            lists[st].append(step_id)
        return p

    @workflow.query(name="step_attempts")
    def step_attempts(self) -> list[StepAttempt]:
        """Every step attempt, in start order."""
        return list(self._attempts)

    @workflow.query(name="run_events")
    def run_events(self) -> list[RunEvent]:
        """Every run event (state changes, scheduling and routing decisions), oldest first."""
        return list(self._events)

    @workflow.query(name="report")
    def report(self) -> WorkstreamReport:
        """Everything ``workstream report`` prints."""
        assert self._inp is not None
        ws = self._workspace
        return WorkstreamReport(
            workflow_id=workflow.info().workflow_id, work_item=self._inp.spec.work_item,
            state=self._state, reason=self._reason, started_at=self._started_at,
            finished_at=self._finished_at, steps=dict(self._steps),
            attempts=list(self._attempts), events=list(self._events),
            breaker_trips=self._trips, workspace=ws.path if ws else None,
            repo_path=ws.repo_path if ws else None, branch=ws.branch if ws else None,
            base_branch=self._inp.spec.base_branch, handoffs=list(self._handoffs))

    @property
    def phase(self) -> RunState:
        """The run state (``state().state``)."""
        return self._state

    @phase.setter
    def phase(self, value: RunState) -> None:
        self._state = value

    @workflow.update(name="resume")
    async def resume(self, req: ResumeRequest) -> ResumeAck:
        """Resume a quarantined run: failed and blocked steps become pending again."""
        rerun = [s for s, st in self._steps.items() if st == StepState.FAILED]
        for step_id, st in self._steps.items():
            if st in _DEAD:
                self._steps[step_id] = StepState.PENDING
        self._failures = 0
        self.record("resume", f"resumed; re-running {', '.join(rerun) or 'nothing'}",
                    actor=req.actor, comment=req.comment)
        self._event("resume", f"{req.actor} resumed; re-running {', '.join(rerun)}")
        await self._enter(RunState.RUNNING, f"resumed by {req.actor}")
        return ResumeAck(rerun=rerun)

    @resume.validator
    def _validate_resume(self, req: ResumeRequest) -> None:
        if self._state != RunState.QUARANTINED:
            raise ValueError(f"the run is {self._state.value}, not quarantined; "
                             "only a quarantined run can be resumed")

    # -- the run ---------------------------------------------------------------
    @workflow.run
    async def run(self, inp: WorkstreamInput) -> WorkstreamResult:
        """Run the DAG; return when every step succeeded, raise ApplicationError
        (type ``WorkstreamFailed``) when the run ends failed."""
        self._bounded = workflow.patched(PATCH_CONTINUE_AS_NEW)
        if inp.carried is not None:
            return await self._run_on(inp.carried)
        self._started_at = workflow.now()
        self._event("run_state", f"pending: {len(inp.spec.steps)} steps, "
                    f"max_parallel {inp.spec.max_parallel}")
        if workflow.patched("worker-tool-authority"):
            try:
                await workflow.execute_activity_method(
                    WorkstreamActivities.check_run, inp,
                    start_to_close_timeout=policies.ADMISSION_TIMEOUT,
                    retry_policy=policies.ADMISSION_RETRY,
                    summary="the worker checks the run's tools")
            except ActivityError as err:
                cause = err.cause
                await self.fail(cause.message if isinstance(cause, ApplicationError)
                                else str(err))
        return await self._run_on(None)

    async def _run_on(self, carried: WorkstreamCarry | None) -> WorkstreamResult:
        """The run from its workspace on (``carried``: continued as new; the
        workspace exists and the open review gates wait on)."""
        assert self._inp
        inp = self._inp
        try:
            if carried is None:
                self._workspace = await self._prepare_workspace()
                await self._enter(RunState.RUNNING, f"workspace {self._workspace.path} on "
                                  f"{self._workspace.branch}")
            else:
                for gate in carried.gates:
                    step = inp.spec.step(gate.gate.removeprefix("review-"))
                    self._tasks[step.id] = asyncio.create_task(self._run_step(step, gate))
            await self._schedule()
            merge_commit = None
            if inp.spec.merge_to_base and all(
                    st == StepState.SUCCEEDED for st in self._steps.values()):
                merge_commit = await self._merge()
        except asyncio.CancelledError:
            await self._cancel_steps()
            await self._remove_worktree("canceled")
            await self._enter(RunState.CANCELED, "canceled")
            raise
        except ActivityError as err:  # workspace, git or breaker: the run cannot go on
            await self._cancel_steps()
            if is_cancelled_exception(err):  # cancelled with the run: not a failure
                await self._remove_worktree("canceled")
                await self._enter(RunState.CANCELED, "canceled")
                raise
            await self.fail(activity_failure(err))
        assert self._workspace
        if all(st == StepState.SUCCEEDED for st in self._steps.values()):
            await self._enter(RunState.SUCCEEDED, "every step succeeded")
            await self.handlers_finished()
            return WorkstreamResult(state=self._state, steps=dict(self._steps),
                                    branch=self._workspace.branch, merge_commit=merge_commit,
                                    handoffs=list(self._handoffs), audit=self.audit_log())
        await self.fail("; ".join(f"{s} {st.value}" for s, st in self._steps.items()
                                  if st != StepState.SUCCEEDED))

    async def _remove_worktree(self, why: str) -> None:
        """A run on a worktree of the spec's repository that ends failed or canceled
        removes the worktree (killing the processes still fenced there); its branch
        and commits stay. A fresh workspace repository is the run's only copy of
        its work and stays; only the processes still fenced there are killed."""
        assert self._inp
        ws = self._workspace
        if ws is None:
            return
        if self._inp.repo_path is None:  # a fresh workspace: only its processes go
            if workflow.patched(PATCH_END_KILLS_WORKSPACE_PROCESSES):
                try:
                    killed = await workflow.execute_activity_method(
                        WorkstreamActivities.kill_processes, ws,
                        start_to_close_timeout=policies.GIT_TIMEOUT,
                        retry_policy=policies.GIT_RETRY,
                        summary=f"kill the workspace's leftover processes ({why})")
                except ActivityError as err:
                    self._event("workspace", f"processes in {ws.path} left: {err.cause or err}")
                    return
                if killed:
                    self._event("workspace", f"killed leftover process groups {killed} in "
                                f"{ws.path} ({why})")
            return
        if not workflow.patched(PATCH_END_REMOVES_WORKTREE):
            return
        try:
            await workflow.execute_activity_method(
                GitActivities.remove_worktree,
                WorktreeInput(repo_path=ws.repo_path, branch=ws.branch),
                start_to_close_timeout=policies.GIT_TIMEOUT, retry_policy=policies.GIT_RETRY,
                summary=f"remove the worktree ({why})")
        except ActivityError as err:  # the run ends anyway; say what was left
            self._event("workspace", f"worktree {ws.path} left: {err.cause or err}")
            return
        self._event("workspace", f"worktree {ws.path} removed ({why}); branch "
                    f"{ws.branch} stays")

    async def on_fail(self, reason: str) -> None:
        """Before the run enters failed (:meth:`GatedWorkflow.fail`, which then raises
        ApplicationError ``WorkstreamFailed``, "workstream <work item> failed: <reason>"):
        remove the worktree (see :meth:`_remove_worktree`) and note the reason."""
        await self._remove_worktree("failed")
        self._note_state(RunState.FAILED, reason)

    async def _prepare_workspace(self) -> Workspace:
        assert self._inp
        spec, wf_id = self._inp.spec, workflow.info().workflow_id
        if self._inp.repo_path is None:
            return await workflow.execute_activity_method(
                WorkstreamActivities.init_workspace,
                WorkspaceInput(workflow_id=wf_id, base_branch=spec.base_branch),
                start_to_close_timeout=policies.GIT_TIMEOUT, retry_policy=policies.GIT_RETRY,
                summary="create the run's workspace repository")
        branch = await workflow.execute_activity_method(
            GitActivities.prepare_branch,
            PrepareBranchInput(workflow_id=wf_id, repo_path=self._inp.repo_path,
                               base_branch=spec.base_branch, slug=spec.work_item),
            start_to_close_timeout=policies.GIT_TIMEOUT, retry_policy=policies.GIT_RETRY,
            summary=f"create the run's branch from {spec.base_branch}")
        path = await workflow.execute_activity_method(
            GitActivities.add_worktree,
            WorktreeInput(repo_path=self._inp.repo_path, branch=branch.name),
            start_to_close_timeout=policies.GIT_TIMEOUT, retry_policy=policies.GIT_RETRY,
            summary=f"add a worktree for {branch.name}")
        return Workspace(path=path, branch=branch.name, repo_path=self._inp.repo_path,
                         base_branch=spec.base_branch)

    async def _schedule(self) -> None:
        """Launch ready steps until nothing runs and nothing can launch."""
        assert self._inp
        spec = self._inp.spec
        while True:
            self._block_dependents()
            if self._history_full_at_safe_point():
                await self._continue_as_new()  # returns when no longer at a safe point
            if self._state == RunState.RUNNING:
                running = sum(1 for st in self._steps.values() if st == StepState.RUNNING)
                ready = [s for s in spec.steps if self._steps[s.id] == StepState.PENDING
                         and all(self._steps[d] in _DONE for d in s.depends_on)]
                ready.sort(key=lambda s: -s.priority)  # stable: ties keep spec order
                for step in ready[:max(spec.max_parallel - running, 0)]:
                    running += 1
                    self._steps[step.id] = StepState.RUNNING
                    self._event("scheduled", f"launch {step.id} (priority {step.priority}, "
                                f"{running}/{spec.max_parallel} running; ready: "
                                f"{', '.join(s.id for s in ready)})", step.id)
                    self._tasks[step.id] = asyncio.create_task(self._run_step(step))
            if not self._tasks and self._state != RunState.QUARANTINED:
                return
            self._changed = False
            await workflow.wait_condition(
                lambda: self._changed or self._history_full_at_safe_point())
            for step_id, task in list(self._tasks.items()):
                if task.done():
                    del self._tasks[step_id]
                    task.result()  # a workflow bug surfaces here, not silently

    def _block_dependents(self) -> None:
        assert self._inp
        changed = True
        while changed:
            changed = False
            for step in self._inp.spec.steps:
                if self._steps[step.id] != StepState.PENDING:
                    continue
                dead = [d for d in step.depends_on if self._steps[d] in _DEAD]
                if dead:
                    self._set_step(step.id, StepState.BLOCKED, f"blocked by {', '.join(dead)}")
                    changed = True

    async def _run_step(self, step: StepSpec, review: GateInfo | None = None) -> None:
        """Run ``step`` until it is done (revised executions included); ``review``:
        the step's review gate as a previous run left it open, waited on first."""
        feedback = ""
        try:
            if review is not None:
                latest = [a for a in self._attempts if a.step == step.id][-1]
                if not await self._review(step, latest, resume=review):
                    return
                feedback = self._feedback[step.id][-1]
            while True:
                again = await self._run_once(step, feedback)
                if not again:
                    return
                feedback = self._feedback[step.id][-1]
        finally:
            self._changed = True

    async def _run_once(self, step: StepSpec, feedback: str = "") -> bool:
        """One execution of ``step``; True when a reviewer asked for a revision.
        ``feedback`` is the comment of the revise that asked for this execution."""
        number = self._executions[step.id] = self._executions.get(step.id, 0) + 1
        self._set_step(step.id, StepState.RUNNING, f"execution {number}")
        tool = await self._route(step, number)
        if tool is None:
            await self._fail_step(step.id, "no healthy tool can run it")
            return False
        att = StepAttempt(step=step.id, number=number, tool=tool, started_at=workflow.now())
        self._attempts.append(att)
        try:
            out = await self._execute(step, tool, number, att, feedback)
            att.attempts, att.exit_code, att.outputs = out.attempt, out.exit_code, out.outputs
            att.outcome = "succeeded"
        except (ActivityError, asyncio.CancelledError) as err:
            if isinstance(err, asyncio.CancelledError) or is_cancelled_exception(err) or (
                    # lost (e.g. its worker died) after the run was cancelled: not a failure
                    err.retry_state == RetryState.CANCEL_REQUESTED
                    and workflow.patched(PATCH_LOST_AFTER_CANCEL_IS_CANCELED)):
                att.outcome, att.finished_at = "canceled", workflow.now()
                metrics.step_finished(workflow.metric_meter(), tool, att.outcome, att.seconds)
                self._set_step(step.id, StepState.CANCELED, "canceled")
                raise asyncio.CancelledError() from None
            self._describe_failure(att, err, step)
        att.finished_at = workflow.now()
        metrics.step_finished(workflow.metric_meter(), tool, att.outcome, att.seconds)
        await self._report_breaker(tool, att.outcome == "succeeded", step.id, number)
        await self._commit_handoff(att, step)
        if att.outcome != "succeeded":
            await self._fail_step(step.id, f"failed on {tool} after {att.attempts} "
                                  f"attempt(s): {att.error[:300]}")
            return False
        if not step.gate:
            self._set_step(step.id, StepState.SUCCEEDED, f"on {tool} in {att.seconds:.1f} s")
            return False
        return await self._review(step, att)

    async def _review(self, step: StepSpec, att: StepAttempt,
                      resume: GateInfo | None = None) -> bool:
        """Wait at the step's review gate (``resume``: as a previous run left it);
        True when the reviewer asked for a revision."""
        if resume is None:
            self._set_step(step.id, StepState.REVIEW, "waiting for a gate decision")
            self._changed = True
        decision = await self.wait_for_decision(
            f"review-{step.id}",
            prompt=f"review step {step.id} (execution {att.number} on {att.tool}): approve, "
                   "revise (runs it again with your comment) or reject (fails it)",
            artifact=", ".join(ref.path for ref in
                               ([att.handoff] if att.handoff else []) + att.outputs),
            resume=resume)
        if decision is None:
            await self._fail_step(step.id, "review gate expired")
            return False
        self._event("gate", f"{decision.verdict.value} by {decision.actor}", step.id)
        if decision.verdict == Verdict.APPROVE:
            self._set_step(step.id, StepState.SUCCEEDED, f"approved by {decision.actor}")
            return False
        if decision.verdict == Verdict.REJECT:
            await self._fail_step(step.id, f"rejected by {decision.actor}: {decision.comment}")
            return False
        self._feedback.setdefault(step.id, []).append(decision.comment)
        return True

    async def _fail_step(self, step_id: str, why: str) -> None:
        assert self._inp
        self._set_step(step_id, StepState.FAILED, why)
        self._failures += 1
        budget = self._inp.spec.failure_budget
        if budget is not None and self._failures > budget and self._state == RunState.RUNNING:
            failed = [s for s, st in self._steps.items() if st == StepState.FAILED]
            reason = (f"{self._failures} failed step(s) exceed the failure budget of "
                      f"{budget}: {', '.join(failed)}")
            self._event("quarantine", reason)
            await self._enter(RunState.QUARANTINED, reason)

    def _describe_failure(self, att: StepAttempt, err: ActivityError, step: StepSpec) -> None:
        cause = err.cause
        details = getattr(cause, "details", None) or ()
        info = details[0] if details and isinstance(details[0], dict) else {}
        att.outcome = "failed"
        att.error = getattr(cause, "message", None) or str(cause or err)
        att.exit_code = info.get("exit_code")
        att.outputs = [ArtifactRef.model_validate(o) for o in info.get("outputs", [])]
        att.summary = str(info.get("summary") or "")
        att.tail = str(info.get("tail") or "")
        exhausted = err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
        att.attempts = int(info.get("attempt") or max(
            att.attempts, step.retry.max_attempts if exhausted else 1))

    # -- bounded history -------------------------------------------------------
    def _at_safe_point(self) -> bool:
        """Whether the run may continue as new now: no step activity or timer is in
        flight (every running step task waits at its open review gate, with no
        decision waiting to be acted on) and the run has something left to wait
        for (a step to launch, a review, a resume of the quarantined run)."""
        for step_id, task in self._tasks.items():
            gate = f"review-{step_id}"
            if (task.done() or self._steps[step_id] != StepState.REVIEW
                    or gate not in self._open or gate in self._decided):
                return False
        return bool(self._tasks) or self._state == RunState.QUARANTINED or (
            self._state == RunState.RUNNING
            and any(st == StepState.PENDING for st in self._steps.values()))

    def _history_full_at_safe_point(self) -> bool:
        """Whether to continue as new now: the history is full (:func:`history_full`
        with the input's budget; never before MIN_EVENTS_PER_RUN events, so a run
        whose carried state alone makes Temporal suggest it cannot loop) and the
        run is at a safe point."""
        assert self._inp
        return (self._bounded and history_full(self._inp.history_budget)
                and workflow.info().get_current_history_length() >= MIN_EVENTS_PER_RUN
                and self._at_safe_point())

    async def _continue_as_new(self) -> None:
        """Continue as new carrying the run so far (:class:`WorkstreamCarry`), once
        every message handler has finished; returns, without continuing, when a
        message handled meanwhile left the run no longer at a safe point."""
        assert self._inp and self._workspace and self._started_at
        await self.handlers_finished()
        if not self._at_safe_point():
            return
        info = workflow.info()
        gates = list(self._open.values())
        why = (f"after {info.get_current_history_length()} history events (budget "
               f"{self._inp.history_budget}); open review gates: "
               f"{', '.join(g.gate for g in gates) or 'none'}")
        self.record("continued_as_new", why)
        self._event("continued_as_new", why)
        carry = WorkstreamCarry(
            state=self._state, reason=self._reason,
            started_at=self._started_at, steps=dict(self._steps),
            executions=dict(self._executions), attempts=list(self._attempts),
            events=[e.model_copy(update={"detail": _carried(e.detail, info.run_id)})
                    for e in self._events],
            handoffs=list(self._handoffs), failures=self._failures, trips=self._trips,
            turns=dict(self._turns), workspace=self._workspace,
            audit=[_carried_entry(e, info.run_id) for e in self.audit_log()],
            gates=gates, openings=self._openings)
        workflow.continue_as_new(self._inp.model_copy(update={"carried": carry}))

    # -- routing ---------------------------------------------------------------
    async def _route(self, step: StepSpec, number: int) -> str | None:
        """The tool for ``step``, waiting while every candidate's breaker is open."""
        assert self._inp
        router = self._inp.router
        route = router.routes[step.kind]
        candidates = [t for t in route.tools if router.tools[t].healthy]
        tools = f"[{', '.join(route.tools)}]"
        why = {Strategy.FIXED: f"fixed: first available of {tools}",
               Strategy.ROUND_ROBIN: f"round_robin over {tools}",
               Strategy.AUTO: f"auto: first healthy tool covering {sorted(step.requires)} "
                              f"of {tools}"}[route.strategy]
        unhealthy = [t for t in route.tools if not router.tools[t].healthy]
        if unhealthy:
            why += f"; unhealthy: {', '.join(unhealthy)}"
        if route.strategy == Strategy.AUTO:
            need = set(step.requires)
            lacking = [t for t in candidates if not need <= set(router.tools[t].capabilities)]
            candidates = [t for t in candidates if t not in lacking]
            if lacking:
                why += f"; lacking capabilities: {', '.join(lacking)}"
        if not candidates:
            self._event("routed", f"no tool: {why}", step.id)
            return None
        if route.strategy == Strategy.ROUND_ROBIN:
            turn = self._turns.get(step.kind, 0)
            self._turns[step.kind] = turn + 1
            k = turn % len(candidates)
            candidates = candidates[k:] + candidates[:k]
            why = why.replace("round_robin", f"round_robin turn {turn + 1}", 1)
        holder = f"{workflow.info().workflow_id}/{step.id}/{number}"
        while True:
            if any(router.tools[t].breaker for t in candidates):
                grant = await workflow.execute_activity_method(
                    BreakerActivities.pick, BreakerPick(candidates=candidates, holder=holder),
                    start_to_close_timeout=BREAKER_TIMEOUT, retry_policy=BREAKER_RETRY,
                    summary=f"breaker: pick a tool for {step.id}")
            else:
                grant = BreakerGrant(tool=candidates[0])
            skipped = "".join(f"; {t} skipped: {r}" for t, r in grant.skipped.items())
            if grant.tool is not None:
                trial = " (half-open trial)" if grant.half_open_trial else ""
                self._event("routed", f"{grant.tool}{trial}: {why}{skipped}", step.id)
                return grant.tool
            wait = max((grant.retry_at or workflow.now()) - workflow.now(), MIN_BREAKER_WAIT)
            self._event("routed", f"waiting {wait.total_seconds():.0f} s: every tool is "
                        f"open{skipped}", step.id)
            await workflow.sleep(wait, summary=f"{step.id}: wait for a breaker to half-open")

    async def _report_breaker(self, tool: str, success: bool, step_id: str, number: int
                              ) -> None:
        assert self._inp
        policy = self._inp.router.tools[tool].breaker
        if policy is None:
            return
        outcome = await workflow.execute_activity_method(
            BreakerActivities.report,
            BreakerReport(tool=tool, success=success, policy=policy,
                          holder=f"{workflow.info().workflow_id}/{step_id}/{number}"),
            start_to_close_timeout=BREAKER_TIMEOUT, retry_policy=BREAKER_RETRY,
            summary=f"breaker: {tool} {'succeeded' if success else 'failed'}")
        if outcome.tripped:
            self._trips += 1
            self._event("breaker", f"{tool} opened after {outcome.breaker.consecutive_failures} "
                        f"consecutive failure(s), until {outcome.breaker.open_until}", step_id)

    # -- activities ------------------------------------------------------------
    async def _execute(self, step: StepSpec, tool: str, number: int, att: StepAttempt,
                       feedback: str = "") -> StepOutput:
        """Run one execution of ``step`` on ``tool``; ``feedback`` is the comment of
        the revise that asked for it (the activity gets only this one).

        A lost attempt (worker killed or lost, heartbeat timeout, a completion the
        server rejected after a restart) is retried by the platform
        (``policies.STEP_INFRA_RETRY``) and never counts against the step's
        ``retry.max_attempts``; the activity raises the step's own failures
        (non-zero exit, exception, timeout) as non-retryable, and they are counted
        and retried here, with the step's backoff. Both are events
        (``infra_retry``, ``attempt_failed``) and fields of ``att``.

        Raises:
            ActivityError: the step failed for good (own failures exhausted, a
                non-retryable exit code, an invalid step, or lost attempts beyond
                STEP_INFRA_RETRY's limit); cancelled.
        """
        r = step.retry
        if not workflow.patched(PATCH_INFRA_RETRY):  # runs recorded before the split
            return await self._execute_activity(
                step, tool, number, RetryPolicy(
                    initial_interval=timedelta(seconds=r.initial_interval),
                    backoff_coefficient=r.backoff,
                    maximum_interval=timedelta(seconds=max(r.maximum_interval,
                                                           r.initial_interval)),
                    maximum_attempts=r.max_attempts,
                    non_retryable_error_types=[exit_code_error_type(c)
                                               for c in r.non_retryable_exit_codes]),
                attempt_base=0, final=False, feedback=feedback)
        final_types = {exit_code_error_type(c) for c in r.non_retryable_exit_codes}
        base = 0
        while True:
            try:
                out = await self._execute_activity(step, tool, number,
                                                   policies.STEP_INFRA_RETRY,
                                                   attempt_base=base, final=True,
                                                   feedback=feedback)
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise
                cause = err.cause
                details = getattr(cause, "details", None) or ()
                info = details[0] if details and isinstance(details[0], dict) else {}
                if not (isinstance(cause, ApplicationError) and cause.non_retryable
                        and "attempt" in info):
                    # lost attempts beyond the platform's limit, or an invalid step
                    if err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED:
                        lost = policies.STEP_INFRA_RETRY.maximum_attempts
                        self._note_infra(step.id, att, lost, base + lost)
                        att.attempts = base + lost
                    raise
                base = int(info["attempt"])
                self._note_infra(step.id, att, int(info.get("infra_retries", 0)), base)
                att.failed_attempts += 1
                self._event("attempt_failed", f"attempt {base} failed (failure "
                            f"{att.failed_attempts} of retry.max_attempts {r.max_attempts}): "
                            f"{cause.message[:300]}", step.id)
                if att.failed_attempts >= r.max_attempts or cause.type in final_types:
                    raise
                delay = min(r.initial_interval * r.backoff ** (att.failed_attempts - 1),
                            max(r.maximum_interval, r.initial_interval))
                await workflow.sleep(timedelta(seconds=delay),
                                     summary=f"{step.id}: back off before attempt {base + 1}")
                continue
            self._note_infra(step.id, att, out.infra_retries, out.attempt)
            return out

    def _note_infra(self, step_id: str, att: StepAttempt, lost: int, attempt: int) -> None:
        if lost > 0:
            att.infra_retries += lost
            self._event("infra_retry", f"{lost} lost attempt(s) before attempt {attempt} "
                        "retried by the platform (worker lost, heartbeat timeout or "
                        "completion lost); not counted against retry.max_attempts", step_id)

    async def _execute_activity(self, step: StepSpec, tool: str, number: int,
                                retry: RetryPolicy, attempt_base: int, final: bool,
                                feedback: str = "") -> StepOutput:
        assert self._inp and self._workspace
        spec = self._inp.router.tools[tool]
        timeout = timedelta(seconds=step.timeout) + STEP_TIMEOUT_MARGIN
        summary = f"{step.id} on {tool} (execution {number})"
        wf_id = workflow.info().workflow_id
        if spec.adapter == "agent":
            ref = await workflow.execute_activity_method(
                AgentActivities.run_agent,
                AgentTask(workflow_id=wf_id, round=number, runner=spec.runner,
                          worktree=self._workspace.path, branch=self._workspace.branch,
                          title=str(step.inputs.get("title", step.id)),
                          description=str(step.inputs.get("description", "")),
                          instructions=str(step.inputs.get("instructions", "")),
                          output_path=str(step.inputs.get("output", "")),
                          new_feedback=feedback,
                          feedback_from=self._last_output_commit(step.id) if feedback else "",
                          feedback_key=step.id,
                          timeout_seconds=step.timeout,
                          fence_key=f"step-{step.id}-{number}" if final else "",
                          own_failures_final=final),
                start_to_close_timeout=timeout,
                heartbeat_timeout=policies.AGENT_HEARTBEAT_TIMEOUT, retry_policy=retry,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=summary)
            # the agent's result does not say its attempt: the first after ``attempt_base``
            return StepOutput(attempt=attempt_base + 1, outputs=[ref])
        task = StepTask(workflow_id=wf_id, step=step.id, number=number, tool=tool, spec=spec,
                        inputs=dict(step.inputs), workspace=self._workspace.path,
                        spec_dir=self._inp.spec_dir, timeout=step.timeout,
                        attempt_base=attempt_base, own_failures_final=final,
                        new_feedback=feedback)
        method = {"shell": WorkstreamActivities.run_shell,
                  "python": WorkstreamActivities.run_python,
                  "noop": WorkstreamActivities.run_noop}[spec.adapter]
        heartbeats = ("shell", "python") if final else ("shell",)
        return await workflow.execute_activity_method(
            method, task, start_to_close_timeout=timeout, retry_policy=retry,
            heartbeat_timeout=SHELL_HEARTBEAT_TIMEOUT if spec.adapter in heartbeats else None,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=summary)

    def _last_output_commit(self, step_id: str) -> str:
        """The commit of the newest output of ``step_id``'s executions (an agent
        step's committed spec, beside which its feedback file is), or ""."""
        for att in reversed(self._attempts):
            if att.step == step_id and att.outputs and att.outputs[0].commit:
                return att.outputs[0].commit
        return ""

    async def _commit_handoff(self, att: StepAttempt, step: StepSpec) -> None:
        assert self._workspace
        # one at a time, so that commit order is sequence order
        async with self._commit_lock:
            info = workflow.info()
            ref = await workflow.execute_activity_method(
                WorkstreamActivities.commit_handoff,
                HandoffInput(workflow_id=info.workflow_id, run_id=info.run_id,
                             workspace=self._workspace.path, sequence=len(self._handoffs) + 1,
                             attempt=att,
                             inputs_digest=digest({"kind": step.kind, "inputs": step.inputs,
                                                   "tool": att.tool}),
                             previous_sha256=self._handoffs[-1].sha256 if self._handoffs
                             else ""),
                start_to_close_timeout=policies.GIT_TIMEOUT, retry_policy=policies.GIT_RETRY,
                summary=f"commit the handoff of {step.id} execution {att.number}")
            self._handoffs.append(ref)
            att.handoff = ref

    async def _merge(self) -> str:
        assert self._inp and self._workspace
        sha = await workflow.execute_activity_method(
            WorkstreamActivities.merge,
            MergeInput(repo_path=self._workspace.repo_path, branch=self._workspace.branch,
                       base_branch=self._inp.spec.base_branch,
                       workflow_id=workflow.info().workflow_id),
            start_to_close_timeout=policies.GIT_TIMEOUT, retry_policy=policies.GIT_RETRY,
            summary=f"merge {self._workspace.branch} into {self._inp.spec.base_branch}")
        self._event("merge", f"{self._workspace.branch} merged into "
                    f"{self._inp.spec.base_branch} at {sha[:12]}")
        return sha

    async def _cancel_steps(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, ActivityError):
                pass
        for step_id, st in self._steps.items():
            if st in (StepState.PENDING, StepState.RUNNING, StepState.REVIEW):
                self._steps[step_id] = StepState.CANCELED

    # -- bookkeeping -----------------------------------------------------------
    def _event(self, kind: str, detail: str, step: str | None = None) -> None:
        self._events.append(RunEvent(at=workflow.now(), kind=kind, step=step, detail=detail))

    def _set_step(self, step_id: str, st: StepState, detail: str) -> None:
        self._steps[step_id] = st
        self._event("step_state", f"{st.value}: {detail}", step_id)

    async def _enter(self, state: RunState, detail: str) -> None:
        """Change the run state: the run's own record of it (:meth:`_note_state`),
        then :meth:`GatedWorkflow.transition` (state, audit entry, the
        ``WorkstreamState`` search attribute, metrics)."""
        self._note_state(state, detail)
        await self.transition(state, detail)

    def _note_state(self, state: RunState, detail: str) -> None:
        """The run's own record of a change to ``state``: the reason (kept for
        failed, canceled and quarantined), the end time, a ``run_state`` event, and
        a wake-up of the scheduler."""
        self._changed = True
        if state in (RunState.FAILED, RunState.CANCELED, RunState.QUARANTINED):
            self._reason = detail
        else:
            self._reason = ""
        if state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED):
            self._finished_at = workflow.now()
        self._event("run_state", f"{self._state.value} -> {state.value}: {detail}")


def _carried(text: str, run_id: str) -> str:
    """``text`` as carried over continue-as-new: whole up to CARRIED_TEXT_LIMIT
    characters, else its first CARRIED_TEXT_PREVIEW and where the rest is (an
    already carried excerpt stays as it is: :func:`models.text.excerpt`)."""
    return excerpt(text, CARRIED_TEXT_LIMIT, preview=CARRIED_TEXT_PREVIEW,
                   where=f"whole in the history of run {run_id}")


def _carried_entry(entry: AuditEntry, run_id: str) -> AuditEntry:
    """An audit entry as carried over continue-as-new (long texts shortened, see
    :func:`_carried`)."""
    return entry.model_copy(update={"detail": _carried(entry.detail, run_id),
                                    "comment": _carried(entry.comment, run_id)})
