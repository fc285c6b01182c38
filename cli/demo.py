"""``demo``: the main job end to end on a fresh machine.

Starts the embedded dev server if none answers, runs a worker in this process,
creates a real git repository (or uses --repo), runs SdlcWorkflow with the
offline agent, rejects the first spec once as the demo reviewer, approves the
second, and checks the approved spec's commit is on the feature branch.

With GATE_SIGNERS set, gate decisions must be signed, and the demo reviewer is no
one's key: the demo then makes an ed25519 key of its own for ``demo-reviewer``
(in ``ORCHESTRATOR_HOME/demo``, private), runs its in-process worker with an
allowed-signers file listing only that key, and signs its decisions with it, as
``approve --key`` would. The GATE_SIGNERS file itself is not read or changed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from temporalio.client import WorkflowFailureError, WorkflowHandle

from activities.git import git
from cli.common import QUERY_TIMEOUT, CliError, Context, failure_message
from cli.gates import follow, signing_run_id
from cli.keys import ReviewerKey, signed_decision
from cli.learning import format_progress, learning_config, open_database, start_learning
from cli.sdlc import feature_request, start_sdlc
from cli.server import ensure_dev_server
from models.common import AuditEntry, GateDecision, Verdict
from models.learning import LearningPhase, LearningResult
from models.sdlc import GATE_1, SdlcResult
from models.signatures import public_key_line
from settings import Settings
from workflows.learning_loop import LearningLoopWorkflow
from workflows.sdlc import SdlcWorkflow

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


def demo_signer(settings: Settings, root: Path) -> tuple[Settings, ReviewerKey]:
    """The demo's own signer, for a worker with GATE_SIGNERS: a new ed25519 key of
    ``REVIEWER`` (OpenSSH file, 0600, in a 0700 directory under ``root``), an
    allowed-signers file listing only it, and the settings of the demo's worker with
    that file as GATE_SIGNERS."""
    folder = root / f"signer-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder.mkdir(parents=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    key_file = folder / "demo-reviewer"
    key_file.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH,
                                               NoEncryption()))
    key_file.chmod(0o600)
    public = public_key_line(private.public_key().public_bytes_raw())
    allowed = folder / "allowed_signers"
    allowed.write_text(f"{REVIEWER} {public} demo key\n")
    key = ReviewerKey(public, f"demo key {key_file}", private_path=key_file)
    return settings.model_copy(update={"gate_signers": allowed}), key


async def cmd_demo(ctx: Context) -> int:
    """``demo``: see the module docstring. Exits 0 only when the run is DONE and the
    spec's commit is on the branch."""
    # The worker's activity clients are heavy imports that only the demo needs.
    from worker import make_worker

    if ctx.args.learning:
        return await run_learning_demo(ctx)
    settings = ctx.settings
    ensure_dev_server(settings)
    client = await ctx.client()
    repo = Path(ctx.args.repo).resolve() if ctx.args.repo else make_demo_repo(
        settings.orchestrator_home.resolve() / "demo")
    print(f"repository: {repo}")
    key = None
    if settings.gate_signers is not None:  # decisions must be signed: by a demo key
        settings, key = demo_signer(settings, settings.orchestrator_home.resolve() / "demo")
        print(f"GATE_SIGNERS is set: the demo reviewer signs as key:{REVIEWER} with a key "
              f"made for the demo ({key.private_path}); the demo's worker allows only it",
              flush=True)
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
            decision = GateDecision(gate=GATE_1, verdict=verdict, actor=REVIEWER,
                                    comment=comment)
            if key is not None:
                gates = await handle.query(SdlcWorkflow.pending_gates)
                signers = await handle.query(SdlcWorkflow.gate_signers)
                if signers is None or key.public not in [s.key for s in signers.signers]:
                    raise CliError(
                        "another worker on task queue "
                        f"{settings.temporal_task_queue!r} loaded the run's GATE_SIGNERS, "
                        "which do not list the demo's key: stop it, or give the demo a "
                        "task queue of its own (TEMPORAL_TASK_QUEUE=demo make demo)")
                gate = next(g for g in gates if g.gate == GATE_1)
                decision = signed_decision(
                    workflow_id=handle.id, run_id=await signing_run_id(handle, gate),
                    gate=gate, verdict=verdict,
                    comment=comment, content=None, keys=[key], signers=signers,
                    actor=None)
            await handle.execute_update(SdlcWorkflow.decide_gate, decision)

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


# -- the learning demo --------------------------------------------------------------

DEMO_CURRICULUM = Path(__file__).resolve().parents[1] / "curricula" / "fractions.yaml"


async def run_learning_demo(ctx: Context) -> int:
    """``demo --learning``: import the fractions curriculum, start a loop for a new
    student, let a simulated student (right 85% of the time) answer every test,
    print each step, and end with the mastery table. Exits 0 only when the loop
    ends MASTERED."""
    # Heavy imports only this command needs.
    from activities.curriculum import import_curriculum, read_curriculum
    from simulation.student import SimulatedStudent
    from worker import make_worker

    settings = ctx.settings
    ensure_dev_server(settings)
    client = await ctx.client()
    spec, sha256 = read_curriculum(DEMO_CURRICULUM)
    db = open_database(settings)

    def write() -> None:
        with db.session() as session:
            import_curriculum(session, spec, sha256)

    await asyncio.to_thread(write)
    db.dispose()
    print(f"curriculum {spec.id}: {len(spec.knowledge_components)} KCs imported into "
          f"{settings.learning_database_url}")
    config = learning_config(settings, student=f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
                             curriculum=spec.id)
    async with make_worker(client, settings):
        handle = await start_learning(client, settings, config)
        print(f"workflow {handle.id}\n  web UI: {ctx.ui_link(handle.id)}", flush=True)
        student = SimulatedStudent(client.get_workflow_handle(handle.id),
                                   settings.learning_database_url, p=0.85, seed=5,
                                   name=config.student)
        latest = client.get_workflow_handle(handle.id)
        printer = asyncio.create_task(_print_rounds(latest))
        await student.run(spec.id)
        result = LearningResult.model_validate(await latest.result())
        printer.cancel()
        progress = await latest.query(LearningLoopWorkflow.state)
    print()
    print(format_progress(progress))
    print(f"\n{result.outcome.value} after {result.rounds} round(s), {result.items} item(s) "
          f"answered; the student answered {student.tests} test(s)")
    if progress.last_remediation:
        print(f"  last remediation: {progress.last_remediation.artifact.path}")
    print(f"  web UI: {ctx.ui_link(handle.id)}")
    if result.outcome != LearningPhase.MASTERED:
        raise CliError("the demo student did not reach mastery")
    return 0


async def _print_rounds(handle: WorkflowHandle[Any, Any]) -> None:
    """Print one line per round as the loop goes (rounds run in separate runs)."""
    shown = 0
    while True:
        try:
            progress = await handle.query(LearningLoopWorkflow.state,
                                          rpc_timeout=QUERY_TIMEOUT)
        except Exception:  # noqa: BLE001 - between runs
            progress = None
        if progress is not None and progress.round > shown:
            shown = progress.round
            mastery = " ".join(f"{k.id}={k.mastery:.2f}" for k in progress.kcs)
            print(f"  round {shown}: {mastery}", flush=True)
        await asyncio.sleep(0.05)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    p = sub.add_parser("demo", help="run the main job end to end (starts what it needs)")
    p.add_argument("--repo", help="use this git repository instead of a new one")
    p.add_argument("--learning", action="store_true",
                   help="run the learning loop with a simulated student instead")
    p.set_defaults(command=cmd_demo)
