"""Record workflow histories for the replay tests: ``python tests/replay/record.py [NAME...]``
(names: the keys of ``SCENARIOS``; default all).

Runs each scenario on a fresh dev server with the real activities and saves
its history as JSON under ``tests/replay/histories/``; name scenarios to record
only those (``python tests/replay/record.py sdlc_github``). Re-record only on purpose:
a saved history is what proves that a workflow change stays replay-safe (a
change to the command sequence must go behind ``workflow.patched``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cli.sdlc import feature_request, start_sdlc  # noqa: E402
from models.common import GateDecision, GateInfo, Verdict  # noqa: E402
from models.sdlc import GATE_1  # noqa: E402
from settings import Settings  # noqa: E402
from temporal_plumbing.environments import start_local_env  # noqa: E402
from tests.github_server import GitHubServer  # noqa: E402
from tests.learning_support import imported_database  # noqa: E402
from worker import make_worker  # noqa: E402
from workflows.analysis import AnalysisWorkflow  # noqa: E402
from workflows.gates import GATE_SIGNAL, GATE_UPDATE  # noqa: E402

HISTORIES = Path(__file__).resolve().parent / "histories"


def save(name: str, history_json: str) -> None:
    """Write a new history ``name`` under ``histories/``; the directory is append-only,
    so an existing history is never overwritten (name a changed scenario anew).

    Raises:
        FileExistsError: ``name`` was recorded before.
    """
    path = HISTORIES / name
    if path.exists():
        raise FileExistsError(f"{path} exists: histories are append-only; record the "
                              "changed scenario under a new name")
    path.write_text(history_json)


def new_repository(repo: Path) -> None:
    """Create ``repo`` as a git repository on ``main`` with one empty commit."""
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["-c", "user.name=R", "-c", "user.email=r@x",
                                                 "commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True)


@contextlib.asynccontextmanager
async def local_worker(settings: Settings) -> AsyncIterator[Client]:
    """A fresh local dev server and a worker with ``settings`` on it, both stopped on
    exit; yields the server's client."""
    env = await start_local_env()
    try:
        async with make_worker(env.client, settings):
            yield env.client
    finally:
        await env.shutdown()


async def record_sdlc(workdir: Path) -> None:
    """SDLC: reject once, then approve, with the offline agent."""
    repo = workdir / "replay-repo"
    new_repository(repo)
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay",
                        workstream_trust_spec_tools=True)
    async with local_worker(settings) as client:
        handle = await start_sdlc(client, settings, feature_request(
            settings, title="Add CSV export", description="Export as CSV.",
            repo_path=str(repo)))
        for verdict, comment in ((Verdict.REJECT, "more detail"), (Verdict.APPROVE, "ok")):
            while not await handle.query("pending_gates", result_type=list[GateInfo]):
                await asyncio.sleep(0.05)
            await handle.execute_update(GATE_UPDATE, GateDecision(
                gate=GATE_1, verdict=verdict, actor="recorder", comment=comment))
            await asyncio.sleep(0.3)
        await handle.result()
        history = await handle.fetch_history()
    save("sdlc_reject_then_approve.json", history.to_json())


async def record_analysis(workdir: Path) -> None:
    """Analysis: add a source at the sources gate, revise the outline once, approve the
    rest, with the offline LLM provider."""
    from cli.analysis import analysis_request, start_analysis
    from tests.workflows.analysis_harness import FIXTURES, decision, drive
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay", llm_provider="offline")
    async with local_worker(settings) as client:
        req = analysis_request(settings, problem=(FIXTURES / "problem.md").read_text(),
                               title="German market entry",
                               sources=[str(FIXTURES / "german-e-invoicing.md")])
        handle = await start_analysis(client, settings, req)
        await drive(handle, {
            "sources": [decision("sources", content={
                "add_sources": [str(FIXTURES / "competitors.md")]})],
            "outline": [decision("outline", Verdict.REVISE, "name the DATEV point"),
                        decision("outline")]})
        await handle.result()
        history = await handle.fetch_history()
    save("analysis_sources_outline_revise.json", history.to_json())


async def record_analysis_sources_review(workdir: Path) -> None:
    """Analysis: a source added at the sources gate reopens it for review (patch
    ``sources-gate-reviews-added-sources``); the reviewer then proceeds."""
    from cli.analysis import analysis_request, start_analysis
    from tests.workflows.analysis_harness import FIXTURES, decision, drive
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay", llm_provider="offline")
    async with local_worker(settings) as client:
        req = analysis_request(settings, problem=(FIXTURES / "problem.md").read_text(),
                               title="German market entry review",
                               sources=[str(FIXTURES / "german-e-invoicing.md")])
        handle = await start_analysis(client, settings, req)
        await drive(handle, {"sources": [
            decision("sources", Verdict.REVISE, "add competitors", content={
                "add_sources": [str(FIXTURES / "competitors.md")]}),
            decision("sources")]})
        await handle.result()
        history = await handle.fetch_history()
    save("analysis_sources_added_reviewed.json", history.to_json())


async def record_learning(workdir: Path) -> None:
    """Learning loop: two rounds (the first answered partly wrong, so it remediates),
    an override, items generated through the LLM layer in round 2 (the bank runs
    short), then the round limit; saves both runs (continue-as-new between them)."""
    from cli.learning import learning_config, start_learning
    from models.learning import Answer, OpenTest, SetMastery, SubmitAnswers
    from workflows.learning_loop import SUBMIT_ANSWERS

    url = f"sqlite:///{workdir / 'learning.db'}"
    imported_database(url).dispose()
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay",
                        database_url=url)
    async with local_worker(settings) as client:
        handle = await start_learning(client, settings, learning_config(
            settings, student="replay", curriculum="fractions", max_rounds=2,
            items_per_test=4))
        latest = client.get_workflow_handle(handle.id)
        for number, answer in ((1, "1/4"), (2, "7")):
            while True:
                test = await latest.query("open_test", result_type=OpenTest | None)
                if test is not None and test.round == number:
                    break
                await asyncio.sleep(0.05)
            if number == 2:
                await latest.execute_update("set_mastery", SetMastery(
                    kc="equivalent-fractions", mastery=0.5, actor="recorder"))
            await latest.execute_update(SUBMIT_ANSWERS, SubmitAnswers(answers=[
                Answer(item=i.id, answer=answer) for i in test.items]))
        await latest.result()
        first = client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        save("learning_loop_round_1.json",
             (await first.fetch_history()).to_json())
        save("learning_loop_round_2.json",
             (await latest.fetch_history()).to_json())


