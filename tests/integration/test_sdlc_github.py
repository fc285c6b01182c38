"""SdlcWorkflow with GitHub on the dev server: the real worker and PyGithub against the
local GitHub server, a real git repository whose ``origin`` is a local bare repository."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle

from cli.gates import query
from cli.sdlc import feature_request, start_sdlc
from models.common import Verdict
from models.sdlc import SdlcPhase, SdlcResult
from settings import Settings
from tests.conftest import git
from tests.github_server import BOT, GitHubServer
from tests.integration.test_sdlc_dev import decide, wait_gate
from worker import make_worker
from workflows.sdlc import SdlcWorkflow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[GitHubServer]:
    with GitHubServer() as srv:
        srv.gh.permissions.update({"alice": "write", "mallory": "read"})
        yield srv


@pytest.fixture
def remote(tmp_path: Path, git_repo: Path) -> Path:
    """A bare repository as ``origin`` of ``git_repo``, holding ``main``."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(git_repo, "remote", "add", "origin", str(bare))
    git(git_repo, "push", "-q", "origin", "main")
    return bare


def github_settings(server: GitHubServer, task_queue: str, home: Path, **kw) -> Settings:
    return Settings(orchestrator_home=home, temporal_task_queue=task_queue,
                    github_token=server.gh.token, github_repository=server.gh.full_name,
                    github_api_url=server.api_url,
                    github_poll_interval=timedelta(milliseconds=200), **kw)


async def until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def bot_replies(server: GitHubServer, needle: str) -> list[str]:
    return [c["body"] for c in server.gh.comments_on(1)
            if c["user"]["login"] == BOT and needle in c["body"]]


async def test_full_run_with_github_ends_with_one_issue_the_done_label_and_one_pr(
        dev_env, task_queue, git_repo, remote, server, tmp_path):
    gh = server.gh
    gh.fail_next("POST", r"/issues$", "drop")  # crash after the issue was created
    gh.fail_next("POST", r"/issues/\d+/labels$", "rate_limit", seconds=1)
    settings = github_settings(server, task_queue, tmp_path / "home",
                               gate_reminder_interval=timedelta(seconds=2))
    client = dev_env.client
    req = feature_request(settings, title="Add CSV export", description="Export as CSV.",
                          repo_path=str(git_repo))
    async with make_worker(client, settings):
        handle = await start_sdlc(client, settings, req)
        await wait_gate(handle, 1)
        assert gh.issue_labels(1) == ["sdlc:gate-1"]
        gh.set_issue_labels(1, ["bug", "sdlc:done"])  # drift made by hand

        gh.add_comment(1, "mallory", "/approve")
        await until(lambda: bot_replies(server, "@mallory"), "the reply to mallory")
        assert "write permission" in bot_replies(server, "@mallory")[0]
        gh.add_comment(1, "alice", "/reject")
        await until(lambda: bot_replies(server, "@alice"), "the reply to alice")
        assert "needs a comment" in bot_replies(server, "@alice")[0]
        await until(lambda: bot_replies(server, "Reminder 1"), "a reminder comment")
        state = await query(handle, SdlcWorkflow.state)
        assert state.phase == SdlcPhase.GATE_1 and state.round == 1

        gh.add_comment(1, "alice", "/revise list the columns")
        await wait_gate(handle, 2)
        assert gh.issue_labels(1) == ["bug", "sdlc:gate-1"]  # repaired at the transition
        gh.add_comment(1, "alice", "/approve")
        result = SdlcResult.model_validate(await handle.result())
        status = await asyncio.to_thread(subprocess.run, [
            sys.executable, str(ROOT / "starter.py"), "status", handle.id], env={
                **os.environ, "TEMPORAL_ADDRESS": client.service_client.config.target_host},
            capture_output=True, text=True, cwd=ROOT)

    assert result.phase == SdlcPhase.DONE and result.rounds == 2
    assert len(gh.issues) == 1 and result.issue.number == 1
    assert result.issue.url == "https://github.example/octo/shop/issues/1"
    assert gh.issue_labels(1) == ["bug", "sdlc:done"]
    assert len(gh.pulls) == 1
    pull = gh.pulls[0]
    branch = result.branch.name
    assert pull["head"]["ref"] == branch and pull["base"]["ref"] == "main"
    assert "Closes #1" in pull["body"] and result.pr_url == pull["html_url"]
    assert f"workflow-id={handle.id}" in pull["body"]
    # the issue search read bodies from list answers, never an issue again; every poll
    # after the first sent GitHub's ``since``; the server checked it all against the
    # OpenAPI description (the fixture fails the test otherwise)
    assert gh.count("GET", r"/issues/\d+$") == 0
    polls = [r for r in gh.requests if r.method == "GET" and r.path.endswith("/comments")]
    assert len(polls) > 3 and all("since" in r.query for r in polls[2:])
    assert git(remote, "rev-parse", branch) == result.spec.commit
    assert "list the columns" in git(git_repo, "show", f"{branch}:specs/{branch}/spec.md")

    decisions = [e for e in result.audit if e.kind == "decision"]
    assert [(e.actor, e.comment) for e in decisions] == [("github:alice", "list the columns"),
                                                         ("github:alice", "")]
    assert all("via github comment" in e.detail for e in decisions)
    refused = [e for e in result.audit if e.kind == "refused"]
    assert [e.actor for e in refused] == ["github:alice"]  # mallory never reached the workflow

    label_posts = [r for r in gh.requests
                   if r.method == "POST" and r.path == "/repos/octo/shop/issues/1/labels"]
    assert label_posts[0].status == 403 and label_posts[1].status == 200
    assert label_posts[1].at - label_posts[0].at >= 0.9  # waited for the reset

    assert status.returncode == 0, status.stderr
    assert "https://github.example/octo/shop/issues/1" in status.stdout
    assert pull["html_url"] in status.stdout


async def test_a_decision_is_not_held_up_by_a_rate_limited_poll(
        dev_env, task_queue, git_repo, remote, server, tmp_path):
    """The comment poll runs beside the gate's wait: while a poll waits 60 s for a rate
    limit to reset, a decision sent as an update ends the run at once."""
    server.gh.fail_next("GET", r"/issues/\d+/comments$", "rate_limit", seconds=60)
    settings = github_settings(server, task_queue, tmp_path / "home")
    client = dev_env.client
    req = feature_request(settings, title="Add PDF export", repo_path=str(git_repo))
    async with make_worker(client, settings):
        handle: WorkflowHandle = await start_sdlc(client, settings, req)
        await wait_gate(handle, 1)
        await until(lambda: any(r.status == 403 for r in server.gh.requests), "the rate limit")
        loop = asyncio.get_running_loop()
        begin = loop.time()
        await decide(handle, Verdict.APPROVE)
        result = SdlcResult.model_validate(await handle.result())
        assert loop.time() - begin < 10
    assert result.phase == SdlcPhase.DONE
    assert server.gh.issue_labels(1) == ["sdlc:done"] and len(server.gh.pulls) == 1
    entries = [e for e in result.audit if e.kind == "decision"]
    assert len(entries) == 1 and "via update" in entries[0].detail
