"""Commands that work on any workflow: status, audit, decisions at gates, list,
result, cancel, and following a run's progress."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from cli.common import (
    QUERY_TIMEOUT,
    CliError,
    Context,
    default_actor,
    json_flag,
    positive_int,
    read_text_file,
    visibility_literal,
)
from models.common import AuditEntry, GateDecision, GateInfo, Verdict
from workflows.gates import GatedWorkflow

POLL_INTERVAL = 0.25  # seconds between progress polls


async def query(handle: WorkflowHandle[Any, Any], query_fn: Callable[..., Any] | str,
                result_type: Any = None) -> Any:
    """Run a query with the CLI's timeout (a workflow without a worker never answers).

    Args:
        query_fn: the workflow class's query method (``GatedWorkflow.pending_gates``;
            its return annotation gives the result type), or a query name for a
            query every orchestration defines under its own class (``state``).
        result_type: the result type of a query given by name (None: raw JSON).
    """
    if isinstance(query_fn, str):
        return await handle.query(query_fn, result_type=result_type, rpc_timeout=QUERY_TIMEOUT)
    return await handle.query(query_fn, rpc_timeout=QUERY_TIMEOUT)


def format_entry(entry: AuditEntry) -> str:
    """One audit entry as a line: time, kind, detail, actor and comment."""
    who = "" if entry.actor == "workflow" else f" [{entry.actor}]"
    comment = f" — {entry.comment}" if entry.comment else ""
    return f"{entry.at:%H:%M:%S} {entry.kind:<14} {entry.detail}{who}{comment}"


async def follow(
    handle: WorkflowHandle[Any, Any],
    on_entry: Callable[[AuditEntry], Any] | None = None,
    quiet: bool = False,
) -> None:
    """Print each new audit entry of a workflow (phase changes, decisions, reminders)
    until it closes. ``on_entry`` is awaited (when a coroutine) for every new entry,
    e.g. to act as a reviewer."""
    seen = 0
    while True:
        desc = await handle.describe()
        try:
            entries = await query(handle, GatedWorkflow.audit_log)
        except Exception:
            entries = []
        for entry in entries[seen:]:
            if not quiet:
                print(format_entry(entry), flush=True)
            if on_entry is not None:
                result = on_entry(entry)
                if asyncio.iscoroutine(result):
                    await result
        seen = max(seen, len(entries))
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return
        await asyncio.sleep(POLL_INTERVAL)


def format_value(value: Any) -> str:
    """A compact one-line rendering of a state field."""
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items() if v not in (None, []))
    if isinstance(value, list):
        return "; ".join(format_value(v) for v in value)
    return str(value)


async def cmd_status(ctx: Context) -> int:
    """``status ID``: execution status, the workflow's state query and open gates."""
    handle = await ctx.handle(ctx.args.workflow_id)
    desc = await handle.describe()
    state: dict[str, Any] = {}
    try:
        state = await query(handle, "state")
    except Exception as err:
        state = {"state": f"(not available: {err})"}
    data = {"workflow_id": handle.id, "type": desc.workflow_type,
            "status": desc.status.name if desc.status else "UNKNOWN",
            "started": desc.start_time, "closed": desc.close_time, "ui": ctx.ui_link(handle.id),
            "state": state}

    def text() -> str:
        lines = [f"{handle.id} ({desc.workflow_type}): {data['status']}"]
        for key, value in state.items():
            if key == "pending_gates":
                continue
            lines.append(f"  {key}: {format_value(value)}")
        for gate in state.get("pending_gates") or []:
            info = GateInfo.model_validate(gate)
            who = ", ".join(info.allowed_actors) or "anyone"
            lines.append(f"  open gate {info.gate}: {info.prompt} (decides: {who}; "
                         f"reminders: {info.reminders_sent})")
        lines.append(f"  web UI: {data['ui']}")
        return "\n".join(lines)

    ctx.emit(data, text)
    return 0


async def cmd_audit(ctx: Context) -> int:
    """``audit ID``: the whole audit log."""
    handle = await ctx.handle(ctx.args.workflow_id)
    entries = await query(handle, GatedWorkflow.audit_log)
    ctx.emit(entries, lambda: "\n".join(format_entry(e) for e in entries) or "(empty)")
    return 0


async def open_gate(ctx: Context, handle: WorkflowHandle[Any, Any], gate: str | None) -> str:
    """The gate a decision is for: the named one, or the only open one.

    Raises:
        CliError: no gate is open, or several are and none was named.
    """
    if gate:
        return gate
    gates = await query(handle, GatedWorkflow.pending_gates)
    if not gates:
        raise CliError(f"no gate is open on {handle.id}; `python starter.py status {handle.id}` "
                       "shows where it is")
    if len(gates) > 1:
        names = ", ".join(g.gate for g in gates)
        raise CliError(f"several gates are open on {handle.id} ({names}); pick one with --gate")
    return gates[0].gate