async def record_workstream(workdir: Path) -> None:
    """Workstream: a diamond with a retried step, a gate review (approved) and a
    breaker-guarded tool; also saves the (still running) breaker workflow's history,
    after a second run tripped a breaker and its cool-down timer fired."""
    from cli.workstream import start_workstream
    from models.workstream import Progress, RouterConfig, WorkstreamInput, WorkstreamSpec

    spec = WorkstreamSpec.model_validate({"work_item": "replay", "max_parallel": 2, "steps": [
        {"id": "a", "kind": "shell", "inputs": {"script": "echo a"}},
        {"id": "b", "kind": "shell", "depends_on": ["a"],
         "inputs": {"script": 'test "$WORKSTREAM_ATTEMPT" -ge 2'},
         "retry": {"max_attempts": 3, "initial_interval": 0.1}},
        {"id": "c", "kind": "shell", "depends_on": ["a"], "gate": True,
         "inputs": {"script": "echo c"}},
        {"id": "d", "kind": "shell", "depends_on": ["b", "c"], "inputs": {"argv": ["true"]}},
    ]})
    router = RouterConfig.model_validate({
        "tools": {"sh": {"adapter": "shell", "breaker": {"failure_threshold": 2}},
                  "broken": {"adapter": "shell",
                             "breaker": {"failure_threshold": 1, "cool_down_seconds": 1}}},
        "routes": {"shell": {"strategy": "fixed", "tools": ["sh"]},
                   "broken": {"strategy": "fixed", "tools": ["broken"]}}})
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay",
                        workstream_trust_spec_tools=True)
    async with local_worker(settings) as client:
        handle = await start_workstream(client, settings, WorkstreamInput(
            spec=spec, router=router, spec_dir=str(workdir)))
        while "c" not in (await handle.query("progress", result_type=Progress)).review:
            await asyncio.sleep(0.05)
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate="review-c", verdict=Verdict.APPROVE, actor="recorder"))
        await handle.result()
        history = await handle.fetch_history()
        # trip the `broken` tool's breaker; its 1 s cool-down timer half-opens it
        failing = await start_workstream(client, settings, WorkstreamInput(
            spec=WorkstreamSpec.model_validate({"work_item": "replay-trip", "steps": [
                {"id": "x", "kind": "broken", "inputs": {"script": "exit 1"}}]}),
            router=router, spec_dir=str(workdir)))
        try:
            await failing.result()
        except Exception:  # noqa: BLE001 - it is meant to fail
            pass
        await asyncio.sleep(2)
        breaker = await client.get_workflow_handle(
            "workstream-breakers-replay").fetch_history()
    save("workstream_diamond_retry_gate.json", history.to_json())
    save("workstream_breaker.json", breaker.to_json())


async def record_workstream_user_steps(workdir: Path) -> None:
    """Workstream as users write it, run again under ``--run 2``: a python step whose
    module a shell step wrote into the workspace, an agent step with its own
    instructions and output path (offline runner), a route written inline among
    the worker's tools, and a failing test step (its summary in the report)."""
    from cli.workstream import start_workstream
    from models.workstream import (
        DEFAULT_ROUTER_CONFIG,
        RouterConfig,
        WorkstreamInput,
        WorkstreamSpec,
    )

    spec = WorkstreamSpec.model_validate({
        "work_item": "replay-user", "routes": {"check": {"tools": ["shell"]}}, "steps": [
            {"id": "write", "kind": "shell", "inputs": {
                "script": "printf 'def double(n):\\n    return {\"n\": n * 2}\\n' > wsmod.py"}},
            {"id": "calc", "kind": "python", "depends_on": ["write"],
             "inputs": {"callable": "wsmod:double", "kwargs": {"n": 21}}},
            {"id": "notes", "kind": "agent", "inputs": {
                "title": "Notes", "instructions": "Write release notes.",
                "output": "docs/notes.md"}},
            {"id": "tests", "kind": "check", "depends_on": ["calc", "notes"],
             "inputs": {"script": "echo '1 failed, 2 passed in 0.01s'; exit 1"}}]})
    router = RouterConfig.model_validate({
        "tools": DEFAULT_ROUTER_CONFIG["tools"],
        "routes": {**DEFAULT_ROUTER_CONFIG["routes"], "check": {"tools": ["shell"]}}})
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay", workstream_python_modules=["wsmod"])
    async with local_worker(settings) as client:
        handle = await start_workstream(client, settings, WorkstreamInput(
            spec=spec, router=router, spec_dir=str(workdir)), run="2")
        try:
            await handle.result()
        except Exception:  # noqa: BLE001 - the test step is meant to fail
            pass
        save("workstream_user_steps.json", (await handle.fetch_history()).to_json())


