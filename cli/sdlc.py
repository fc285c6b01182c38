"""``sdlc start``: run a feature request through SdlcWorkflow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from cli.common import (
    CliError,
    Context,
    checked_title,
    checked_workflow_id,
    json_flag,
    read_text_file,
    start_orchestration,
    with_defaults,
)
from cli.review import follow_run
from models.sdlc import FeatureRequest, SdlcPhase, slugify
from settings import Settings
from temporal_plumbing.search_attributes import ensure_search_attributes
from workflows.sdlc import SdlcWorkflow
from workflows.search_attributes import SDLC_PHASE


def sdlc_workflow_id(req: FeatureRequest) -> str:
    """The business key ``sdlc-<repository name>-<slug>``."""
    return f"sdlc-{slugify(Path(req.repo_path).name, max_words=10)}-{req.effective_slug()}"


def feature_request(settings: Settings, **fields: Any) -> FeatureRequest:
    """A FeatureRequest with the workflow-facing settings filled in (explicit fields win)."""
    defaults = {
        "agent": settings.agent_runner, "max_rounds": settings.sdlc_max_rounds,
        "reminder_interval": settings.gate_reminder_interval, "gate_expiry": settings.gate_expiry,
        "agent_timeout": settings.agent_timeout,
        "comment_poll_interval": settings.github_poll_interval,
    }
    return with_defaults(FeatureRequest, defaults, fields)


async def start_sdlc(client: Client, settings: Settings, req: FeatureRequest
                     ) -> WorkflowHandle[Any, Any]:
    """Start SdlcWorkflow for ``req`` with ID ``sdlc-<repo>-<slug>``.

    Raises:
        WorkflowAlreadyStartedError: that feature was started before.
    """
    search_attributes = None
    if await ensure_search_attributes(client):
        search_attributes = TypedSearchAttributes(
            [SearchAttributePair(SDLC_PHASE, SdlcPhase.IDLE.value)])
    return await start_orchestration(
        client, SdlcWorkflow.run, req, id=sdlc_workflow_id(req), settings=settings,
        search_attributes=search_attributes, static_summary=f"SDLC: {req.title}")


async def cmd_start(ctx: Context) -> int:
    """``sdlc start``."""
    args = ctx.args
    repo = Path(args.repo).resolve()
    if not (repo / ".git").exists():
        raise CliError(f"{repo} is not a git repository; pass --repo with the path of one")
    title = checked_title(args.title)
    description = args.description or ""
    if args.description_file:
        description = read_text_file(args.description_file, "--description-file")
    req = feature_request(
        ctx.settings, title=title, description=description, repo_path=str(repo),
        base_branch=args.base, slug=args.slug or slugify(title), agent=args.agent,
        max_rounds=args.max_rounds, reviewers=args.reviewer or [],
    )
    checked_workflow_id(sdlc_workflow_id(req))
    handle = await start_sdlc(await ctx.client(), ctx.settings, req)
    link = ctx.ui_link(handle.id)
    ctx.emit({"workflow_id": handle.id, "run_id": handle.result_run_id, "ui": link},
             f"started {handle.id}\n  web UI: {ctx.ui_link(handle.id)}\n"
             f"  approve: python starter.py approve {handle.id}")
    if args.follow:
        return await follow_run(ctx, handle)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``sdlc start``."""
    sdlc = sub.add_parser("sdlc", help="the SDLC orchestration").add_subparsers(
        dest="sdlc_command", required=True)
    p = sdlc.add_parser("start", help="start a feature request", parents=[json_flag()])
    p.add_argument("--title", required=True, help="one-line feature title")
    p.add_argument("--description", help="the request in prose")
    p.add_argument("--description-file", help="file holding the request")
    p.add_argument("--repo", default=".", help="local git repository (default: .)")
    p.add_argument("--base", default="main", help="base branch (default: main)")
    p.add_argument("--slug", help="branch slug (default: from the title)")
    p.add_argument("--agent", choices=["offline", "command", "claude", "anthropic"],
                   help="agent runner (default: AGENT_RUNNER)")
    p.add_argument("--max-rounds", type=int, help="spec rounds before FAILED")
    p.add_argument("--reviewer", action="append", help="who may decide at GATE_1 (repeatable)")
    p.add_argument("--follow", action="store_true", help="print each phase until the run ends")
    p.set_defaults(command=cmd_start)