async def decide(ctx: Context, verdict: Verdict) -> int:
    """Send one GateDecision through the validated update."""
    args = ctx.args
    content = None
    if getattr(args, "content_file", None):
        content = read_text_file(args.content_file, "--content-file")
    handle = await ctx.handle(args.workflow_id)
    decision = GateDecision(
        gate=await open_gate(ctx, handle, args.gate), verdict=verdict,
        actor=args.actor or default_actor(), comment=args.comment or "", content=content,
    )
    ack = await handle.execute_update(GatedWorkflow.decide_gate, decision)
    ctx.emit(ack, f"{ack.gate}: {ack.verdict.value} accepted on {handle.id}")
    return 0


async def cmd_approve(ctx: Context) -> int:
    """``approve ID``."""
    return await decide(ctx, Verdict.APPROVE)


async def cmd_reject(ctx: Context) -> int:
    """``reject ID --comment``."""
    return await decide(ctx, Verdict.REJECT)


async def cmd_revise(ctx: Context) -> int:
    """``revise ID --comment``."""
    return await decide(ctx, Verdict.REVISE)


async def cmd_list(ctx: Context) -> int:
    """``list``: recent workflows, newest first."""
    query_text = (f"WorkflowType = {visibility_literal(ctx.args.type, '--type')}"
                  if ctx.args.type else "")
    client = await ctx.client()
    rows = []
    async for wf in client.list_workflows(query_text or None, limit=ctx.args.limit):
        rows.append({"workflow_id": wf.id, "type": wf.workflow_type,
                     "status": wf.status.name if wf.status else "UNKNOWN",
                     "started": wf.start_time,
                     "search_attributes": {k: v for k, v in wf.search_attributes.items()}})
    def text() -> str:
        lines = []
        for r in rows:
            facts = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                             for k, v in r["search_attributes"].items() if k != "BuildIds")
            lines.append(f"{r['workflow_id']:<50} {r['type']:<20} {r['status']:<10} "
                         f"{r['started']:%Y-%m-%d %H:%M} {facts}".rstrip())
        return "\n".join(lines) or "(no workflows)"

    ctx.emit(rows, text)
    return 0


async def finished_result(ctx: Context, status_command: str = "status") -> Any:
    """The result of ``ctx.args.workflow_id``: waits for it with ``--wait``, else
    refuses a running workflow.

    Raises:
        CliError: it is still running and ``--wait`` was not given (the message names
            ``status_command`` as the way to see where it is).
    """
    handle = await ctx.handle(ctx.args.workflow_id)
    desc = await handle.describe()
    if desc.status == WorkflowExecutionStatus.RUNNING and not ctx.args.wait:
        raise CliError(f"{handle.id} is still running; use --wait, or `{status_command}` to "
                       "see where it is")
    return await handle.result()


async def cmd_result(ctx: Context) -> int:
    """``result ID``: the workflow's result (waits with --wait, else refuses a running one)."""
    result = await finished_result(ctx)
    brief = ({k: v for k, v in result.items() if k != "audit"} if isinstance(result, dict)
             else result)  # the audit log has its own command
    ctx.emit(result, lambda: json.dumps(brief, indent=2, default=str))
    return 0


async def cmd_cancel(ctx: Context) -> int:
    """``cancel ID``: request cancellation (the workflow cleans up and ends CANCELED)."""
    handle = await ctx.handle(ctx.args.workflow_id)
    await handle.cancel()
    ctx.emit({"workflow_id": handle.id, "cancel_requested": True},
             f"cancellation requested for {handle.id}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the generic workflow commands."""
    js = json_flag()
    for name, fn, hlp in (("status", cmd_status, "phase, state and open gates of a workflow"),
                          ("audit", cmd_audit, "every transition and decision of a workflow"),
                          ("cancel", cmd_cancel, "cancel a workflow")):
        p = sub.add_parser(name, help=hlp, parents=[js])
        p.add_argument("workflow_id")
        p.set_defaults(command=fn)
    for name, fn, needs_comment in (("approve", cmd_approve, False),
                                    ("reject", cmd_reject, True),
                                    ("revise", cmd_revise, True)):
        p = sub.add_parser(name, help=f"{name} at an open gate", parents=[js])
        p.add_argument("workflow_id")
        p.add_argument("--gate", help="gate name (default: the only open gate)")
        p.add_argument("--comment", required=needs_comment, help="the reviewer's comment")
        p.add_argument("--as", dest="actor", help="reviewer name (default: your login)")
        p.add_argument("--content-file", help="file with edited content for the gate")
        p.set_defaults(command=fn)
    p = sub.add_parser("list", help="recent workflows", parents=[js])
    p.add_argument("--type", help="only this workflow type, e.g. SdlcWorkflow")
    p.add_argument("--limit", type=positive_int, default=20,
                   help="at most this many workflows, newest first (default 20)")
    p.set_defaults(command=cmd_list)
    p = sub.add_parser("result", help="the result of a finished workflow", parents=[js])
    p.add_argument("workflow_id")
    p.add_argument("--wait", action="store_true", help="wait for a running workflow to finish")
    p.set_defaults(command=cmd_result)