async def record_workstream_continue_as_new(workdir: Path) -> None:
    """Workstream with a history budget of 100 events (patch
    ``workstream-continue-as-new``): a review step waits while a chain of noop steps
    runs, so the run continues as new between scheduling waves with the review gate
    open; the reviewer revises, then approves, in a later run. Saves every run (the
    first ends continued as new, later ones start from the carried state, some with
    the review gate reopened as it was)."""
    from cli.workstream import start_workstream
    from models.workstream import (
        DEFAULT_ROUTER_CONFIG,
        Progress,
        RouterConfig,
        WorkstreamInput,
        WorkstreamSpec,
    )

    spec = WorkstreamSpec.model_validate({
        "work_item": "replay-bounded", "max_parallel": 1, "steps": [
            {"id": "draft", "kind": "shell", "gate": True, "priority": 1,
             "inputs": {"script": "echo draft > draft.txt"}},
            *({"id": f"c{i}", "kind": "noop", **({"depends_on": [f"c{i - 1}"]} if i else {})}
              for i in range(8)),
            {"id": "publish", "kind": "shell", "depends_on": ["draft", "c7"],
             "inputs": {"script": "cat draft.txt"}}]})
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay-bounded")
    async with local_worker(settings) as client:
        handle = await start_workstream(client, settings, WorkstreamInput(
            spec=spec, router=RouterConfig.model_validate(DEFAULT_ROUTER_CONFIG),
            spec_dir=str(workdir), history_budget=100))
        latest = client.get_workflow_handle(handle.id)
        for verdict, comment in ((Verdict.REVISE, "say hello"), (Verdict.APPROVE, "ok")):
            while True:
                try:
                    progress = await latest.query("progress", result_type=Progress,
                                                  rpc_timeout=timedelta(seconds=3))
                except Exception:  # noqa: BLE001 - asked as the run continued as new
                    continue
                if progress.review == ["draft"] and len(progress.done) == 8:
                    break
                await asyncio.sleep(0.1)
            await latest.execute_update(GATE_UPDATE, GateDecision(
                gate="review-draft", verdict=verdict, actor="recorder", comment=comment))
            await asyncio.sleep(0.5)
        await latest.result()
        run_id, number = handle.result_run_id, 0
        while run_id:  # every run, following each one's continued-as-new event
            number += 1
            history = await client.get_workflow_handle(
                handle.id, run_id=run_id).fetch_history()
            save(f"workstream_continue_as_new_run_{number}.json", history.to_json())
            last = history.events[-1]
            run_id = (last.workflow_execution_continued_as_new_event_attributes
                      .new_execution_run_id)


