"""Commands that work on any workflow: status, audit, decisions at gates, list,
result, cancel, and following a run's progress."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
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
from cli.keys import accepted_principals, reviewer_keys, signed_decision
from models.common import AuditEntry, GateAck, GateDecision, GateInfo, Verdict
from models.signatures import GITHUB_PREFIX, KEY_PREFIX
from workflows.gates import GatedWorkflow
from workflows.registry import STATE_QUERIES, workflow_class

POLL_INTERVAL = 0.25  # seconds between progress polls


async def query(handle: WorkflowHandle[Any, Any], query_fn: Callable[..., Any]) -> Any:
    """Run a query with the CLI's timeout (a workflow without a worker never answers).

    Args:
        query_fn: the workflow class's query method (``GatedWorkflow.pending_gates``,
            ``SdlcWorkflow.state``); its return annotation gives the result type. For a
            command that takes any workflow, look the class up by the run's type
            (:func:`workflows.registry.workflow_class`, :data:`~workflows.registry.STATE_QUERIES`).
    """
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
    state_query = STATE_QUERIES.get(workflow_class(desc.workflow_type) or type(None))
    if state_query is None:
        state = {"state": f"(not available: {desc.workflow_type} has no state query)"}
    else:
        try:
            state = (await query(handle, state_query)).model_dump(mode="json")
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
            lines.append(f"    {gate_authentication(info)}")
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


def gate_authentication(info: GateInfo) -> str:
    """One line saying who can decide ``info`` and how they are authenticated."""
    if info.signatures_required:
        return ("decisions must be signed by an allowed key (`key:` principals, "
                "GATE_SIGNERS on the worker) or come from GitHub (`github:`)")
    return ("NOT AUTHENTICATED: anyone who reaches the Temporal server can decide this gate "
            "under any name (set GATE_SIGNERS on the worker to require signed decisions)")


async def gate_info(ctx: Context, handle: WorkflowHandle[Any, Any],
                    gate: str | None) -> GateInfo:
    """The open gate a decision is for: the named one, or the only open one.

    Raises:
        CliError: no gate is open, the named one is not, or several are and none was named.
    """
    gates = await query(handle, GatedWorkflow.pending_gates)
    if gate:
        for info in gates:
            if info.gate == gate:
                return info
        open_now = ", ".join(g.gate for g in gates) or "none"
        raise CliError(f"gate {gate!r} is not open on {handle.id} (open gates: {open_now})")
    if not gates:
        raise CliError(f"no gate is open on {handle.id}; `python starter.py status {handle.id}` "
                       "shows where it is")
    if len(gates) > 1:
        names = ", ".join(g.gate for g in gates)
        raise CliError(f"several gates are open on {handle.id} ({names}); pick one with --gate")
    return gates[0]


async def signing_run_id(handle: WorkflowHandle[Any, Any], info: GateInfo) -> str:
    """The run ID a signed decision for the gate opening ``info`` names: the run the
    gate opened in (``GateInfo.signing_run_id``, kept when the run continues as new,
    so the decision is still taken if it does so before the decision arrives), or the
    current run's ID from a worker that does not report one."""
    return info.signing_run_id or (await handle.describe()).run_id


async def open_gate(ctx: Context, handle: WorkflowHandle[Any, Any], gate: str | None) -> str:
    """The name of the gate a decision is for (see :func:`gate_info`)."""
    return gate or (await gate_info(ctx, handle, gate)).gate


async def send_decision(ctx: Context, handle: WorkflowHandle[Any, Any], *, gate: str | None,
                        verdict: Verdict, comment: str = "",
                        content: str | None = None) -> GateAck:
    """Decide ``gate`` (None = the only open one) through the validated update, signed
    with the reviewer's key when the run requires signatures. Reads ``--as`` and
    ``--key`` from ``ctx.args`` when the command has them.

    Raises:
        CliError: the gate is not open, no key of the reviewer may decide it, signing
            failed, or ``--as`` names a principal this channel cannot prove.
        WorkflowUpdateFailedError: the workflow refused the decision (printed by ``run``).
    """
    info = await gate_info(ctx, handle, gate)
    actor = getattr(ctx.args, "actor", None)
    if info.signatures_required:
        signers = await query(handle, GatedWorkflow.gate_signers)
        decision = signed_decision(
            workflow_id=handle.id, run_id=await signing_run_id(handle, info), gate=info,
            verdict=verdict, comment=comment, content=content,
            keys=reviewer_keys(getattr(ctx.args, "key", None)), signers=signers, actor=actor)
    else:
        if actor and actor.startswith((KEY_PREFIX, GITHUB_PREFIX)):
            raise CliError(f"--as {actor}: {actor.split(':')[0]}: principals are proved by a "
                           "signature or by GitHub; this run takes unsigned decisions, so "
                           "decide under a plain name")
        decision = GateDecision(gate=info.gate, verdict=verdict, actor=actor or default_actor(),
                                comment=comment, content=content)
    return await handle.execute_update(GatedWorkflow.decide_gate, decision)


