"""People at the gates: following a run gate by gate, ``review ID`` and ``inbox``.

* :class:`GateWatcher` shows each gate of a run as it opens (what is asked, the
  artifact to judge, who may decide, the exact commands) and, on a terminal,
  asks approve / reject / revise / skip and sends the decision as the reviewer
  through the same validated update as ``approve`` (so whatever ``approve`` adds,
  such as signing, applies). Without a terminal it prints the commands and the
  caller goes on waiting.
* :func:`follow_run` is ``--follow`` of every start command: the audit log and the
  gates until the run closes, then the exit code of :func:`run_outcome` (0 only
  when the run ends in its success state).
* ``inbox [--as alice]`` lists every open gate of every orchestration from the
  ``OpenGates`` / ``GateReviewers`` / ``GateOpenedAt`` search attributes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, get_type_hints

from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError

from cli import gates
from cli.common import (
    CliError,
    Context,
    default_actor,
    failure_message,
    json_flag,
    positive_int,
    visibility_literal,
)
from models.analysis import AnalysisPhase
from models.common import GateInfo, Verdict
from models.learning import LearningPhase
from models.sdlc import SdlcPhase
from models.workstream import RunState
from workflows.analysis import AnalysisWorkflow
from workflows.gates import GATE_SIGNAL, GATE_UPDATE, GatedWorkflow
from workflows.learning_loop import LearningLoopWorkflow
from workflows.registry import workflow_class
from workflows.sdlc import SdlcWorkflow
from workflows.search_attributes import ANYONE, GATE_OPENED_AT, GATE_REVIEWERS, OPEN_GATES
from workflows.workstream import WorkstreamWorkflow

EXIT_UNSUCCESSFUL = 3
"""Exit code of ``--follow`` / ``review`` when the run ended, but not in its success
state (FAILED, CANCELED, quarantined, ROUND_LIMIT...); 1 is an error, 2 bad input."""

SUCCESS_STATES: dict[type, tuple[Callable[[Any], StrEnum], StrEnum]] = {
    SdlcWorkflow: (lambda r: r.phase, SdlcPhase.DONE),
    AnalysisWorkflow: (lambda r: r.phase, AnalysisPhase.DONE),
    LearningLoopWorkflow: (lambda r: r.outcome, LearningPhase.MASTERED),
    WorkstreamWorkflow: (lambda r: r.state, RunState.SUCCEEDED),
}
"""Per orchestration: where its result (the model its ``run`` returns) says how it
ended, and the value that means success."""


def age(opened_at: datetime, now: datetime | None = None) -> str:
    """``opened_at`` as an age: ``45s``, ``12m``, ``3h05m``, ``2d04h``."""
    seconds = max(0, int(((now or datetime.now(UTC)) - opened_at).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def is_test_gate(gate: str) -> bool:
    """Whether ``gate`` is a learning loop's test (answered, not approved)."""
    return gate.startswith("TEST-")


def gate_commands(workflow_id: str, gate: str, actor: str | None = None) -> list[str]:
    """The exact commands that decide ``gate`` of ``workflow_id``."""
    who = f" --as {actor}" if actor else ""
    base = "python starter.py"
    if is_test_gate(gate):
        return [f"{base} learn test {workflow_id}",
                f"{base} learn answer {workflow_id} --item ITEM --answer ANSWER{who}",
                f"{base} learn study STUDENT"]
    cmds = [f"{base} approve {workflow_id} --gate {gate}{who}",
            f'{base} revise {workflow_id} --gate {gate}{who} --comment "what to change"',
            f'{base} reject {workflow_id} --gate {gate}{who} --comment "why"']
    if gate == "budget":
        cmds[0] += " --content-file NEW_BUDGET_USD.txt"
    return cmds


def format_gate(workflow_id: str, info: GateInfo, actor: str | None = None) -> str:
    """A gate as a block of lines: prompt, artifact, who may decide, commands."""
    who = ", ".join(info.allowed_actors) or "anyone"
    lines = [f"== gate {info.gate} is open on {workflow_id} (for {age(info.opened_at)}): "
             f"{info.prompt or 'waiting for a decision'}"]
    if info.artifact:
        lines.append(f"   to judge: {info.artifact}")
    lines.append(f"   who may decide: {who}")
    if info.expires_at is not None:
        lines.append(f"   expires: {info.expires_at:%Y-%m-%d %H:%M} UTC")
    lines += [f"   {cmd}" for cmd in gate_commands(workflow_id, info.gate, actor)]
    lines.append(f"   web UI: Send an Update `{GATE_UPDATE}` (or a Signal `{GATE_SIGNAL}`) "
                 f"with {info.decision_json}")
    return "\n".join(lines)