@contextlib.asynccontextmanager
async def github_worker(workdir: Path, name: str
                        ) -> AsyncIterator[tuple[Client, GitHubServer, Settings, Path]]:
    """A local dev server, the local GitHub server (alice may write) and a worker using
    it, for an SDLC scenario on a new repository ``replay-<name>-repo`` pushed to a bare
    ``origin``; yields the client, the GitHub server, the settings and the repository."""
    repo, remote = workdir / f"replay-{name}-repo", workdir / f"remote-{name}.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    new_repository(repo)
    for args in (["remote", "add", "origin", str(remote)], ["push", "-q", "origin", "main"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    with GitHubServer() as server:
        server.gh.permissions["alice"] = "write"
        settings = Settings(orchestrator_home=workdir / f"home-{name}",
                            temporal_task_queue=f"replay-{name}",
                            github_token=server.gh.token,
                            github_repository=server.gh.full_name,
                            github_api_url=server.api_url,
                            github_poll_interval=timedelta(milliseconds=300))
        async with local_worker(settings) as client:
            yield client, server, settings, repo


async def record_sdlc_github(workdir: Path) -> None:
    """SDLC with GitHub (the local GitHub server): `/revise` by comment, then `/approve`,
    through the long-running comment watch (sdlc_github_revise_then_approve.json is
    the same scenario recorded before it, with polls on a timer)."""
    async with github_worker(workdir, "gh") as (client, server, settings, repo):
        handle = await start_sdlc(client, settings, feature_request(
            settings, title="Add CSV export", description="Export as CSV.",
            repo_path=str(repo)))
        for body in ("/revise more detail", "/approve"):
            while not await handle.query("pending_gates", result_type=list[GateInfo]):
                await asyncio.sleep(0.05)
            server.gh.add_comment(1, "alice", body)
            await asyncio.sleep(1.0)
        await handle.result()
        history = await handle.fetch_history()
    save("sdlc_github_watch_revise_then_approve.json", history.to_json())


async def record_sdlc_github_replies(workdir: Path) -> None:
    """SDLC with GitHub (the local GitHub server), patches ``sdlc-github-replies-posted-
    once`` and ``sdlc-reminder-reapplies-label``: a `/reject` without a reason is refused
    and its reply posted by the reply task; a reminder (every second) comments and
    re-applies the phase label a person deleted; then `/approve`."""
    async with github_worker(workdir, "gh-replies") as (client, server, settings, repo):
        handle = await start_sdlc(client, settings, feature_request(
            settings, title="Add CSV export", description="Export as CSV.",
            repo_path=str(repo), reminder_interval=timedelta(seconds=1)))
        while not await handle.query("pending_gates", result_type=list[GateInfo]):
            await asyncio.sleep(0.05)
        server.gh.add_comment(1, "alice", "/reject")
        server.gh.delete_label("sdlc:gate-1")
        while not any(c["body"].startswith("Reminder 2")
                      for c in server.gh.comments_on(1)):
            await asyncio.sleep(0.1)
        server.gh.add_comment(1, "alice", "/approve")
        await handle.result()
        history = await handle.fetch_history()
    save("sdlc_github_reply_reminder_label.json", history.to_json())


async def record_sdlc_signals(workdir: Path) -> None:
    """SDLC decided by signals: at GATE_1 a malformed payload, an unknown verdict, a
    misspelt signal name (all refused), then a revise; then an approve."""
    repo = workdir / "replay-signals-repo"
    new_repository(repo)
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay")
    async with local_worker(settings) as client:
        handle = await start_sdlc(client, settings, feature_request(
            settings, title="Add CSV export", description="Export as CSV.",
            repo_path=str(repo)))
        for round_, decision in ((1, {"gate": GATE_1, "verdict": "revise",
                                      "actor": "recorder", "comment": "more detail"}),
                                 (2, {"gate": GATE_1, "verdict": "approve",
                                      "actor": "recorder"})):
            while not await handle.query("pending_gates", result_type=list[GateInfo]):
                await asyncio.sleep(0.05)
            if round_ == 1:
                await handle.signal(GATE_SIGNAL, {"foo": 1})
                await handle.signal(GATE_SIGNAL, {"gate": GATE_1, "verdict": "maybe",
                                                  "actor": "recorder"})
                await handle.signal("gate_decison", decision)
            await handle.signal(GATE_SIGNAL, decision)
            await asyncio.sleep(0.5)
        await handle.result()
        history = await handle.fetch_history()
    save("sdlc_signals_refused_then_decided.json", history.to_json())


async def record_analysis_grounded(workdir: Path) -> None:
    """Analysis with the grounded offline provider on examples/analysis (the
    citation-support patch: support checked, uncited sources and frameworks listed)."""
    from cli.analysis import analysis_request, start_analysis
    from tests.workflows.analysis_harness import EXAMPLE, drive
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay", llm_provider="offline")
    async with local_worker(settings) as client:
        docs = sorted(str(p) for p in EXAMPLE.glob("*.md") if p.name != "problem.md")
        req = analysis_request(settings, problem=(EXAMPLE / "problem.md").read_text(),
                               title="Reset link signing", sources=docs)
        handle = await start_analysis(client, settings, req)
        await drive(handle)
        await handle.result()
        history = await handle.fetch_history()
    save("analysis_grounded_citation_support.json", history.to_json())


async def record_analysis_by_reference(workdir: Path) -> None:
    """Analysis with source texts and feedback by reference (patch
    ``analysis-private-data-by-reference``): texts loaded into the artifact store,
    the proposal revised with feedback and the outline revised twice (feedback files
    passed by reference), citation support checked in an activity."""
    from cli.analysis import analysis_request, start_analysis
    from tests.workflows.analysis_harness import FIXTURES, decision, drive
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay", llm_provider="offline")
    async with local_worker(settings) as client:
        req = analysis_request(settings, problem=(FIXTURES / "problem.md").read_text(),
                               title="German market entry by reference",
                               sources=[str(FIXTURES / "german-e-invoicing.md"),
                                        str(FIXTURES / "competitors.md")])
        handle = await start_analysis(client, settings, req)
        await drive(handle, {
            "proposal": [decision("proposal", Verdict.REVISE, "keep it short"),
                         decision("proposal")],
            "outline": [decision("outline", Verdict.REVISE, "name the DATEV point"),
                        decision("outline", Verdict.REVISE, "and the 2028 deadline"),
                        decision("outline")]})
        await handle.result()
        history = await handle.fetch_history()
    save("analysis_by_reference.json", history.to_json())


async def record_analysis_continue_as_new(workdir: Path) -> None:
    """Analysis whose outline gate, revised six times by signal with a history budget
    of 150 events, continues as new (patch ``analysis-gates-continue-as-new``): the
    first run (ends continued as new) and the last (resumes at the gate, finishes)."""
    from cli.analysis import analysis_request, start_analysis
    from tests.workflows.analysis_harness import FIXTURES, decision
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay", llm_provider="offline")
    async with local_worker(settings) as client:
        req = analysis_request(settings, problem=(FIXTURES / "problem.md").read_text(),
                               title="German market entry continued",
                               sources=[str(FIXTURES / "german-e-invoicing.md")],
                               history_budget=150)
        handle = await start_analysis(client, settings, req)
        rounds = [decision("outline", Verdict.REVISE, f"round {n}") for n in range(6)]
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            for gate in await handle.query(AnalysisWorkflow.pending_gates):
                await handle.signal(GATE_SIGNAL, rounds.pop(0) if gate.gate == "outline"
                                    and rounds else decision(gate.gate))
                await asyncio.sleep(0.3)
            await asyncio.sleep(0.1)
        await handle.result()
        first = await client.get_workflow_handle(
            handle.id, run_id=handle.first_execution_run_id).fetch_history()
        last = await handle.fetch_history()
    assert first.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    save("analysis_continue_as_new_first_run.json", first.to_json())
    save("analysis_continue_as_new_last_run.json", last.to_json())


TEMPLATED_CURRICULUM = {
    "id": "sums", "title": "Sums", "knowledge_components": [{
        "id": "like-sums", "name": "Adding fractions with like denominators",
        "misconceptions": [{"id": "adds-denominators", "description": "adds both"}],
        "items": [{"id": "ls-1", "prompt": "What is the top number of a fraction called?",
                   "answer_type": "free_text", "answer": "numerator"}],
        "templates": [{
            "id": "ls-t", "prompt": "What is {a}/{d} + {b}/{d}?", "answer_type": "numeric",
            "variables": {"a": {"min": 1, "max": 5}, "b": {"min": 1, "max": 5},
                          "d": {"min": 3, "max": 12}},
            "constraints": ["a + b < d"], "answer": "frac(a + b, d)"}]}]}


async def record_learning_templates(workdir: Path) -> None:
    """Learning loop, one round offline (the item-templates patch): the test's
    shortfall drawn from an item template, a free-text answer accepted as
    equivalent without the LLM grader, the round limit."""
    import json

    from cli.learning import learning_config, start_learning
    from models.learning import Answer, OpenTest, SubmitAnswers
    from workflows.learning_loop import SUBMIT_ANSWERS

    path = workdir / "sums.json"
    path.write_text(json.dumps(TEMPLATED_CURRICULUM))
    url = f"sqlite:///{workdir / 'learning.db'}"
    imported_database(url, path).dispose()
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay", database_url=url, llm_provider="offline")
    async with local_worker(settings) as client:
        handle = await start_learning(client, settings, learning_config(
            settings, student="replay", curriculum="sums", max_rounds=1,
            items_per_test=3, llm_grading=True))
        while (test := await handle.query("open_test", result_type=OpenTest | None)) is None:
            await asyncio.sleep(0.05)
        await handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(answers=[
            Answer(item=i.id, answer="The numerator." if i.id == "ls-1" else "1/2")
            for i in test.items]))
        await handle.result()
        save("learning_loop_item_templates.json",
            (await handle.fetch_history()).to_json())


async def record_learning_canceled(workdir: Path) -> None:
    """Learning loop cancelled while its test waits for answers (patch
    ``learning-cancel-ends-canceled``): the test closed as canceled, phase CANCELED,
    the run cancelled."""
    from cli.learning import learning_config, start_learning
    from models.learning import OpenTest

    url = f"sqlite:///{workdir / 'learning.db'}"
    imported_database(url).dispose()
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay", database_url=url, llm_provider="offline")
    async with local_worker(settings) as client:
        handle = await start_learning(client, settings, learning_config(
            settings, student="replay", curriculum="fractions", max_rounds=2,
            items_per_test=2))
        while await handle.query("open_test", result_type=OpenTest | None) is None:
            await asyncio.sleep(0.05)
        await handle.cancel()
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await asyncio.sleep(0.05)
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
        save("learning_loop_canceled_at_test.json",
             (await handle.fetch_history()).to_json())


async def record_workstream_admission(workdir: Path) -> None:
    """Workstream with the worker's tool check (patch ``worker-tool-authority``): a
    run the worker admits (a shell and a python step) and one it refuses (a tool
    it does not define, ``os:system``)."""
    from cli.workstream import start_workstream
    from models.workstream import (
        DEFAULT_ROUTER_CONFIG,
        RouterConfig,
        WorkstreamInput,
        WorkstreamSpec,
    )

    mod = "tests.workflows.workstream_callables"
    allowed = WorkstreamInput(spec=WorkstreamSpec.model_validate({
        "work_item": "replay-admitted", "steps": [
            {"id": "sh", "kind": "shell", "inputs": {"script": "echo ok"}},
            {"id": "py", "kind": "python", "depends_on": ["sh"], "inputs": {
                "callable": f"{mod}:area", "kwargs": {"width": 2, "height": 3}}}]}),
        router=RouterConfig.model_validate(DEFAULT_ROUTER_CONFIG), spec_dir=str(workdir))
    refused = WorkstreamInput(spec=WorkstreamSpec.model_validate({
        "work_item": "replay-refused", "steps": [
            {"id": "own", "kind": "mine", "inputs": {"script": "echo stolen"}},
            {"id": "sys", "kind": "python", "inputs": {"callable": "os:system"}}]}),
        router=RouterConfig.model_validate({
            "tools": {"mine": {"adapter": "shell", "secrets": ["GITHUB_TOKEN"]},
                      "python": {"adapter": "python"}},
            "routes": {"mine": {"tools": ["mine"]}, "python": {"tools": ["python"]}}}),
        spec_dir=str(workdir))
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay-adm",
                        workstream_python_modules=[mod])
    async with local_worker(settings) as client:
        for inp, name in ((allowed, "allowed"), (refused, "refused")):
            handle = await start_workstream(client, settings, inp)
            try:
                await handle.result()
            except Exception:  # noqa: BLE001 - the refused run is meant to fail
                pass
            save(f"workstream_admission_{name}.json",
                 (await handle.fetch_history()).to_json())