async def decide(ctx: Context, verdict: Verdict) -> int:
    """Send one GateDecision through the validated update (signed when required)."""
    args = ctx.args
    content = None
    if getattr(args, "content_file", None):
        content = read_text_file(args.content_file, "--content-file")
    handle = await ctx.handle(args.workflow_id)
    ack = await send_decision(ctx, handle, gate=args.gate, verdict=verdict,
                              comment=args.comment or "", content=content)
    ctx.emit(ack, f"{ack.gate}: {ack.verdict.value} accepted on {handle.id}")
    return 0


async def cmd_keys(ctx: Context) -> int:
    """``keys ID``: which of the reviewer's keys each open gate of the run accepts."""
    handle = await ctx.handle(ctx.args.workflow_id)
    signers = await query(handle, GatedWorkflow.gate_signers)
    gates = await query(handle, GatedWorkflow.pending_gates)
    if ctx.args.gate:
        gates = [g for g in gates if g.gate == ctx.args.gate]
    keys = reviewer_keys(ctx.args.key)
    now = datetime.now(UTC)
    configured = bool(signers and signers.configured)

    def key_rows(gate: GateInfo | None) -> list[dict[str, Any]]:
        rows = []
        for key in keys:
            signs_as = accepted_principals(key, signers, None, now) if signers else []
            rows.append({"fingerprint": key.fingerprint, "origin": key.origin,
                         "comment": key.comment, "signs_as": signs_as,
                         "accepted_as": [n for n in signs_as if gate is None or n in
                                         accepted_principals(key, signers, gate, now)]})
        return rows

    data = {"workflow_id": handle.id, "signatures_required": configured,
            "signers_source": signers.source if signers else None,
            "gates": [{"gate": g.gate, "opening": g.opening,
                       "allowed_actors": g.allowed_actors, "keys": key_rows(g)} for g in gates],
            "keys": key_rows(None)}

    def text() -> str:
        if signers is None:
            return (f"{handle.id} has not loaded signers yet (no gate opened), or it started "
                    "before signed decisions existed: its decisions are not authenticated")
        if not configured:
            return (f"{handle.id}: the worker has no GATE_SIGNERS: decisions are not signed "
                    "and anyone who reaches the Temporal server decides")
        lines = [f"{handle.id}: decisions must be signed ({len(signers.signers)} allowed "
                 f"signer key(s) from {signers.source})"]
        if not keys:
            lines.append("  no keys found: pass --key PATH, start ssh-agent, or add "
                         "~/.ssh/*.pub keys")
        for g, gate in zip(data["gates"], gates, strict=True):
            who = ", ".join(gate.allowed_actors) or "any allowed signer"
            lines.append(f"open gate {gate.gate} (opening {gate.opening}; decides: {who})")
            for row in g["keys"] or []:
                verdict = (f"accepted as {', '.join(row['accepted_as'])}" if row["accepted_as"]
                           else f"not accepted (signs as {', '.join(row['signs_as'])})"
                           if row["signs_as"] else "not in the allowed signers")
                lines.append(f"  {row['fingerprint']}  {row['origin']}"
                             + (f" ({row['comment']})" if row["comment"] else "")
                             + f": {verdict}")
        if not gates:
            lines.append("no gate is open; your keys sign as:")
            for row in data["keys"]:
                lines.append(f"  {row['fingerprint']}  {row['origin']}: "
                             + (", ".join(row["signs_as"]) or "not in the allowed signers"))
        return "\n".join(lines)

    ctx.emit(data, text)
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
    # one row per workflow: the runs a workflow closed by continuing as new are left out
    query_text = "ExecutionStatus != 'ContinuedAsNew'"
    if ctx.args.type:
        query_text += f" AND WorkflowType = {visibility_literal(ctx.args.type, '--type')}"
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


def add_reviewer_flags(parser: argparse.ArgumentParser) -> None:
    """``--as`` and ``--key``, for every command that decides a gate."""
    parser.add_argument("--as", dest="actor", help="who decides: a plain name (default: your "
                        "login) when the run takes unsigned decisions; key:<principal> to "
                        "pick one of your key's principals when it requires signatures")
    parser.add_argument("--key", help="SSH key to sign with (private key file, or the .pub "
                        "of an ssh-agent key); default: the first of ssh-agent's and "
                        "~/.ssh's keys the gate accepts")


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
        add_reviewer_flags(p)
        p.add_argument("--content-file", help="file with edited content for the gate")
        p.set_defaults(command=fn)
    p = sub.add_parser("keys", help="which of your SSH keys the open gates of a run accept",
                       parents=[js])
    p.add_argument("workflow_id")
    p.add_argument("--gate", help="only this gate")
    p.add_argument("--key", help="only this key (private key file, or .pub of an agent key); "
                   "default: ssh-agent's and ~/.ssh/*.pub")
    p.set_defaults(command=cmd_keys)
    p = sub.add_parser("list", help="recent workflows", parents=[js])
    p.add_argument("--type", help="only this workflow type, e.g. SdlcWorkflow")
    p.add_argument("--limit", type=positive_int, default=20,
                   help="at most this many workflows, newest first (default 20)")
    p.set_defaults(command=cmd_list)
    p = sub.add_parser("result", help="the result of a finished workflow", parents=[js])
    p.add_argument("workflow_id")
    p.add_argument("--wait", action="store_true", help="wait for a running workflow to finish")
    p.set_defaults(command=cmd_result)
