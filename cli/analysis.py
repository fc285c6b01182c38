"""``analysis ...``: start the strategic analysis pipeline and act at its gates.

``analysis start --problem FILE [--source PATH ...]`` starts ``AnalysisWorkflow``
with ID ``analysis-<slug>``; ``choose`` (sources and proposal gates), ``answer``
(clarify gate), ``approve`` and ``revise`` (any gate; ``--content-file`` with an
edited outline) decide; ``status`` shows the phase, the open gate and the LLM
ledger; ``result`` prints the report's path.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from temporalio.client import (
    Client,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import ApplicationError

from activities.analysis import read_source, source_files
from cli import gates
from cli.common import (
    CliError,
    Context,
    checked_title,
    checked_workflow_id,
    json_flag,
    start_orchestration,
    with_defaults,
)
from cli.gates import finished_result, open_gate, query
from cli.llm import format_ledger
from cli.review import follow_run
from models.analysis import (
    CLARIFY_GATE,
    PROPOSAL_GATE,
    SOURCES_GATE,
    AnalysisPhase,
    AnalysisRequest,
    AnalysisResult,
    Catalogue,
    ClarifyAnswers,
    LoadSourcesInput,
    ProposalChange,
    SourcesChoice,
)
from models.common import Verdict
from models.sdlc import slugify
from models.text import NotUtf8Error, decode_utf8
from settings import Settings
from temporal_plumbing.search_attributes import ensure_search_attributes
from workflows.analysis import AnalysisWorkflow
from workflows.search_attributes import ANALYSIS_PHASE

DEFAULT_CATALOGUE = Path(__file__).resolve().parent.parent / "catalogue" / "analysis.yaml"


def load_catalogue(path: Path | None) -> Catalogue:
    """The catalogue at ``path`` (default: the shipped one).

    Raises:
        CliError: the file is missing, not YAML, or not a valid catalogue.
    """
    path = path or DEFAULT_CATALOGUE
    try:
        return Catalogue.model_validate(yaml.safe_load(decode_utf8(path.read_bytes(), str(path))))
    except NotUtf8Error as err:
        raise CliError(f"the analysis catalogue {err}; fix ANALYSIS_CATALOGUE") from None
    except OSError as err:
        raise CliError(f"cannot read the analysis catalogue {path}: {err.strerror}; "
                       "fix ANALYSIS_CATALOGUE") from None
    except (yaml.YAMLError, ValidationError) as err:
        first = str(err).splitlines()
        raise CliError(f"the analysis catalogue {path} is invalid: "
                       f"{' '.join(first[:3])}") from None


def existing_paths(paths: list[str]) -> list[str]:
    """Absolute paths of ``paths``, as written (symlinks not resolved), each checked
    as the worker will load it, so a bad one fails here in one line.

    A source is confined to the directory it names, or, for a file, the directory
    that holds it: the path itself may not be a symlink that leads out of it, no
    symlink under a directory may lead out of it (symlinked directories are not
    descended into), and every file must be UTF-8 text of at most
    ``LoadSourcesInput.max_bytes``.

    Raises:
        CliError: a path does not exist, holds no markdown/text file, leaves its
            directory through a symlink, or names a file that is not text, is empty
            or is too large (the message names the file).
    """
    out = []
    limit = LoadSourcesInput.model_fields["max_bytes"].default
    for p in paths:
        path = Path(os.path.abspath(Path(p).expanduser()))
        if not path.exists() and not path.is_symlink():
            raise CliError(f"source {p} does not exist; pass a markdown/text file or a "
                           "directory of them")
        try:
            for file in source_files(path):
                read_source(file, limit)
        except ApplicationError as err:
            raise CliError(err.message) from None
        except OSError as err:
            raise CliError(f"source {path} cannot be read: {err.strerror}") from None
        out.append(str(path))
    return out


def title_of_problem(text: str, fallback: str) -> str:
    """The problem's first markdown heading or first line, else ``fallback``."""
    for line in text.splitlines():
        if line.strip():
            return line.lstrip("#").strip()[:120] or fallback
    return fallback