async def record_faults(workdir: Path) -> None:
    """Failure paths (patches ``step-infra-retry``, ``end-removes-worktree``,
    ``failed-run-removes-worktree``): a workstream on a worktree whose step fails
    once (counted, backed off, retried by the workflow) and whose next step fails
    for good (the run ends failed and removes its worktree); an SDLC run rejected
    at its only round (FAILED, worktree removed)."""
    from cli.workstream import start_workstream
    from models.workstream import (
        DEFAULT_ROUTER_CONFIG,
        RouterConfig,
        WorkstreamInput,
        WorkstreamSpec,
    )

    repo = workdir / "replay-faults-repo"
    new_repository(repo)
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay")
    async with local_worker(settings) as client:
        handle = await start_workstream(client, settings, WorkstreamInput(
            spec=WorkstreamSpec.model_validate({"work_item": "replay-faults", "steps": [
                {"id": "flaky", "kind": "shell",
                 "inputs": {"script": 'test "$WORKSTREAM_ATTEMPT" -ge 2'},
                 "retry": {"max_attempts": 2, "initial_interval": 0.1}},
                {"id": "broken", "kind": "shell", "depends_on": ["flaky"],
                 "inputs": {"script": "exit 3"}}]}),
            router=RouterConfig.model_validate(DEFAULT_ROUTER_CONFIG),
            repo_path=str(repo), spec_dir=str(workdir)))
        try:
            await handle.result()
        except Exception:  # noqa: BLE001 - it is meant to fail
            pass
        save("workstream_retry_then_fail_removes_worktree.json",
            (await handle.fetch_history()).to_json())
        sdlc = await start_sdlc(client, settings, feature_request(
            settings, title="Add XML export", description="Export as XML.",
            repo_path=str(repo), max_rounds=1))
        while not await sdlc.query("pending_gates", result_type=list[GateInfo]):
            await asyncio.sleep(0.05)
        await sdlc.execute_update(GATE_UPDATE, GateDecision(
            gate=GATE_1, verdict=Verdict.REJECT, actor="recorder", comment="no"))
        try:
            await sdlc.result()
        except Exception:  # noqa: BLE001 - it is meant to fail
            pass
        save("sdlc_reject_fails_removes_worktree.json",
            (await sdlc.fetch_history()).to_json())


async def record_sdlc_gate_inbox(workdir: Path) -> None:
    """SDLC with a named reviewer on a server with our search attributes (patch
    ``gate-search-attributes``): GATE_1 sets OpenGates, GateReviewers and
    GateOpenedAt while it is open and unsets them once approved."""
    repo = workdir / "replay-repo"
    new_repository(repo)
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay")
    async with local_worker(settings) as client:
        handle = await start_sdlc(client, settings, feature_request(
            settings, title="Add JSON export", description="Export as JSON.",
            repo_path=str(repo), reviewers=["alice"]))
        while not await handle.query("pending_gates", result_type=list[GateInfo]):
            await asyncio.sleep(0.05)
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate=GATE_1, verdict=Verdict.APPROVE, actor="alice", comment="ok"))
        await handle.result()
        save("sdlc_gate_search_attributes.json",
            (await handle.fetch_history()).to_json())