class GateWatcher:
    """Shows each gate of a run once, as it opens; on a terminal, asks for the
    decision.

    Args:
        ctx: the command's context (its client, ``--json``).
        interactive: ask on the terminal (None: when stdin and stdout are terminals
            and output is not JSON).
        actor: who decides (default: ``--as``, else the login name).
    """

    def __init__(self, ctx: Context, interactive: bool | None = None,
                 actor: str | None = None) -> None:
        self.ctx = ctx
        self.interactive = (sys.stdin.isatty() and sys.stdout.isatty() and not ctx.json
                            if interactive is None else interactive)
        self.actor = actor or getattr(ctx.args, "actor", None) or default_actor()
        self._shown: set[tuple[str, str]] = set()

    async def poll(self, handle: WorkflowHandle[Any, Any]) -> None:
        """Show (and on a terminal, decide) the gates opened since the last poll."""
        try:
            infos = await gates.query(handle, GatedWorkflow.pending_gates)
        except RPCError:
            return  # no worker answers right now; try again at the next poll
        for info in infos:
            key = (info.gate, info.opened_at.isoformat())
            if key in self._shown:
                continue
            self._shown.add(key)
            if not self.ctx.json:
                print(format_gate(handle.id, info, None if not self.interactive
                                  else self.actor), flush=True)
            if self.interactive and not is_test_gate(info.gate):
                await self.ask(handle, info)

    async def ask(self, handle: WorkflowHandle[Any, Any], info: GateInfo) -> None:
        """Ask approve / reject / revise / skip and send the decision as ``actor``;
        the end of input (Ctrl-D) skips, and stops asking."""
        try:
            await self._ask(handle, info)
        except EOFError:
            self.interactive = False
            print(f"\n   no more input; {info.gate} stays open", flush=True)

    async def _ask(self, handle: WorkflowHandle[Any, Any], info: GateInfo) -> None:
        verdicts = {"a": Verdict.APPROVE, "approve": Verdict.APPROVE, "r": Verdict.REJECT,
                    "reject": Verdict.REJECT, "v": Verdict.REVISE, "revise": Verdict.REVISE}
        while True:
            answer = (await ask_line(
                f"{info.gate}: [a]pprove, [r]eject, re[v]ise or [s]kip? ")).lower()
            if answer in ("s", "skip", ""):
                print(f"   skipped; {info.gate} stays open", flush=True)
                return
            if answer in verdicts:
                break
        verdict = verdicts[answer]
        comment = ""
        if verdict != Verdict.APPROVE:
            while not comment:
                comment = await ask_line("comment (what to change, why): ")
        else:
            comment = await ask_line("comment (enter for none): ")
        saved = self.ctx.args
        self.ctx.args = argparse.Namespace(**{**vars(saved), "workflow_id": handle.id,
                                              "gate": info.gate, "comment": comment,
                                              "actor": self.actor, "content_file": None})
        try:
            await gates.decide(self.ctx, verdict)
        except WorkflowUpdateFailedError as err:
            print(f"   refused: {failure_message(err)}", flush=True)
            self._shown.discard((info.gate, info.opened_at.isoformat()))  # ask again
        finally:
            self.ctx.args = saved