def analysis_request(settings: Settings, **fields: Any) -> AnalysisRequest:
    """An AnalysisRequest with the workflow-facing settings filled in (explicit fields
    win; None means unset)."""
    defaults: dict[str, Any] = {
        "catalogue": load_catalogue(settings.analysis_catalogue),
        "analyst_concurrency": settings.analysis_concurrency,
        "graceful_degradation": settings.analysis_graceful_degradation,
        "web_search_available": settings.exa_api_key is not None,
        "max_web_searches": settings.analysis_max_web_searches,
        "budget_usd": settings.llm_budget_usd,
        "reminder_interval": settings.gate_reminder_interval,
        "gate_expiry": settings.gate_expiry,
    }
    return with_defaults(AnalysisRequest, defaults, fields)


def analysis_workflow_id(req: AnalysisRequest, slug: str | None = None) -> str:
    """The business key ``analysis-<slug>`` (slug from the title unless given)."""
    return f"analysis-{slug or slugify(req.title, max_words=8)}"


async def start_analysis(client: Client, settings: Settings, req: AnalysisRequest,
                         slug: str | None = None) -> WorkflowHandle[Any, Any]:
    """Start AnalysisWorkflow for ``req``.

    Raises:
        WorkflowAlreadyStartedError: an analysis with that ID exists.
    """
    search_attributes = None
    if await ensure_search_attributes(client):
        search_attributes = TypedSearchAttributes(
            [SearchAttributePair(ANALYSIS_PHASE, AnalysisPhase.STARTED.value)])
    return await start_orchestration(
        client, AnalysisWorkflow.run, req, id=analysis_workflow_id(req, slug),
        settings=settings, search_attributes=search_attributes,
        static_summary=f"Analysis: {req.title}")


async def cmd_start(ctx: Context) -> int:
    """``analysis start``."""
    args = ctx.args
    problem_path = Path(args.problem)
    try:
        problem = decode_utf8(problem_path.read_bytes(), f"the problem file {args.problem}")
    except OSError as err:
        raise CliError(f"cannot read the problem file {args.problem}: {err.strerror}") from None
    except NotUtf8Error as err:
        raise CliError(str(err), code=2) from None
    if not problem.strip():
        raise CliError(f"the problem file {args.problem} is empty; write the problem in it")
    if args.slug:
        try:
            if slugify(args.slug, max_words=20) != args.slug:
                raise ValueError
        except ValueError:
            raise CliError(f"--slug {args.slug!r} must be lowercase words of a-z and 0-9 "
                           "joined by '-'") from None
    if args.web_search and ctx.settings.exa_api_key is None:
        raise CliError("--web-search needs EXA_API_KEY (Exa's API key) in the environment")
    title = (checked_title(args.title) if args.title is not None else
             checked_title(title_of_problem(problem, problem_path.stem), "the problem's title"))
    req = analysis_request(
        ctx.settings, problem=problem, title=title,
        sources=existing_paths(args.source or []), analyst_concurrency=args.concurrency,
        graceful_degradation=True if args.graceful else None,
        web_search=True if args.web_search else None, budget_usd=args.budget)
    checked_workflow_id(analysis_workflow_id(req, args.slug))
    handle = await start_analysis(await ctx.client(), ctx.settings, req, args.slug)
    ctx.emit({"workflow_id": handle.id, "run_id": handle.result_run_id,
              "ui": ctx.ui_link(handle.id)},
             f"started {handle.id}\n  web UI: {ctx.ui_link(handle.id)}\n"
             f"  status: python starter.py analysis status {handle.id}")
    if (notice := ctx.settings.llm_provider_notice()) and not ctx.json:
        print(notice)
    if args.follow:
        return await follow_run(ctx, handle)
    return 0


async def decide(ctx: Context, gate: str, verdict: Verdict, content: Any,
                 comment: str = "") -> int:
    """Send one decision with JSON ``content`` through the validated update."""
    handle = await ctx.handle(ctx.args.workflow_id)
    ack = await gates.send_decision(ctx, handle, gate=gate, verdict=verdict,
                                    comment=ctx.args.comment or comment,
                                    content=content.model_dump_json(exclude_none=True))
    ctx.emit(ack, f"{ack.gate}: {ack.verdict.value} accepted on {handle.id}")
    return 0