async def record_sdlc_signed(workdir: Path) -> None:
    """SDLC with GATE_SIGNERS: the signers loaded before the gate (patch gate-signers),
    an unsigned update refused and audited, then alice's signed approval."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from models.signatures import (
        DecisionSignature,
        decision_message,
        public_key_line,
        sign,
    )
    repo = workdir / "replay-repo"
    new_repository(repo)
    alice = Ed25519PrivateKey.generate()
    allowed = workdir / "allowed_signers"
    allowed.write_text(f"alice {public_key_line(alice.public_key().public_bytes_raw())}\n")
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay",
                        workstream_trust_spec_tools=True, gate_signers=allowed)
    async with local_worker(settings) as client:
        handle = await start_sdlc(client, settings, feature_request(
            settings, title="Add CSV export", description="Export as CSV.",
            repo_path=str(repo), reviewers=["key:alice"]))
        while not (gates := await handle.query("pending_gates",
                                               result_type=list[GateInfo])):
            await asyncio.sleep(0.05)
        try:
            await handle.execute_update(GATE_UPDATE, GateDecision(
                gate=GATE_1, verdict=Verdict.APPROVE, actor="alice"))
        except Exception:  # noqa: BLE001 - refused, as recorded
            pass
        run_id = (await handle.describe()).run_id
        now = datetime.now(UTC).replace(microsecond=0)
        message = decision_message(workflow_id=handle.id, run_id=run_id, gate=GATE_1,
                                   opening=gates[0].opening, verdict="approve",
                                   actor="key:alice", comment="ok", content=None,
                                   signed_at=now)
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate=GATE_1, verdict=Verdict.APPROVE, actor="key:alice", comment="ok",
            signature=DecisionSignature(workflow_id=handle.id, run_id=run_id,
                                        opening=gates[0].opening, signed_at=now,
                                        sshsig=sign(alice, message))))
        await handle.result()
        history = await handle.fetch_history()
    # the signatures are bound to the workflow ID: the replay test reads it from here
    save("sdlc_signed_decision.json", json.dumps(
        {**json.loads(history.to_json()), "workflowId": handle.id}))


async def record_learning_signed_overrides(workdir: Path) -> None:
    """Learning loop with GATE_SIGNERS (patch ``learning-signed-overrides``): the signers
    loaded at the run's start, an unsigned ``pause`` refused and audited, alice's signed
    ``set_mastery`` (through the CLI's signing), then the round's answers."""
    from cli.learning import learning_config, send_override, start_learning
    from models.learning import Answer, OpenTest, PauseResume, SetMastery, SubmitAnswers
    from workflows.learning_loop import SUBMIT_ANSWERS, LearningLoopWorkflow

    url = f"sqlite:///{workdir / 'learning-signed.db'}"
    imported_database(url).dispose()
    alice, allowed = reviewer_key_file(workdir, "alice")
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay-ls",
                        database_url=url, gate_signers=allowed)
    async with local_worker(settings) as client:
        handle = await start_learning(client, settings, learning_config(
            settings, student="replay-signed", curriculum="fractions", max_rounds=1,
            items_per_test=3, teachers=["alice"]))
        while (test := await handle.query("open_test", result_type=OpenTest | None)) is None:
            await asyncio.sleep(0.05)
        try:
            await handle.execute_update("pause", PauseResume(actor="alice"))
        except Exception:  # noqa: BLE001 - refused, as recorded
            pass
        await send_override(handle, "set_mastery", LearningLoopWorkflow.set_mastery,
                            SetMastery(kc=test.kc, mastery=0.5, reason="checked"),
                            None, str(alice.private_path))
        await handle.execute_update(SUBMIT_ANSWERS, SubmitAnswers(answers=[
            Answer(item=i.id, answer="1/2") for i in test.items]))
        await handle.result()
        history = await handle.fetch_history()
    # the signature is bound to the workflow ID: the replay test reads it from here
    save("learning_loop_signed_overrides.json", json.dumps(
        {**json.loads(history.to_json()), "workflowId": handle.id}))


async def record_analysis_budget_continue_as_new(workdir: Path) -> None:
    """Analysis whose budget gate, reached while the analysts run one at a time (each
    approve raises the budget just above the spend), waits with a reminder a second
    and a history budget of 100 events until the run continues as new there (patch
    ``analysis-budget-gate-continues-as-new``), then is approved; every run of the
    chain is saved (the second resumes at the budget gate and runs the analysts left)."""
    from cli.analysis import analysis_request, start_analysis
    from models.llm import ModelPrice
    from tests.workflows.analysis_harness import DEFAULTS, FIXTURES, decision
    base = Settings(_env_file=None)
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay", llm_provider="offline",
                        llm_prices={m: ModelPrice(input=100, output=100)
                                    for m in base.llm_prices})
    async with local_worker(settings) as client:
        req = analysis_request(settings, problem=(FIXTURES / "problem.md").read_text(),
                               title="German market entry on a budget",
                               sources=[str(FIXTURES / "german-e-invoicing.md")],
                               budget_usd=0.02, analyst_concurrency=1,
                               history_budget=100, reminder_interval=timedelta(seconds=1))
        handle = await start_analysis(client, settings, req)
        first = handle.first_execution_run_id or handle.result_run_id
        assert first
        first_run = client.get_workflow_handle(handle.id, run_id=first)
        waiting = False
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            for gate in await handle.query(AnalysisWorkflow.pending_gates):
                chosen = DEFAULTS.get(gate.gate, decision(gate.gate))
                if gate.gate == "budget":
                    state = await handle.query(AnalysisWorkflow.state)
                    if state.phase == "ANALYSTS" and state.analysts_done:
                        waiting = True
                    if waiting and (await first_run.describe()).status \
                            == WorkflowExecutionStatus.RUNNING:
                        continue  # reminders until it continues as new
                    if not waiting:
                        spent = (await handle.query(AnalysisWorkflow.llm_ledger)).total_usd
                        chosen = decision("budget", content=f"{spent + 1e-4}")
                await handle.signal(GATE_SIGNAL, chosen)
                await asyncio.sleep(0.3)
            await asyncio.sleep(0.1)
        await handle.result()
        history = await first_run.fetch_history()
        assert history.events[-1].HasField(
            "workflow_execution_continued_as_new_event_attributes")
        await save_chain_runs(client, handle.id, first,
                              "analysis_budget_continue_as_new")


async def save_chain_runs(client: Client, workflow_id: str, first_run_id: str,
                          prefix: str) -> None:
    """Save every run of a chain, first run first (following each run's
    continued-as-new event), as ``<prefix>_run_<n>.json`` with the workflow ID (signed
    decisions are bound to it)."""
    run_id, number = first_run_id, 0
    while run_id:
        number += 1
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        save(f"{prefix}_run_{number}.json", json.dumps(
            {**json.loads(history.to_json()), "workflowId": workflow_id}))
        last = history.events[-1]
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


def reviewer_key_file(workdir: Path, name: str):
    """A new ed25519 key of ``name`` in OpenSSH form under ``workdir`` and its
    allowed_signers file: (ReviewerKey, allowed_signers path)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from cli.keys import ReviewerKey
    from models.signatures import public_key_line

    private = Ed25519PrivateKey.generate()
    path = workdir / f"{name}_key"
    path.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH,
                                           NoEncryption()))
    path.chmod(0o600)
    public = public_key_line(private.public_key().public_bytes_raw())
    allowed = workdir / f"allowed_signers_{name}"
    allowed.write_text(f"{name} {public}\n")
    return ReviewerKey(public, f"--key {path}", private_path=path), allowed


