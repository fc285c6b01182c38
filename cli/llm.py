"""``budget ID``: decide at the ``budget`` gate of any workflow that calls an LLM
(raise the budget, or stop the run), and ``ledger ID``: its LLM costs per phase."""

from __future__ import annotations

import argparse

from cli import gates
from cli.common import CliError, Context, json_flag
from cli.gates import query
from models.common import Verdict
from models.llm import LlmLedger
from workflows.llm import BUDGET_GATE, LlmWorkflow


def format_ledger(ledger: LlmLedger) -> str:
    """The ledger as lines: one per phase, then the total against the budget."""
    lines = [f"  {p.phase:<24} {p.calls:>3} call(s) {p.input_tokens:>8} in {p.output_tokens:>7}"
             f" out  ${p.cost_usd:.4f}" + (
                 f"  (cache: {p.cache_write_tokens} written, {p.cache_read_tokens} read)"
                 if p.cache_write_tokens or p.cache_read_tokens else "")
             for p in ledger.by_phase]
    budget = f"${ledger.budget_usd:.4f}" if ledger.budget_usd is not None else "unlimited"
    providers = ", ".join(sorted({e.provider for e in ledger.entries})) or "-"
    lines.append(f"  total ${ledger.total_usd:.4f} of budget {budget} (provider: {providers})")
    return "\n".join(lines)


async def cmd_ledger(ctx: Context) -> int:
    """``ledger ID``: every LLM call summed per phase, total and budget."""
    handle = await ctx.handle(ctx.args.workflow_id)
    ledger = await query(handle, LlmWorkflow.llm_ledger)
    ctx.emit(ledger, lambda: f"{handle.id} LLM ledger\n{format_ledger(ledger)}")
    return 0


async def cmd_budget(ctx: Context) -> int:
    """``budget ID --usd N`` raises the budget; ``budget ID --stop --comment`` stops."""
    args = ctx.args
    if args.stop == (args.usd is not None):
        raise CliError("give either --usd N (the new budget) or --stop --comment WHY")
    handle = await ctx.handle(args.workflow_id)
    ack = await gates.send_decision(
        ctx, handle, gate=BUDGET_GATE, verdict=Verdict.REJECT if args.stop else Verdict.APPROVE,
        comment=args.comment or "", content=None if args.stop else str(args.usd))
    ctx.emit(ack, f"{ack.gate}: {ack.verdict.value} accepted on {handle.id}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``budget`` and ``ledger``."""
    p = sub.add_parser("budget", help="raise the LLM budget of a run waiting at its budget "
                       "gate, or stop it", parents=[json_flag()])
    p.add_argument("workflow_id")
    p.add_argument("--usd", type=float, help="the new budget in USD (above what was spent)")
    p.add_argument("--stop", action="store_true", help="stop the run instead (needs --comment)")
    p.add_argument("--comment", help="why")
    gates.add_reviewer_flags(p)
    p.set_defaults(command=cmd_budget)
    p = sub.add_parser("ledger", help="LLM calls, tokens and USD per phase of a run",
                       parents=[json_flag()])
    p.add_argument("workflow_id")
    p.set_defaults(command=cmd_ledger)
