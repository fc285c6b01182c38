"""``demo``: the main job end to end on a fresh machine.

Starts the embedded dev server if none answers, runs a worker in this process,
creates a real git repository (or uses --repo), runs SdlcWorkflow with the
offline agent, rejects the first spec once as the demo reviewer, approves the
second, and checks the approved spec's commit is on the feature branch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from temporalio.client import WorkflowFailureError

from activities.git import git
from cli.common import CliError, Context, failure_message
from cli.gates import follow
from cli.sdlc import feature_request, start_sdlc
from cli.server import ensure_dev_server
from models.common import AuditEntry, GateDecision, Verdict
from models.sdlc import GATE_1, SdlcResult
from workflows.gates import GATE_UPDATE

REVIEWER = "demo-reviewer"
FEEDBACK = "Say how the export handles an empty selection and very large result sets."
DEMO_TITLE = "Export search results as CSV"
DEMO_DESCRIPTION = (
    "Users can download the current search results as a CSV file. The export keeps the "
    "column order shown on screen. Dates are written in ISO 8601."
)


def make_demo_repo(root: Path) -> Path:
    """A new git repository with a README and a small Python package, on ``main``."""
    repo = root / f"demo-repo-{time.strftime('%Y%m%d-%H%M%S')}"
    (repo / "search").mkdir(parents=True)
    (repo / "README.md").write_text("# Search service\n\nA small search service used by the "
                                    "Durable Orchestrator demo.\n")
    (repo / "search" / "__init__.py").write_text('"""Search results."""\n')
    (repo / "search" / "results.py").write_text(
        "def search(items, term):\n    return [i for i in items if term in i]\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=Demo", "-c", "user.email=demo@example.invalid",
        "commit", "-q", "-m", "Initial commit")
    return repo


async def cmd_demo(ctx: Context) -> int:
    """``demo``: see the module docstring. Exits 0 only when the run is DONE and the
    spec's commit is on the branch."""
    from worker import make_worker

    if ctx.args.learning:
        from cli.learning import run_learning_demo

        return await run_learning_demo(ctx)
    settings = ctx.settings
    ensure_dev_server(settings)
    client = await ctx.client()
    repo = Path(ctx.args.repo).resolve() if ctx.args.repo else make_demo_repo(
        settings.orchestrator_home.resolve() / "demo")
    print(f"repository: {repo}")
    req = feature_request(settings, title=DEMO_TITLE, description=DEMO_DESCRIPTION,
                          repo_path=str(repo), agent="offline",
                          slug=f"csv-export-{int(time.time())}" if ctx.args.repo else None)
    async with make_worker(client, settings):
        handle = await start_sdlc(client, settings, req)
        print(f"workflow {handle.id}\n  web UI: {ctx.ui_link(handle.id)}", flush=True)
        reviewed = 0

        async def review(entry: AuditEntry) -> None:
            nonlocal reviewed
            if entry.kind != "gate_opened" or not entry.detail.startswith(GATE_1):
                return
            reviewed += 1
            verdict, comment = ((Verdict.REJECT, FEEDBACK) if reviewed == 1
                                else (Verdict.APPROVE, "Covers the edge cases now."))
            print(f"  demo reviewer: {verdict.value} ({comment})", flush=True)
            await handle.execute_update(GATE_UPDATE, GateDecision(
                gate=GATE_1, verdict=verdict, actor=REVIEWER, comment=comment))

        await follow(handle, on_entry=review)
        try:
            result = SdlcResult.model_validate(await handle.result())
        except WorkflowFailureError as err:
            raise CliError(f"the SDLC run failed: {failure_message(err)}") from None
    assert result.branch and result.spec and result.spec.commit
    on_branch = result.branch.name in git(
        repo, "branch", "--contains", result.spec.commit, "--format=%(refname:short)"
    ).splitlines()
    print(f"\n{result.phase.value} after {result.rounds} round(s)")
    print(f"  spec:   {result.spec.path}")
    print(f"  commit: {result.spec.commit} on branch {result.branch.name}")
    print(f"  issue:  #{result.issue.number if result.issue else '-'} ({settings.issues_root})")
    print(f"  web UI: {ctx.ui_link(handle.id)}")
    if result.phase.value != "DONE" or not on_branch:
        raise CliError("the demo did not end DONE with the spec committed on the branch")
    print("the dev server keeps running for the web UI; stop it with "
          "`python starter.py dev-server --stop`")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    p = sub.add_parser("demo", help="run the main job end to end (starts what it needs)")
    p.add_argument("--repo", help="use this git repository instead of a new one")
    p.add_argument("--learning", action="store_true",
                   help="run the learning loop with a simulated student instead")
    p.set_defaults(command=cmd_demo)