async def record_sdlc_signed_continue_as_new(workdir: Path) -> None:
    """SDLC with GATE_SIGNERS and a history budget of 100 events (patch
    ``signature-binds-opening-run``): alice signs an approval of GATE_1 as the CLI does
    (for the run the gate opened in); refused signals fill the history, the run
    continues as new with the gate open, and the decision, sent to the next run, is
    taken. Saves both runs."""
    from cli.gates import signing_run_id
    from cli.keys import signed_decision
    from models.signatures import GateSigners
    from workflows.gates import SIGNERS_QUERY

    repo = workdir / "replay-repo"
    new_repository(repo)
    alice, allowed = reviewer_key_file(workdir, "alice")
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay-scan",
                        workstream_trust_spec_tools=True, gate_signers=allowed)
    async with local_worker(settings) as client:
        handle = await start_sdlc(client, settings, feature_request(
            settings, title="Add CSV export", description="Export as CSV.",
            repo_path=str(repo), reviewers=["key:alice"], history_budget=100))
        while not (gates := await handle.query("pending_gates",
                                               result_type=list[GateInfo])):
            await asyncio.sleep(0.05)
        first_run = (await handle.describe()).run_id
        signers = await handle.query(SIGNERS_QUERY, result_type=GateSigners)
        decision = signed_decision(
            workflow_id=handle.id, run_id=await signing_run_id(handle, gates[0]),
            gate=gates[0], verdict=Verdict.APPROVE, comment="ok", content=None,
            keys=[alice], signers=signers, actor=None)
        latest = client.get_workflow_handle(handle.id)
        n = 0
        while (await latest.describe()).run_id == first_run:
            await latest.signal("gate_decison", {"n": n})
            n += 1
        while not await latest.query("pending_gates", result_type=list[GateInfo]):
            await asyncio.sleep(0.05)
        await latest.execute_update(GATE_UPDATE, decision)
        await latest.result()
        await save_chain_runs(client, handle.id, first_run,
                              "sdlc_signed_continue_as_new")


async def record_learning_signed_continue_as_new(workdir: Path) -> None:
    """Learning loop with GATE_SIGNERS, two rounds (patch ``learning-override-binds-
    run``): alice signs a ``set_mastery`` as the CLI does while round 1's test is open;
    round 1 is answered, the loop continues as new, and the override, sent to round 2's
    run, is taken; then round 2 is answered. Saves both runs."""
    from cli.keys import signed_override
    from cli.learning import learning_config, start_learning
    from models.learning import Answer, LearningProgress, OpenTest, SetMastery, SubmitAnswers
    from models.signatures import GateSigners
    from workflows.gates import SIGNERS_QUERY
    from workflows.learning_loop import SUBMIT_ANSWERS

    url = f"sqlite:///{workdir / 'learning-scan.db'}"
    imported_database(url).dispose()
    alice, allowed = reviewer_key_file(workdir, "alice")
    settings = Settings(orchestrator_home=workdir / "home", temporal_task_queue="replay-lscan",
                        database_url=url, gate_signers=allowed)
    async with local_worker(settings) as client:
        handle = await start_learning(client, settings, learning_config(
            settings, student="replay-scan", curriculum="fractions", max_rounds=2,
            items_per_test=3, teachers=["alice"]))
        latest = client.get_workflow_handle(handle.id)
        while (test := await latest.query("open_test",
                                          result_type=OpenTest | None)) is None:
            await asyncio.sleep(0.05)
        first_run = (await latest.describe()).run_id
        progress = await latest.query("state", result_type=LearningProgress)
        signers = await latest.query(SIGNERS_QUERY, result_type=GateSigners)
        mastery = SetMastery(kc=test.kc, mastery=0.5, reason="checked")
        principal, signature = signed_override(
            workflow_id=handle.id, run_id=progress.override_run_id,
            number=progress.override_number + 1, kind="set_mastery",
            reason=mastery.reason, content=mastery.signed_content(), keys=[alice],
            signers=signers, teachers=progress.teachers, actor=None)
        await latest.execute_update(SUBMIT_ANSWERS, SubmitAnswers(answers=[
            Answer(item=i.id, answer="1/2") for i in test.items]))
        while True:
            try:
                second = await latest.query("open_test", result_type=OpenTest | None,
                                            rpc_timeout=timedelta(seconds=3))
            except Exception:  # noqa: BLE001 - asked as the run continued as new
                second = None
            if second is not None and second.test_id != test.test_id:
                break
            await asyncio.sleep(0.05)
        await latest.execute_update("set_mastery", mastery.model_copy(
            update={"actor": principal, "signature": signature}))
        await latest.execute_update(SUBMIT_ANSWERS, SubmitAnswers(answers=[
            Answer(item=i.id, answer="1/2") for i in second.items]))
        await latest.result()
        await save_chain_runs(client, handle.id, first_run,
                              "learning_loop_signed_continue_as_new")