async def cmd_choose(ctx: Context) -> int:
    """``analysis choose``: at the sources gate, add documents or enable web search (or
    proceed); at the proposal gate, change synthesizer, template, analysts, web search."""
    args = ctx.args
    add_sources = existing_paths(args.add_source or [])  # before connecting: fail fast
    handle = await ctx.handle(args.workflow_id)
    gate = await open_gate(ctx, handle, args.gate)
    if gate == SOURCES_GATE:
        if args.synthesizer or args.template or args.analyst:
            raise CliError("at the sources gate choose --proceed, --add-source PATH or "
                           "--web-search")
        if add_sources and args.proceed:
            raise CliError("add sources first (the gate stays open to review them), then "
                           "`analysis choose ID --proceed`")
        choice = SourcesChoice(add_sources=add_sources,
                               web_search=bool(args.web_search))
        if not add_sources:
            return await decide(ctx, gate, Verdict.APPROVE, choice)
        # a revise: the gate opens again listing the added sources for review
        await decide(ctx, gate, Verdict.REVISE, choice,
                     "add " + ", ".join(Path(p).name for p in add_sources))
        if not ctx.json:
            print(f"the sources gate stays open: review the added sources with "
                  f"`python starter.py analysis status {handle.id}`, then "
                  f"`python starter.py analysis choose {handle.id} --proceed`")
        return 0
    if gate == PROPOSAL_GATE:
        if args.add_source or args.proceed:
            raise CliError("at the proposal gate choose --synthesizer, --template, "
                           "--analyst or --web-search/--no-web-search (approve accepts)")
        change = ProposalChange(synthesizer=args.synthesizer, template=args.template,
                                analysts=args.analyst, web_search=args.web_search)
        if change == ProposalChange():
            raise CliError("say what to change: --synthesizer, --template, --analyst, "
                           "--web-search or --no-web-search")
        summary = ", ".join(f"{k}={v}" for k, v in change.model_dump(exclude_none=True).items())
        return await decide(ctx, gate, Verdict.REVISE, change, f"changed: {summary}")
    raise CliError(f"`choose` works at the sources and proposal gates; {handle.id} waits at "
                   f"{gate!r} (use approve / revise / answer)")


async def cmd_answer(ctx: Context) -> int:
    """``analysis answer``: answer the clarifying questions."""
    handle = await ctx.handle(ctx.args.workflow_id)
    gate = await open_gate(ctx, handle, CLARIFY_GATE if ctx.args.gate is None else ctx.args.gate)
    return await decide(ctx, gate, Verdict.APPROVE, ClarifyAnswers(answers=ctx.args.answer))


async def cmd_status(ctx: Context) -> int:
    """``analysis status``: phase, open gate (with the questions or proposal), ledger."""
    handle = await ctx.handle(ctx.args.workflow_id)
    desc = await handle.describe()
    state = await query(handle, AnalysisWorkflow.state)
    ledger = await query(handle, AnalysisWorkflow.llm_ledger)
    data = {"workflow_id": handle.id, "status": desc.status.name if desc.status else "UNKNOWN",
            "state": state, "ledger": ledger}

    def text() -> str:
        lines = [f"{handle.id}: {data['status']}, phase {state.phase.value}",
                 f"  synthesizer {state.synthesizer or '-'}, template {state.template or '-'},"
                 f" analysts {', '.join(state.analysts) or '-'}, web search "
                 f"{'on' if state.web_search else 'off'} ({state.searches_used} used)",
                 f"  sources: {'; '.join(state.sources) or '-'}"]
        if state.missing_analysts:
            lines.append(f"  missing analysts: {', '.join(state.missing_analysts)}")
        if state.failure_reason:
            lines.append(f"  failed: {state.failure_reason}")
        for gate in state.pending_gates:
            lines.append(f"  open gate {gate.gate}: {gate.prompt}")
            if gate.gate == CLARIFY_GATE:
                lines += [f"    ? {q}" for q in state.questions]
            if gate.gate == PROPOSAL_GATE and state.proposal:
                lines.append(f"    proposal: {state.proposal}")
            if gate.gate == "outline":
                lines += [f"    {p}" for p in state.outline]
        lines.append("  LLM ledger:")
        lines.append(format_ledger(ledger))
        return "\n".join(lines)

    ctx.emit(data, text)
    return 0