async def ask_line(prompt: str) -> str:
    """One line typed at the terminal, stripped (the prompt goes to stdout, where
    the gate was shown; ``input``'s own prompt may go to stderr). End of input is
    raises EOFError."""
    print(prompt, end="", flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    if not line:
        raise EOFError
    return line.strip()


async def run_outcome(handle: WorkflowHandle[Any, Any]) -> tuple[bool, str]:
    """Whether a closed run ended in its success state, and a one-line account.

    Success is the result state of :data:`SUCCESS_STATES` (DONE, succeeded,
    MASTERED); a failed, cancelled or terminated run is never a success; a run of
    a type this project does not host succeeds when it completes.
    """
    desc = await handle.describe()
    status = desc.status.name if desc.status else "UNKNOWN"
    try:
        raw = await handle.result()
    except WorkflowFailureError as err:
        return False, f"{handle.id} ended {status}: {failure_message(err)}"
    cls = workflow_class(desc.workflow_type)
    if cls not in SUCCESS_STATES:
        return True, f"{handle.id} ended {status}"
    ended_as, wanted = SUCCESS_STATES[cls]
    # the model the class's run returns (the handle is untyped: it follows any run)
    result = get_type_hints(cls.run)["return"].model_validate(raw)
    state = ended_as(result)
    return state == wanted, f"{handle.id} ended {state.value}"


async def follow_run(ctx: Context, handle: WorkflowHandle[Any, Any],
                     interactive: bool | None = None) -> int:
    """Print each audit entry and each gate as it opens until the run closes
    (following continue-as-new), then its outcome.

    Returns:
        0 when the run ended in its success state; EXIT_UNSUCCESSFUL otherwise
        (the reason is printed on stderr).
    """
    client = await ctx.client()
    latest = client.get_workflow_handle(handle.id)  # the newest run, across continue-as-new
    watcher = GateWatcher(ctx, interactive)
    printed: set[tuple[str, str, str]] = set()
    while True:
        desc = await latest.describe()
        try:
            entries = await gates.query(latest, GatedWorkflow.audit_log)
        except RPCError:
            entries = []
        for entry in entries:
            key = (entry.at.isoformat(), entry.kind, entry.detail)
            if key not in printed:
                printed.add(key)
                if not ctx.json:
                    print(gates.format_entry(entry), flush=True)
        if desc.status != WorkflowExecutionStatus.RUNNING:
            break
        await watcher.poll(latest)
        await asyncio.sleep(gates.POLL_INTERVAL)
    ok, account = await run_outcome(latest)
    if ok:
        if not ctx.json:
            print(account, flush=True)
        return 0
    print(f"error: {account}", file=sys.stderr)
    return EXIT_UNSUCCESSFUL


async def cmd_review(ctx: Context) -> int:
    """``review ID``: show each gate of the run as it opens and decide it at the
    terminal (or print the commands), until the run ends."""
    handle = await ctx.handle(ctx.args.workflow_id)
    return await follow_run(ctx, handle, interactive=False if ctx.args.no_input else None)


async def cmd_inbox(ctx: Context) -> int:
    """``inbox [--as WHO]``: every open gate of every running orchestration (the
    ones WHO may decide with --as), oldest first."""
    query = f"ExecutionStatus = 'Running' AND {OPEN_GATES.name} IS NOT NULL"
    if ctx.args.actor:
        query += (f" AND {GATE_REVIEWERS.name} IN "
                  f"({visibility_literal(ctx.args.actor, '--as')}, '{ANYONE}')")
    client = await ctx.client()
    rows: list[dict[str, Any]] = []
    try:
        async for wf in client.list_workflows(query, limit=ctx.args.limit):
            attrs = wf.typed_search_attributes
            handle = client.get_workflow_handle(wf.id)
            try:
                infos = await gates.query(handle, GatedWorkflow.pending_gates)
            except RPCError:  # no worker answers: what the attributes say
                infos = [GateInfo(gate=g, opened_at=attrs.get(GATE_OPENED_AT) or wf.start_time,
                                  allowed_actors=[r for r in attrs.get(GATE_REVIEWERS) or []
                                                  if r != ANYONE])
                         for g in attrs.get(OPEN_GATES) or []]
            for info in infos:
                if ctx.args.actor and info.allowed_actors and \
                        ctx.args.actor not in info.allowed_actors:
                    continue
                rows.append({"workflow_id": wf.id, "type": wf.workflow_type,
                             **info.model_dump(mode="json"), "age": age(info.opened_at),
                             "commands": gate_commands(wf.id, info.gate, ctx.args.actor)})
    except RPCError as err:
        if "OpenGates" in err.message or "not defined" in err.message:
            raise CliError("the server has no OpenGates search attribute yet; start the "
                           "worker (it registers them) or `python starter.py dev-server`"
                           ) from None
        raise
    rows.sort(key=lambda r: r["opened_at"])

    def text() -> str:
        if not rows:
            who = f" for {ctx.args.actor}" if ctx.args.actor else ""
            return f"(no open gates{who})"
        out = []
        for r in rows:
            info = GateInfo.model_validate(r)
            out.append(format_gate(r["workflow_id"], info, ctx.args.actor))
        return "\n".join(out)

    ctx.emit(rows, text)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``review`` and ``inbox``."""
    p = sub.add_parser("review", help="show each gate of a run as it opens and decide it "
                       "(prompts on a terminal)", parents=[json_flag()])
    p.add_argument("workflow_id")
    p.add_argument("--as", dest="actor", help="reviewer name (default: your login)")
    p.add_argument("--no-input", action="store_true",
                   help="never prompt; print the commands and keep waiting")
    p.set_defaults(command=cmd_review)
    p = sub.add_parser("inbox", help="every open gate across orchestrations, oldest first",
                       parents=[json_flag()])
    p.add_argument("--as", dest="actor", help="only the gates this person may decide")
    p.add_argument("--limit", type=positive_int, default=100,
                   help="at most this many workflows (default 100)")
    p.set_defaults(command=cmd_inbox)
