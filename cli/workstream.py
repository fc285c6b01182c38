"""``workstream start|status|report|resume|cancel|verify|approve|reject|revise``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from activities.workstream import verify_chain
from cli import gates
from cli.common import (
    CliError,
    Context,
    default_actor,
    failure_message,
    json_flag,
    start_orchestration,
)
from cli.review import EXIT_UNSUCCESSFUL, GateWatcher
from models.common import Verdict
from models.text import NotUtf8Error, decode_utf8
from models.workstream import (
    DEFAULT_ROUTER_CONFIG,
    ID_RE,
    Progress,
    ResumeRequest,
    RouterConfig,
    RunState,
    StepAttempt,
    WorkstreamInput,
    WorkstreamReport,
    WorkstreamSpec,
)
from settings import Settings
from temporal_plumbing.search_attributes import ensure_search_attributes
from workflows.search_attributes import WORK_ITEM, WORKSTREAM_STATE
from workflows.workstream import WorkstreamWorkflow


def workstream_id(work_item_or_id: str) -> str:
    """The workflow ID ``workstream-<work item>`` (an ID given whole is kept)."""
    if work_item_or_id.startswith("workstream-"):
        return work_item_or_id
    return f"workstream-{work_item_or_id}"


def _read_yaml(path: Path, what: str) -> Any:
    try:
        return yaml.safe_load(decode_utf8(path.read_bytes(), f"the {what} {path}"))
    except NotUtf8Error as err:
        raise CliError(str(err), code=2) from None
    except OSError as err:
        raise CliError(f"cannot read the {what} {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise CliError(f"{path} is not valid YAML: {err}".replace("\n", " ")) from None


def _problems(err: ValidationError) -> str:
    return "; ".join(
        (f"{'.'.join(str(p) for p in e['loc'])}: " if e["loc"] else "")
        + e["msg"].removeprefix("Value error, ") for e in err.errors())


def _validated(model: type[BaseModel], data: Any, path: Path) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise CliError(f"{path}: {_problems(err)}") from None


def load_input(spec_path: Path, settings: Settings) -> WorkstreamInput:
    """Read and validate a spec and its router config into a WorkstreamInput.

    The router config is the spec's ``router_config`` (relative to the spec), else
    WORKSTREAM_ROUTER_CONFIG, else :data:`DEFAULT_ROUTER_CONFIG`, with the spec's
    inline ``tools`` and ``routes`` added over it (a name defined in both takes
    the spec's definition; the worker then judges it, see ``ToolAuthority``);
    ``repo`` is resolved relative to the spec too.

    Raises:
        CliError: unreadable file, bad YAML, or an invalid spec (unknown dependency,
            cycle, duplicate step ID, unknown task kind...), naming the file and problem.
    """
    spec_path = spec_path.resolve()
    spec = _validated(WorkstreamSpec, _read_yaml(spec_path, "spec"), spec_path)
    router_path: Path | None = None
    if spec.router_config:
        router_path = (spec_path.parent / spec.router_config).resolve()
    elif settings.workstream_router_config:
        router_path = settings.workstream_router_config.resolve()
    if router_path is not None:
        router = _validated(RouterConfig, _read_yaml(router_path, "router config"), router_path)
    else:
        router = RouterConfig.model_validate(DEFAULT_ROUTER_CONFIG)
    if spec.tools or spec.routes:  # inline definitions win over the router config's
        router = _validated(RouterConfig, {
            "tools": {**router.tools, **spec.tools}, "routes": {**router.routes, **spec.routes}},
            spec_path)
    repo_path = None
    if spec.repo:
        repo = (spec_path.parent / spec.repo).resolve()
        if not (repo / ".git").exists():
            raise CliError(f"{spec_path}: repo {spec.repo!r} ({repo}) is not a git repository")
        repo_path = str(repo)
    try:
        return WorkstreamInput(spec=spec, router=router, repo_path=repo_path,
                               spec_dir=str(spec_path.parent))
    except ValidationError as err:
        raise CliError(f"{spec_path}: {_problems(err)}") from None


RUN_SEPARATOR = "@"  # never in a work item, so IDs of re-runs cannot collide with one


def run_workflow_id(work_item: str, run: str | None = None) -> str:
    """``workstream-<work item>``, or ``workstream-<work item>@<run>`` for a re-run.

    Raises:
        CliError: ``run`` is not lowercase letters, digits, ``-``, ``_`` or ``.``.
    """
    if run is None:
        return workstream_id(work_item)
    if not ID_RE.match(run) or len(run) > 100:
        raise CliError(f"--run {run!r} must be up to 100 lowercase letters, digits, '-', '_' "
                       "or '.', starting with a letter or digit (e.g. --run 2)")
    return workstream_id(f"{work_item}{RUN_SEPARATOR}{run}")


async def start_workstream(client: Client, settings: Settings, inp: WorkstreamInput,
                           run: str | None = None) -> WorkflowHandle[Any, Any]:
    """Start WorkstreamWorkflow with ID ``workstream-<work item>`` (with ``run``:
    ``workstream-<work item>@<run>``, the same work item run again in a workspace
    and branch of its own).

    Raises:
        WorkflowAlreadyStartedError: that work item (and run) was started before.
        CliError: ``run`` is not a valid suffix.
    """
    wf_id = run_workflow_id(inp.spec.work_item, run)
    attrs = None
    if await ensure_search_attributes(client):
        attrs = TypedSearchAttributes([
            SearchAttributePair(WORKSTREAM_STATE, RunState.PENDING.value),
            SearchAttributePair(WORK_ITEM, inp.spec.work_item)])
    return await start_orchestration(
        client, WorkstreamWorkflow.run, inp, id=wf_id, settings=settings,
        search_attributes=attrs,
        static_summary=f"workstream {inp.spec.work_item}: {len(inp.spec.steps)} steps")


async def follow_progress(handle: WorkflowHandle[Any, Any], quiet: bool = False,
                          watcher: GateWatcher | None = None) -> Progress:
    """Print each change of the ``progress`` query until the run closes or is
    quarantined; return the last progress. ``watcher`` shows (and on a terminal,
    decides) each step's review gate as it opens."""
    last = ""
    while True:
        desc = await handle.describe()
        progress = await gates.query(handle, WorkstreamWorkflow.progress)
        line = (f"{progress.state.value}: done {len(progress.done)}, running "
                f"{','.join(progress.running) or '-'}, review {','.join(progress.review) or '-'}, "
                f"failed {','.join(progress.failed) or '-'}, blocked "
                f"{','.join(progress.blocked) or '-'}, pending {len(progress.pending)}")
        if line != last and not quiet:
            print(line, flush=True)
        last = line
        if (desc.status != WorkflowExecutionStatus.RUNNING
                or progress.state == RunState.QUARANTINED):
            return progress
        if watcher is not None:
            await watcher.poll(handle)
        await asyncio.sleep(gates.POLL_INTERVAL)


ADMISSION_WAIT = 15.0  # seconds `start` waits for the worker to admit or refuse the run


async def await_admission(handle: WorkflowHandle[Any, Any], wait: float = ADMISSION_WAIT
                          ) -> None:
    """Wait until the worker has checked the run's tools (the run left ``pending``),
    the run ended, or ``wait`` seconds passed (no worker answering: the check
    happens when one does).

    Raises:
        CliError: the worker refused the run (or it failed before it began); the
            message is the run's error, e.g. "refused by the worker's tool
            configuration: tool 'x' is not defined ...".
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while loop.time() < deadline:
        desc = await handle.describe()
        if desc.status == WorkflowExecutionStatus.FAILED:
            try:
                await handle.result()
            except WorkflowFailureError as err:
                raise CliError(failure_message(err)) from None
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return
        try:
            state = await gates.query(handle, WorkstreamWorkflow.state)
        except RPCError:
            return  # no worker answers yet
        if state.state != RunState.PENDING:
            return
        await asyncio.sleep(gates.POLL_INTERVAL)


async def cmd_start(ctx: Context) -> int:
    """``workstream start SPEC``: start the run and wait until the worker admits it
    (a run the worker refuses is one error line and exit 1)."""
    inp = load_input(Path(ctx.args.spec), ctx.settings)
    run_workflow_id(inp.spec.work_item, ctx.args.run)  # a bad suffix fails before connecting
    try:
        handle = await start_workstream(await ctx.client(), ctx.settings, inp, ctx.args.run)
    except WorkflowAlreadyStartedError as err:
        raise CliError(f"{err.workflow_id} already exists; look at it with `python "
                       f"starter.py workstream status {err.workflow_id}`, or run the work "
                       "item again under a new ID with `--run SUFFIX` (e.g. --run 2)"
                       ) from None
    await await_admission(handle)
    ctx.emit({"workflow_id": handle.id, "run_id": handle.result_run_id,
              "ui": ctx.ui_link(handle.id)},
             f"started {handle.id} ({len(inp.spec.steps)} steps)\n  web UI: "
             f"{ctx.ui_link(handle.id)}\n  progress: python starter.py workstream status "
             f"{handle.id}")
    if ctx.args.follow:
        progress = await follow_progress(handle, quiet=ctx.json, watcher=GateWatcher(ctx))
        if progress.state == RunState.SUCCEEDED:
            return 0
        failed = f" (failed: {', '.join(progress.failed)})" if progress.failed else ""
        hint = (f"; resume it with `python starter.py workstream resume {handle.id}`"
                if progress.state == RunState.QUARANTINED else "")
        print(f"error: {handle.id} ended {progress.state.value}{failed}; `python starter.py "
              f"workstream report {handle.id}` shows why{hint}", file=sys.stderr)
        return EXIT_UNSUCCESSFUL
    return 0


async def cmd_status(ctx: Context) -> int:
    """``workstream status ID``: run state and step progress."""
    handle = await ctx.handle(workstream_id(ctx.args.workflow_id))
    progress = await gates.query(handle, WorkstreamWorkflow.progress)
    state = await gates.query(handle, WorkstreamWorkflow.state)

    def text() -> str:
        lines = [f"{handle.id}: {progress.state.value}"
                 + (f" ({state.reason})" if state.reason else "")]
        for name in ("done", "running", "review", "failed", "blocked", "pending"):
            ids = getattr(progress, name)
            lines.append(f"  {name:<8} {len(ids):>3}  {', '.join(ids)}".rstrip())
        for gate in state.pending_gates:
            lines.append(f"  open gate {gate.gate}: {gate.prompt}")
        return "\n".join(lines)

    ctx.emit({"progress": progress, "state": state}, text)
    return 0


def render_markdown(r: WorkstreamReport) -> str:
    """The report as Markdown: summary, steps, attempts, routing decisions, breaker
    trips and the handoff chain."""
    total = ((r.finished_at - r.started_at).total_seconds()
             if r.started_at and r.finished_at else None)
    retries = sum(a.attempts - 1 for a in r.attempts)
    lost = sum(a.infra_retries for a in r.attempts)
    lines = [f"# Workstream {r.work_item}", "",
             f"- workflow: `{r.workflow_id}`", f"- state: **{r.state.value}**"
             + (f" ({r.reason})" if r.reason else ""),
             f"- duration: {f'{total:.1f} s' if total is not None else 'running'}",
             f"- steps: {len(r.steps)}; executions: {len(r.attempts)}; retries: {retries} "
             f"({retries - lost} after failed attempts, {lost} infrastructure); "
             f"breaker trips: {r.breaker_trips}",
             f"- branch: `{r.branch}` in `{r.repo_path}`", "",
             "## Steps", "", "| step | state | executions | attempts | retries | tool | seconds |",
             "|---|---|---|---|---|---|---|"]
    for step, state in r.steps.items():
        atts = [a for a in r.attempts if a.step == step]
        tries = sum(a.attempts for a in atts)
        tools = ", ".join(dict.fromkeys(a.tool for a in atts)) or "-"
        secs = sum(a.seconds for a in atts)
        lines.append(f"| {step} | {state.value} | {len(atts)} | {tries} | "
                     f"{tries - len(atts)} | {tools} | {secs:.2f} |")
    lines += ["", "## Routing decisions", ""]
    lines += [f"- {e.at:%H:%M:%S} `{e.step}`: {e.detail}" for e in r.events
              if e.kind == "routed"] or ["- none"]
    lines += ["", "## Breaker trips", ""]
    lines += [f"- {e.at:%H:%M:%S} `{e.step}`: {e.detail}" for e in r.events
              if e.kind == "breaker"] or ["- none"]
    lines += ["", "## Failures", ""]
    lines += [line for a in r.attempts if a.outcome == "failed"
              for line in failure_lines(a)] or ["- none"]
    lines += ["", "## Infrastructure retries", ""]
    lines += [f"- {e.at:%H:%M:%S} `{e.step}`: {e.detail}" for e in r.events
              if e.kind == "infra_retry"] or ["- none"]
    lines += ["", "## Handoff commits", ""]
    lines += [f"{i}. `{(h.commit or '')[:12]}` {Path(h.path).name} sha256 {h.sha256[:12]}"
              for i, h in enumerate(r.handoffs, 1)] or ["- none"]
    return "\n".join(lines) + "\n"


def failure_lines(a: StepAttempt) -> list[str]:
    """Markdown of one failed execution: the error, the test runner's summary line,
    the logs' artifact paths and the last lines of the output."""
    lines = [f"- `{a.step}` execution {a.number} on {a.tool}: {a.error[:200]}"]
    if a.summary:
        lines.append(f"  - summary: **{a.summary}**")
    logs = [o.path for o in a.outputs if Path(o.path).suffix == ".txt"]
    if logs:
        lines.append(f"  - logs: {', '.join(f'`{p}`' for p in logs)}")
    if a.tail:
        lines += ["", "  ```text", *(f"  {t}" for t in a.tail.splitlines()), "  ```", ""]
    return lines


def report_json(r: WorkstreamReport) -> dict[str, Any]:
    """The report as JSON: summary figures plus the whole report."""
    total = ((r.finished_at - r.started_at).total_seconds()
             if r.started_at and r.finished_at else None)
    return {
        "workflow_id": r.workflow_id, "state": r.state.value, "reason": r.reason,
        "duration_seconds": total, "executions": len(r.attempts),
        "attempts": sum(a.attempts for a in r.attempts),
        "retries": sum(a.attempts - 1 for a in r.attempts),
        "infra_retries": sum(a.infra_retries for a in r.attempts),
        "failed_attempts": sum(a.failed_attempts for a in r.attempts),
        "breaker_trips": r.breaker_trips,
        "routing_decisions": [e.model_dump(mode="json") for e in r.events if e.kind == "routed"],
        "steps": {s: {"state": st.value,
                      "seconds": sum(a.seconds for a in r.attempts if a.step == s)}
                  for s, st in r.steps.items()},
        "report": r.model_dump(mode="json"),
    }


async def cmd_report(ctx: Context) -> int:
    """``workstream report ID [--format markdown|json]``."""
    handle = await ctx.handle(workstream_id(ctx.args.workflow_id))
    report = await gates.query(handle, WorkstreamWorkflow.report)
    if ctx.json or ctx.args.format == "json":
        print(json.dumps(report_json(report), indent=2, default=str))
    else:
        print(render_markdown(report), end="")
    return 0


async def cmd_resume(ctx: Context) -> int:
    """``workstream resume ID``: re-run the failed steps of a quarantined run."""
    handle = await ctx.handle(workstream_id(ctx.args.workflow_id))
    ack = await handle.execute_update(
        WorkstreamWorkflow.resume, ResumeRequest(actor=ctx.args.actor or default_actor(),
                                                 comment=ctx.args.comment or ""))
    ctx.emit(ack, f"resumed {handle.id}; re-running {', '.join(ack.rerun) or 'nothing'}")
    return 0


async def cmd_cancel(ctx: Context) -> int:
    """``workstream cancel ID``: running steps are killed, the run ends canceled."""
    ctx.args.workflow_id = workstream_id(ctx.args.workflow_id)
    return await gates.cmd_cancel(ctx)


async def cmd_verify(ctx: Context) -> int:
    """``workstream verify ID``: check the run's chain of handoff commits; exit 1 and
    name the first bad commit when it is broken."""
    handle = await ctx.handle(workstream_id(ctx.args.workflow_id))
    report = await gates.query(handle, WorkstreamWorkflow.report)
    if not report.workspace or not report.branch:
        raise CliError(f"{handle.id} has no workspace yet; nothing to verify")
    check = await asyncio.to_thread(verify_chain, Path(report.workspace), report.branch,
                                    handle.id, report.handoffs)
    ctx.emit(check, lambda: (f"chain intact: {check.checked} handoff commit(s) on "
                             f"{report.branch}") if check.ok else
             f"chain broken at commit {check.first_bad_commit}: {check.problem} "
             f"({check.checked} good commit(s) before it)")
    return 0 if check.ok else 1


def _decide(verdict: Verdict):
    async def command(ctx: Context) -> int:
        ctx.args.workflow_id = workstream_id(ctx.args.workflow_id)
        if ctx.args.step:
            ctx.args.gate = f"review-{ctx.args.step}"
        return await gates.decide(ctx, verdict)
    return command


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``workstream`` commands."""
    js = json_flag()
    ws = sub.add_parser("workstream", help="the workstream engine (DAG of steps on tools)"
                        ).add_subparsers(dest="workstream_command", required=True)
    p = ws.add_parser("start", help="validate a spec YAML and start its run", parents=[js])
    p.add_argument("spec", help="the workstream spec (YAML)")
    p.add_argument("--follow", action="store_true",
                   help="print progress until the run ends or is quarantined, and each "
                   "step that waits for review with the commands to decide")
    p.add_argument("--run", metavar="SUFFIX",
                   help="run the work item again under the new ID "
                   "workstream-<work item>@SUFFIX (its own workspace and branch)")
    p.set_defaults(command=cmd_start)
    for name, fn, hlp in (("status", cmd_status, "run state and step progress"),
                          ("cancel", cmd_cancel, "cancel the run (kills running steps)"),
                          ("verify", cmd_verify, "check the chain of handoff commits")):
        p = ws.add_parser(name, help=hlp, parents=[js])
        p.add_argument("workflow_id", help="workstream-<work item> (or the work item)")
        p.set_defaults(command=fn)
    p = ws.add_parser("report", help="durations, attempts, retries, trips, routing",
                      parents=[js])
    p.add_argument("workflow_id")
    p.add_argument("--format", choices=["markdown", "json"], default="markdown")
    p.set_defaults(command=cmd_report)
    p = ws.add_parser("resume", help="re-run the failed steps of a quarantined run",
                      parents=[js])
    p.add_argument("workflow_id")
    p.add_argument("--comment", help="why it is safe to resume")
    p.add_argument("--as", dest="actor", help="who resumes (default: your login)")
    p.set_defaults(command=cmd_resume)
    for name, verdict in (("approve", Verdict.APPROVE), ("reject", Verdict.REJECT),
                          ("revise", Verdict.REVISE)):
        p = ws.add_parser(name, help=f"{name} a step at its review gate", parents=[js])
        p.add_argument("workflow_id")
        p.add_argument("--step", help="the step under review (default: the only open gate)")
        p.add_argument("--comment", required=verdict != Verdict.APPROVE)
        gates.add_reviewer_flags(p)
        p.set_defaults(command=_decide(verdict), gate=None, content_file=None)