async def cmd_result(ctx: Context) -> int:
    """``analysis result``: the report's path (and its citation map's)."""
    result = AnalysisResult.model_validate(await finished_result(ctx, "analysis status"))
    ctx.emit(result.model_dump(mode="json", exclude={"audit"}),
             f"{result.report.path}\n  citation map: {result.citation_map.path}\n"
             f"  provider: {result.provider}, LLM cost ${result.llm_cost_usd:.4f}"
             + (f"\n  missing analysts: {', '.join(result.missing_analysts)}"
                if result.missing_analysts else ""))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``analysis`` and its subcommands."""
    js = json_flag()
    analysis = sub.add_parser("analysis", help="the strategic analysis pipeline"
                              ).add_subparsers(dest="analysis_command", required=True)
    p = analysis.add_parser("start", help="start an analysis of a problem", parents=[js])
    p.add_argument("--problem", required=True, help="file holding the problem statement")
    p.add_argument("--source", action="append", help="L0 source: a markdown/text file or a "
                   "directory of them (repeatable)")
    p.add_argument("--title", help="short title (default: the problem's first line)")
    p.add_argument("--slug", help="workflow ID slug (default: from the title)")
    p.add_argument("--concurrency", type=int, help="analysts at once (ANALYSIS_CONCURRENCY)")
    p.add_argument("--graceful", action="store_true",
                   help="go on when 2+ analysts fail (ANALYSIS_GRACEFUL_DEGRADATION)")
    p.add_argument("--web-search", action="store_true", help="enable L2 web search now")
    p.add_argument("--budget", type=float, help="LLM budget in USD (LLM_BUDGET_USD)")
    p.add_argument("--follow", action="store_true", help="print each phase until it ends")
    p.set_defaults(command=cmd_start)

    def gate_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("workflow_id")
        p.add_argument("--gate", help="gate name (default: the only open gate)")
        p.add_argument("--comment", help="the reviewer's comment")
        gates.add_reviewer_flags(p)

    p = analysis.add_parser("choose", parents=[js], help="sources gate: --add-source / "
                            "--web-search / --proceed; proposal gate: --synthesizer, "
                            "--template, --analyst, --web-search/--no-web-search")
    gate_args(p)
    p.add_argument("--proceed", action="store_true", help="sources gate: go on as is")
    p.add_argument("--add-source", action="append", help="sources gate: add a document")
    p.add_argument("--web-search", action=argparse.BooleanOptionalAction, default=None,
                   help="enable (or at the proposal gate disable) web search")
    p.add_argument("--synthesizer", help="proposal gate: another synthesizer")
    p.add_argument("--template", help="proposal gate: another report template")
    p.add_argument("--analyst", action="append", help="proposal gate: the analysts "
                   "(repeatable; replaces the list)")
    p.set_defaults(command=cmd_choose)
    p = analysis.add_parser("answer", parents=[js], help="answer the clarifying questions")
    gate_args(p)
    p.add_argument("--answer", action="append", required=True, help="one answer per question")
    p.set_defaults(command=cmd_answer)
    for name, fn, hlp in (("approve", gates.cmd_approve, "approve at the open gate"),
                          ("revise", gates.cmd_revise, "revise with --comment feedback or "
                           "--content-file (an edited outline: '- Heading: claim' lines)")):
        p = analysis.add_parser(name, parents=[js], help=hlp)
        gate_args(p)
        p.add_argument("--content-file", help="file with edited content for the gate")
        p.set_defaults(command=fn)
    p = analysis.add_parser("status", parents=[js], help="phase, open gate and LLM ledger")
    p.add_argument("workflow_id")
    p.set_defaults(command=cmd_status)
    p = analysis.add_parser("result", parents=[js], help="the report's path")
    p.add_argument("workflow_id")
    p.add_argument("--wait", action="store_true", help="wait for a running analysis")
    p.set_defaults(command=cmd_result)


