"""Models of the workstream engine (seeds 001 and 003): a work item's DAG of steps
run on tools with routing, retries, circuit breakers, quarantine, gate reviews
and git-committed handoff artifacts.

The spec and the router configuration are YAML files validated here; every
cross-check (unknown dependency, cycle, duplicate step ID, unknown task kind,
unknown tool) raises a ``ValueError`` naming what is wrong, so a bad spec is
refused before anything runs.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from models.common import ArtifactRef, AuditEntry, GateInfo
from models.graph import find_cycle
from models.sdlc import output_path_problem

HANDOFF_SCHEMA = "handoff-artifact"
HANDOFF_SCHEMA_VERSION = 1
DEFAULT_HISTORY_BUDGET = 5_000
"""History events after which a run continues as new (WorkstreamInput.history_budget)."""
CARRIED_TEXT_LIMIT = 2_000
CARRIED_TEXT_PREVIEW = 1_000
"""A text over CARRIED_TEXT_LIMIT characters is carried over continue-as-new as its
first CARRIED_TEXT_PREVIEW characters (see WorkstreamCarry)."""
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
ID_RE = _ID_RE
"""What step IDs, work items and run suffixes match."""


# -- router configuration ------------------------------------------------------
class BreakerPolicy(BaseModel):
    """Circuit breaker settings of one tool.

    Attributes:
        failure_threshold: consecutive failed steps that open the breaker.
        cool_down_seconds: how long it stays open before one half-open trial.
    """

    failure_threshold: int = Field(3, ge=1)
    cool_down_seconds: float = Field(60, gt=0)


class ToolSpec(BaseModel):
    """One tool a step can run on.

    Attributes:
        adapter: ``shell`` (argv or script in the run's workspace), ``python`` (a
            callable by import path), ``agent`` (an SDLC agent runner) or ``noop``.
        capabilities: what the tool can do; ``auto`` routing matches a step's
            ``requires`` against them.
        env: environment variables added to every shell step run on this tool.
        runner: the agent runner of an ``agent`` tool (empty: the worker's default).
        healthy: False takes the tool out of routing without a breaker.
        breaker: circuit breaker settings; None = no breaker (always closed).
        secrets: names of worker environment variables (secrets, e.g.
            ``GITHUB_TOKEN``) that this tool's subprocesses receive. Honoured only
            when the worker's own router config defines the tool this way; a spec
            cannot grant itself a secret.
    """

    adapter: Literal["shell", "python", "agent", "noop"]
    capabilities: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    runner: str = ""
    healthy: bool = True
    breaker: BreakerPolicy | None = Field(default_factory=BreakerPolicy)
    secrets: list[str] = Field(default_factory=list)


class Strategy(StrEnum):
    """How a task kind picks its tool among the route's tools."""

    FIXED = "fixed"  # the first available tool in list order (later ones are fallbacks)
    ROUND_ROBIN = "round_robin"  # rotate over the available tools, one step after another
    AUTO = "auto"  # the first healthy tool whose capabilities cover the step's `requires`


class Route(BaseModel):
    """The tools of one task kind and how to choose among them."""

    strategy: Strategy = Strategy.FIXED
    tools: list[str] = Field(min_length=1)


class RouterConfig(BaseModel):
    """The ``router_config`` YAML: tools, and task kind -> route.

    Raises:
        ValueError: a route names a tool that is not defined.
    """

    tools: dict[str, ToolSpec]
    routes: dict[str, Route]

    @model_validator(mode="after")
    def _check_tools(self) -> RouterConfig:
        for kind, route in self.routes.items():
            unknown = [t for t in route.tools if t not in self.tools]
            if unknown:
                raise ValueError(f"route {kind!r} names unknown tool(s) {', '.join(unknown)}; "
                                 f"defined tools: {', '.join(sorted(self.tools))}")
        return self


DEFAULT_ROUTER_CONFIG: dict[str, Any] = {
    "tools": {name: {"adapter": name} for name in ("shell", "python", "agent", "noop")},
    "routes": {name: {"strategy": "fixed", "tools": [name]}
               for name in ("shell", "python", "agent", "noop")},
}
"""The router config when neither the spec nor WORKSTREAM_ROUTER_CONFIG names one:
each adapter is a task kind with one tool of the same name."""

_PY_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PY_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ToolAuthority(BaseModel):
    """What the worker allows a workstream run to use; the worker, not the
    starter, is the authority on tools (see the README's threat model).

    Attributes:
        router: the worker's router config (WORKSTREAM_ROUTER_CONFIG, else
            :data:`DEFAULT_ROUTER_CONFIG`).
        trust_spec_tools: WORKSTREAM_TRUST_SPEC_TOOLS: accept tools and routes a
            run brings that the worker does not define (development only; such
            tools never receive secrets).
        python_modules: WORKSTREAM_PYTHON_MODULES: the modules ``python`` steps
            may call (exact module names; empty = no python step may run).
    """

    router: RouterConfig
    trust_spec_tools: bool = False
    python_modules: list[str] = Field(default_factory=list)

    def python_problem(self, target: str) -> str | None:
        """Why ``python`` callable ``target`` (``package.module:function``) is
        refused, or None when the allowlist permits it. The function must be a
        public name (no leading ``_``, no dots) of an allowlisted module."""
        module, sep, func = target.partition(":")
        if not sep or not _PY_MODULE_RE.match(module) or not _PY_NAME_RE.match(func):
            return f"python callable {target!r} is not 'package.module:function'"
        if module not in self.python_modules:
            allowed = ", ".join(self.python_modules) or "none"
            return (f"python callable {target!r}: module {module!r} is not in this worker's "
                    f"WORKSTREAM_PYTHON_MODULES (allowed: {allowed})")
        return None

    def tool_problem(self, name: str, spec: ToolSpec) -> str | None:
        """Why the run's tool ``name`` defined as ``spec`` is refused, or None: the
        worker must define a tool of that name, the same in every field."""
        mine = self.router.tools.get(name)
        if mine is None:
            if self.trust_spec_tools:
                return None
            return (f"tool {name!r} is not defined by this worker's router config "
                    f"(WORKSTREAM_ROUTER_CONFIG; defined: {', '.join(sorted(self.router.tools))})")
        if mine != spec and not self.trust_spec_tools:
            fields = [f for f in ToolSpec.model_fields if getattr(mine, f) != getattr(spec, f)]
            return (f"tool {name!r} differs from this worker's definition in "
                    f"{', '.join(fields)}")
        return None

    def granted_secrets(self, name: str, spec: ToolSpec) -> list[str]:
        """The secret names tool ``name`` receives: the worker's grant, only when
        the run's definition equals the worker's."""
        mine = self.router.tools.get(name)
        return list(mine.secrets) if mine is not None and mine == spec else []

    def problems(self, inp: WorkstreamInput) -> list[str]:
        """Every reason to refuse ``inp`` (empty: the run may start): tools the
        worker does not define as the run does, routes of task kinds the worker
        routes otherwise, routes of new task kinds that name a tool the worker does
        not define (a new kind may route among the worker's tools), and python
        callables off the allowlist."""
        out = [p for name, spec in inp.router.tools.items()
               if (p := self.tool_problem(name, spec))]
        if not self.trust_spec_tools:
            for kind, route in inp.router.routes.items():
                mine = self.router.routes.get(kind)
                if mine is None:  # a new task kind: routing among the worker's tools only
                    foreign = [t for t in route.tools if t not in self.router.tools]
                    if foreign:
                        out.append(f"route {kind!r} is not defined by this worker's router "
                                   f"config and names tool(s) it does not define: "
                                   f"{', '.join(foreign)} (defined routes: "
                                   f"{', '.join(sorted(self.router.routes))}; tools: "
                                   f"{', '.join(sorted(self.router.tools))})")
                elif mine != route:
                    out.append(f"route {kind!r} differs from this worker's definition")
        for step in inp.spec.steps:
            route = inp.router.routes.get(step.kind)
            if route and any(inp.router.tools[t].adapter == "python" for t in route.tools):
                if p := self.python_problem(str(step.inputs.get("callable", ""))):
                    out.append(f"step {step.id!r}: {p}")
        return out


# -- the workstream spec -------------------------------------------------------
class StepRetry(BaseModel):
    """The retry policy of one step's own failures (non-zero exit, exception,
    timeout). Attempts lost with their worker or to a server restart are retried
    by the platform and never counted here.

    Attributes:
        max_attempts: attempts that may fail in all (1 = no retry).
        initial_interval: seconds before the first retry.
        backoff: multiplier of the interval after each retry.
        maximum_interval: cap of the interval, seconds.
        non_retryable_exit_codes: shell exit codes that fail the step at once.
    """

    max_attempts: int = Field(1, ge=1)
    initial_interval: float = Field(1.0, gt=0)
    backoff: float = Field(2.0, ge=1)
    maximum_interval: float = Field(60.0, gt=0)
    non_retryable_exit_codes: list[int] = Field(default_factory=list)


class StepSpec(BaseModel):
    """One step of a workstream.

    Attributes:
        id: unique within the spec (lowercase letters, digits, ``-_.``).
        kind: the task kind; the router config must have a route for it.
        inputs: adapter inputs: shell ``argv`` (list) or ``script`` (text) and
            ``env``; python ``callable`` (``module:function``) and ``kwargs``;
            agent ``title`` and ``description`` (an SDLC feature spec), or its own
            ``instructions``, and ``output`` (the file it writes, relative to
            the workspace; default ``specs/<branch>/spec.md``).
        depends_on: step IDs that must succeed first.
        timeout: seconds one attempt may run.
        retry: the step's retry policy.
        gate: when True, a person reviews the step's result before dependents run.
        priority: higher launches first among ready steps; ties keep spec order.
        requires: capabilities a tool must have (``auto`` routing).
    """

    id: str
    kind: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    timeout: float = Field(600, gt=0)
    retry: StepRetry = Field(default_factory=StepRetry)
    gate: bool = False
    priority: int = 0
    requires: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ID_RE.match(value):
            raise ValueError(f"step id {value!r} must be lowercase letters, digits, '-', '_' "
                             "or '.', starting with a letter or digit")
        return value


class WorkstreamSpec(BaseModel):
    """The workstream spec YAML: a work item and its DAG of steps.

    Attributes:
        work_item: the business key; the workflow ID is ``workstream-<work_item>``.
        repo: local git repository the run branches from; None = a fresh repository
            in the run's workspace.
        base_branch: the branch the run's branch starts from (and merges into).
        max_parallel: steps running at once, at most.
        failure_budget: failed steps tolerated; one more quarantines the run.
            None = never quarantine (failed steps block their dependents).
        merge_to_base: merge the run's branch into ``base_branch`` when all succeed.
        router_config: path of the router config YAML (relative to the spec file).
        tools: tools defined inline (as in a router config); they are added over
            the router config's. The worker refuses a tool it does not define the
            same way unless it trusts spec tools (WORKSTREAM_TRUST_SPEC_TOOLS).
        routes: routes defined inline (task kind -> route), added over the router
            config's. A task kind the worker does not route may route among the
            worker's own tools; a kind it routes must be routed as it does.
        steps: the steps, in spec order.

    Raises:
        ValueError: duplicate step ID, unknown dependency or a dependency cycle
            (the message names the cycle, e.g. ``a -> b -> a``).
    """

    work_item: str
    repo: str | None = None
    base_branch: str = "main"
    max_parallel: int = Field(4, ge=1)
    failure_budget: int | None = Field(None, ge=0)
    merge_to_base: bool = False
    router_config: str | None = None
    tools: dict[str, ToolSpec] = Field(default_factory=dict)
    routes: dict[str, Route] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1)

    @field_validator("work_item")
    @classmethod
    def _check_work_item(cls, value: str) -> str:
        if not _ID_RE.match(value):
            raise ValueError(f"work_item {value!r} must be lowercase letters, digits, '-', '_' "
                             "or '.' (it becomes the workflow ID)")
        return value

    @model_validator(mode="after")
    def _check_graph(self) -> WorkstreamSpec:
        """Every problem of the DAG at once (duplicate IDs, unknown dependencies,
        a cycle), joined by ``; `` in one ValueError."""
        problems: list[str] = []
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                problems.append(f"duplicate step id {step.id!r}; step ids must be unique")
            seen.add(step.id)
        for step in self.steps:
            problems += [f"step {step.id!r} depends on unknown step {dep!r}"
                         for dep in step.depends_on if dep not in seen]
        cycle = find_cycle({s.id: [d for d in s.depends_on if d in seen] for s in self.steps})
        if cycle:
            problems.append(f"dependency cycle: {' -> '.join(cycle)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def step(self, step_id: str) -> StepSpec:
        """The step with this ID (KeyError when none)."""
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


class WorkstreamInput(BaseModel):
    """Input of WorkstreamWorkflow: the spec, the router config and where things live.

    Attributes:
        spec: the validated spec.
        router: the validated router config.
        repo_path: absolute path of ``spec.repo``, or None.
        spec_dir: directory of the spec file (``WORKSTREAM_SPEC_DIR`` of shell steps).
        history_budget: history events after which the run continues as new at its
            next safe point (see ``workflows/workstream.py``); Temporal's own
            suggestion (``is_continue_as_new_suggested``) also counts. At least 100.
        carried: set by the workflow itself when it continues as new: the run so
            far (never set it when starting a run).

    Raises:
        ValueError: a step's kind has no route in the router config.
    """

    spec: WorkstreamSpec
    router: RouterConfig
    repo_path: str | None = None
    spec_dir: str = ""
    history_budget: int = Field(DEFAULT_HISTORY_BUDGET, ge=100)
    carried: WorkstreamCarry | None = None

    @model_validator(mode="after")
    def _check_kinds(self) -> WorkstreamInput:
        routes = ", ".join(sorted(self.router.routes))
        problems = [f"step {step.id!r} has unknown task kind {step.kind!r}"
                    for step in self.spec.steps if step.kind not in self.router.routes]
        outputs = [f"step {step.id!r}: {problem}" for step in self.spec.steps
                   if "output" in step.inputs
                   and (problem := output_path_problem(str(step.inputs["output"])))]
        if problems or outputs:
            raise ValueError("; ".join(
                ([*problems, f"the router config routes: {routes}"] if problems else [])
                + outputs))
        return self


# -- run state ---------------------------------------------------------------
class RunState(StrEnum):
    """The run lifecycle: pending -> running -> succeeded / failed / quarantined / canceled
    (quarantined -> running again on resume)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    CANCELED = "canceled"


class StepState(StrEnum):
    """Where one step is."""

    PENDING = "pending"
    RUNNING = "running"
    REVIEW = "review"  # succeeded, waiting at its gate
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"  # a dependency failed or was blocked
    CANCELED = "canceled"


class StepAttempt(BaseModel):
    """One execution of a step on a tool (Temporal retries inside it counted in
    ``attempts``).

    Attributes:
        step: step ID.
        number: 1-based execution number of the step (a resume or a revise adds one).
        tool: the tool it ran on.
        started_at, finished_at: workflow times (UTC).
        attempts: activity attempts used in all (retries = attempts - 1), the
            infrastructure retries included.
        infra_retries: attempts that were lost, not failed: the worker died or
            was lost (heartbeat timeout), or the server lost the completion
            (e.g. it restarted). Retried by the platform, never counted against
            the step's ``retry.max_attempts``.
        failed_attempts: the step's own failed attempts (non-zero exit,
            exception), counted against ``retry.max_attempts``.
        outcome: ``succeeded``, ``failed`` or ``canceled``.
        exit_code: exit code of a shell step's last attempt.
        error: why it failed.
        outputs: references to its outputs (stdout, stderr, results).
        handoff: the committed handoff artifact.
        summary: of a failed attempt: the test runner's summary line of its output
            (e.g. pytest's ``2 failed, 5 passed in 0.31s``), "" when none.
        tail: of a failed attempt: the last lines of its stdout, then stderr.
    """

    step: str
    number: int
    tool: str
    started_at: datetime
    finished_at: datetime | None = None
    attempts: int = 1
    infra_retries: int = 0
    failed_attempts: int = 0
    outcome: str = "running"
    exit_code: int | None = None
    error: str = ""
    outputs: list[ArtifactRef] = Field(default_factory=list)
    handoff: ArtifactRef | None = None
    summary: str = ""
    tail: str = ""

    @property
    def seconds(self) -> float:
        """Duration in seconds (0 while running)."""
        return (self.finished_at - self.started_at).total_seconds() if self.finished_at else 0.0


class RunEvent(BaseModel):
    """One state change of the run or of a step.

    Attributes:
        at: workflow time (UTC).
        kind: ``run_state``, ``step_state``, ``scheduled``, ``routed``, ``breaker``,
            ``quarantine``, ``resume``, ``gate`` or ``merge``.
        step: the step concerned, when any.
        detail: what happened and why.
    """

    at: datetime
    kind: str
    step: str | None = None
    detail: str


class Progress(BaseModel):
    """The ``progress`` query: step IDs by where they are."""

    state: RunState
    done: list[str] = Field(default_factory=list)
    running: list[str] = Field(default_factory=list)
    blocked: list[str] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)
    review: list[str] = Field(default_factory=list)


class WorkstreamStatus(BaseModel):
    """The ``state`` query of WorkstreamWorkflow."""

    work_item: str
    state: RunState
    reason: str = ""
    steps: dict[str, StepState] = Field(default_factory=dict)
    workspace: str | None = None
    branch: str | None = None
    failures_since_resume: int = 0
    breaker_trips: int = 0
    pending_gates: list[GateInfo] = Field(default_factory=list)


class WorkstreamReport(BaseModel):
    """The ``report`` query: everything ``workstream report`` prints.

    Attributes:
        started_at, finished_at: run start and end (workflow time, UTC).
        attempts: every step attempt, in start order.
        events: every run event (scheduling decisions, routing decisions with
            reasons, breaker trips, state changes), oldest first.
        handoffs: the handoff commits, in commit order (the chain ``verify`` checks).
    """

    workflow_id: str
    work_item: str
    state: RunState
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: dict[str, StepState] = Field(default_factory=dict)
    attempts: list[StepAttempt] = Field(default_factory=list)
    events: list[RunEvent] = Field(default_factory=list)
    breaker_trips: int = 0
    workspace: str | None = None
    repo_path: str | None = None
    branch: str | None = None
    base_branch: str = "main"
    handoffs: list[ArtifactRef] = Field(default_factory=list)


class WorkstreamResult(BaseModel):
    """What WorkstreamWorkflow returns when the run succeeded (failed and canceled
    runs end with an error; the ``report`` query still answers)."""

    state: RunState
    steps: dict[str, StepState]
    branch: str | None = None
    merge_commit: str | None = None
    handoffs: list[ArtifactRef] = Field(default_factory=list)
    audit: list[AuditEntry] = Field(default_factory=list)


class ResumeRequest(BaseModel):
    """Payload of the ``resume`` update: who resumes a quarantined run and why."""

    actor: str = Field(min_length=1)
    comment: str = ""


class ResumeAck(BaseModel):
    """What ``resume`` returns: the failed steps that will run again."""

    rerun: list[str]


class WorkstreamCarry(BaseModel):
    """What a WorkstreamWorkflow run carries over continue-as-new: the run so far.

    Texts longer than ``CARRIED_TEXT_LIMIT`` characters (a reviewer's long comment
    in the audit log or in a step's event) are carried as their first
    ``CARRIED_TEXT_PREVIEW`` characters and a note naming the earlier run whose
    history holds them whole; a revised step's feedback is never carried (its
    feedback file in the workspace holds every round).

    Attributes:
        state, reason: the run state and its reason.
        started_at: when the first run started.
        steps: step ID -> state.
        executions: step ID -> executions started so far.
        attempts: every step execution so far (the ``step_attempts`` query).
        events: every run event so far (the ``run_events`` query).
        handoffs: the handoff commits so far, in commit order (the chain goes on).
        failures: failed steps since the last resume (for ``failure_budget``).
        trips: breaker trips so far.
        turns: task kind -> round-robin turns taken.
        workspace: the run's workspace.
        audit: the audit log so far.
        gates: the review gates open when the run continued (each reopens as it was).
        openings: gate openings so far (signed decisions name the opening).
    """

    state: RunState
    reason: str = ""
    started_at: datetime
    steps: dict[str, StepState]
    executions: dict[str, int] = Field(default_factory=dict)
    attempts: list[StepAttempt] = Field(default_factory=list)
    events: list[RunEvent] = Field(default_factory=list)
    handoffs: list[ArtifactRef] = Field(default_factory=list)
    failures: int = 0
    trips: int = 0
    turns: dict[str, int] = Field(default_factory=dict)
    workspace: Workspace
    audit: list[AuditEntry] = Field(default_factory=list)
    gates: list[GateInfo] = Field(default_factory=list)
    openings: int = 0


# -- activity payloads -------------------------------------------------------
class WorkspaceInput(BaseModel):
    """Activity input: make the run's workspace (a fresh git repository) or reuse it."""

    workflow_id: str
    base_branch: str = "main"


class Workspace(BaseModel):
    """The run's workspace: a git worktree (or repository) on the run's branch."""

    path: str
    branch: str
    repo_path: str
    base_branch: str


class StepTask(BaseModel):
    """Activity input: run one step on one tool.

    Attributes:
        workflow_id, step, number: who runs what (names artifacts).
        tool, spec: the tool and its definition.
        inputs: the step's adapter inputs.
        workspace: the run's workspace (cwd of shell steps).
        spec_dir: ``WORKSTREAM_SPEC_DIR`` of shell steps.
        timeout: seconds one attempt may run.
        attempt_base: attempts this execution used in earlier activities; the
            attempt number (``WORKSTREAM_ATTEMPT``) is ``attempt_base`` + the
            activity's own attempt, so it keeps increasing across them.
        own_failures_final: raise the step's own failures (non-zero exit, the
            callable raised) as non-retryable, for the workflow to count against
            ``retry.max_attempts``; the platform then retries only lost attempts.
        new_feedback: the reviewer's comment that asked for this execution (a
            revise of execution ``number - 1``); empty otherwise. Only this one
            comment travels in the input: the earlier ones are already in the
            step's feedback file in the workspace (``WORKSTREAM_FEEDBACK_FILE``).
    """

    workflow_id: str
    step: str
    number: int
    tool: str
    spec: ToolSpec
    inputs: dict[str, Any] = Field(default_factory=dict)
    workspace: str
    spec_dir: str = ""
    timeout: float = 600
    attempt_base: int = 0
    own_failures_final: bool = False
    new_feedback: str = ""


class StepOutput(BaseModel):
    """Activity result of a step: attempt number used (see ``StepTask.attempt_base``),
    infrastructure retries inside this activity (its earlier, lost attempts), exit
    code and output references."""

    attempt: int
    infra_retries: int = 0
    exit_code: int | None = None
    outputs: list[ArtifactRef] = Field(default_factory=list)
    result: Any = None


class HandoffInput(BaseModel):
    """Activity input: write and commit one handoff artifact (schema ``handoff-artifact`` v1).

    Attributes:
        workflow_id, run_id: go into the commit trailers.
        workspace: the run's workspace (a git work tree).
        sequence: 1-based position of this event in the run's chain.
        attempt: the step attempt the artifact describes.
        inputs_digest: SHA-256 of the step's canonical JSON inputs.
        previous_sha256: SHA-256 of the previous handoff artifact ("" for the first).
    """

    workflow_id: str
    run_id: str
    workspace: str
    sequence: int
    attempt: StepAttempt
    inputs_digest: str
    previous_sha256: str = ""


class MergeInput(BaseModel):
    """Activity input: merge the run's branch into the base branch of the repository."""

    repo_path: str
    branch: str
    base_branch: str
    workflow_id: str


# -- circuit breaker -------------------------------------------------------
class BreakerPhase(StrEnum):
    """Circuit breaker states (Nygard, *Release It!*, ch. 5 "Circuit Breaker")."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class ToolBreaker(BaseModel):
    """One tool's breaker.

    Attributes:
        phase: closed, open or half_open.
        consecutive_failures: failures since the last success.
        open_until: when an open breaker half-opens.
        trial_holder: who holds the one half-open trial, "" when free.
        trips: how often it opened.
    """

    phase: BreakerPhase = BreakerPhase.CLOSED
    consecutive_failures: int = 0
    open_until: datetime | None = None
    trial_holder: str = ""
    trips: int = 0


class BreakerBoard(BaseModel):
    """State of BreakerWorkflow (carried over continue-as-new).

    Attributes:
        tools: tool name -> its breaker.
        max_updates: updates one run of the workflow handles before it continues
            as new (keeps the history bounded).
    """

    tools: dict[str, ToolBreaker] = Field(default_factory=dict)
    max_updates: int = Field(500, ge=1)


class BreakerPick(BaseModel):
    """Payload of the ``pick`` update: candidate tools in preference order."""

    candidates: list[str]
    holder: str


class BreakerGrant(BaseModel):
    """What ``pick`` returns.

    Attributes:
        tool: the first candidate that may run now, or None.
        skipped: candidate -> why it was passed over.
        retry_at: when the earliest open candidate half-opens (when tool is None).
        half_open_trial: the grant is the tool's one half-open trial.
    """

    tool: str | None = None
    skipped: dict[str, str] = Field(default_factory=dict)
    retry_at: datetime | None = None
    half_open_trial: bool = False


class BreakerReport(BaseModel):
    """Payload of the ``report`` update: the outcome of a step on a tool."""

    tool: str
    success: bool
    holder: str
    policy: BreakerPolicy


class BreakerOutcome(BaseModel):
    """What ``report`` returns: the tool's breaker after the outcome, and whether
    this outcome tripped it open."""

    breaker: ToolBreaker
    tripped: bool = False



def breaker_workflow_id(task_queue: str) -> str:
    """The ID of the BreakerWorkflow shared by the runs on ``task_queue``."""
    return f"workstream-breakers-{task_queue}"


WorkstreamInput.model_rebuild()