async def record_workstream_signed_continue_as_new(workdir: Path) -> None:
    """Workstream with GATE_SIGNERS and a history budget of 100 events (patch
    ``signature-binds-opening-run``): alice signs a revise of a step's review gate as
    the CLI does; refused signals fill the history, the run continues as new with the
    gate open (keeping its opening number), and the revise, sent to the next run, is
    taken; the step runs again and alice approves it. Saves both runs."""
    from cli.gates import signing_run_id
    from cli.keys import signed_decision
    from cli.workstream import start_workstream
    from models.signatures import GateSigners
    from models.workstream import (
        DEFAULT_ROUTER_CONFIG,
        RouterConfig,
        WorkstreamInput,
        WorkstreamSpec,
    )
    from workflows.gates import SIGNERS_QUERY

    alice, allowed = reviewer_key_file(workdir, "alice")
    spec = WorkstreamSpec.model_validate({"work_item": "replay-signed-can", "steps": [
        {"id": "draft", "kind": "shell", "gate": True,
         "inputs": {"script": "echo draft > draft.txt"}}]})
    settings = Settings(_env_file=None, orchestrator_home=workdir / "home",
                        temporal_task_queue="replay-wscan", gate_signers=allowed)

    async def review_gate(opening: int) -> GateInfo:
        while True:
            gates = await latest.query("pending_gates", result_type=list[GateInfo],
                                       rpc_timeout=timedelta(seconds=3))
            if gates and gates[0].opening >= opening:
                return gates[0]
            await asyncio.sleep(0.05)

    async with local_worker(settings) as client:
        handle = await start_workstream(client, settings, WorkstreamInput(
            spec=spec, router=RouterConfig.model_validate(DEFAULT_ROUTER_CONFIG),
            spec_dir=str(workdir), history_budget=100))
        latest = client.get_workflow_handle(handle.id)
        gate = await review_gate(1)
        first_run = (await latest.describe()).run_id
        signers = await latest.query(SIGNERS_QUERY, result_type=GateSigners)

        async def signed(at: GateInfo, verdict: Verdict, comment: str) -> GateDecision:
            return signed_decision(
                workflow_id=handle.id, run_id=await signing_run_id(latest, at), gate=at,
                verdict=verdict, comment=comment, content=None, keys=[alice],
                signers=signers, actor=None)

        revise = await signed(gate, Verdict.REVISE, "say hello")
        n = 0
        while (await latest.describe()).run_id == first_run:
            for _ in range(10):
                await latest.signal("gate_decison", {"n": n})
                n += 1
            await asyncio.sleep(1.0)
        await review_gate(gate.opening)
        await latest.execute_update(GATE_UPDATE, revise)
        again = await review_gate(gate.opening + 1)
        await latest.execute_update(GATE_UPDATE, await signed(again, Verdict.APPROVE, "ok"))
        await latest.result()
        await save_chain_runs(client, handle.id, first_run,
                              "workstream_signed_continue_as_new")


SCENARIOS = {"sdlc_signed": record_sdlc_signed, "sdlc": record_sdlc,
             "sdlc_signed_continue_as_new": record_sdlc_signed_continue_as_new,
             "learning_signed_continue_as_new": record_learning_signed_continue_as_new,
             "workstream_signed_continue_as_new": record_workstream_signed_continue_as_new,
             "learning_signed_overrides": record_learning_signed_overrides,
             "sdlc_gate_inbox": record_sdlc_gate_inbox,
             "sdlc_github": record_sdlc_github,
             "sdlc_github_replies": record_sdlc_github_replies,
             "analysis": record_analysis, "workstream": record_workstream,
             "analysis_sources_review": record_analysis_sources_review,
             "workstream_user_steps": record_workstream_user_steps,
             "analysis_grounded": record_analysis_grounded,
             "analysis_by_reference": record_analysis_by_reference,
             "analysis_continue_as_new": record_analysis_continue_as_new,
             "analysis_budget_continue_as_new": record_analysis_budget_continue_as_new,
             "learning_templates": record_learning_templates,
             "learning_canceled": record_learning_canceled,
             "learning": record_learning, "sdlc_signals": record_sdlc_signals,
             "workstream_admission": record_workstream_admission, "faults": record_faults,
             "workstream_continue_as_new": record_workstream_continue_as_new}


async def main(names: list[str]) -> None:
    """Record the named scenarios (default: all)."""
    HISTORIES.mkdir(exist_ok=True)
    for name in names or list(SCENARIOS):
        with tempfile.TemporaryDirectory() as tmp:
            await SCENARIOS[name](Path(tmp))

if __name__ == "__main__":
    if os.environ.get("PAYLOAD_KEYS", "").strip():
        sys.exit("unset PAYLOAD_KEYS: saved histories must replay without a key (the replay "
                 "tests run with none)")
    asyncio.run(main(sys.argv[1:]))
