"""Git activities and agent runners on real repositories (no Temporal server needed:
activities run in temporalio's ActivityEnvironment)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.agents import AgentActivities, CommandRunner, OfflineRunner, run_process
from activities.git import GitActivities, commit_round
from models.git import PrepareBranchInput, WorktreeInput
from models.sdlc import AgentTask
from tests.conftest import git
from tests.fault_harness import alive


def prepare(acts: GitActivities, repo: Path, wf: str, slug: str = "csv-export"):
    return ActivityEnvironment().run(acts.prepare_branch, PrepareBranchInput(
        workflow_id=wf, repo_path=str(repo), base_branch="main", slug=slug))


def test_branch_is_numbered_after_the_highest_and_reused_on_retry(git_repo, tmp_path):
    git(git_repo, "branch", "007-older-feature")
    git(git_repo, "branch", "not-numbered")
    acts = GitActivities(tmp_path / "wt")
    first = prepare(acts, git_repo, "wf-1")
    assert first.name == "008-csv-export" and first.number == 8
    assert first.base_commit == git(git_repo, "rev-parse", "main")
    again = prepare(acts, git_repo, "wf-1")
    assert again == first
    other = prepare(acts, git_repo, "wf-2", slug="pdf-export")
    assert other.name == "009-pdf-export"


def test_branch_reused_after_a_crash_between_marker_and_branch(git_repo, tmp_path):
    git(git_repo, "config", "branch.003-csv-export.orchestratorworkflow", "wf-1")
    ref = prepare(GitActivities(tmp_path / "wt"), git_repo, "wf-1")
    assert ref.name == "003-csv-export"
    assert git(git_repo, "rev-parse", "003-csv-export") == ref.base_commit


def test_bad_repository_or_base_is_a_non_retryable_error(tmp_path, git_repo):
    acts = GitActivities(tmp_path / "wt")
    with pytest.raises(ApplicationError) as err:
        prepare(acts, tmp_path, "wf")
    assert err.value.non_retryable and "not a git repository" in err.value.message
    with pytest.raises(ApplicationError) as err:
        ActivityEnvironment().run(acts.prepare_branch, PrepareBranchInput(
            workflow_id="wf", repo_path=str(git_repo), base_branch="develop", slug="x"))
    assert err.value.non_retryable and "'develop' does not exist" in err.value.message


def test_worktree_is_reused_and_removed_keeping_the_branch(git_repo, tmp_path):
    acts = GitActivities(tmp_path / "wt")
    branch = prepare(acts, git_repo, "wf-1").name
    env = ActivityEnvironment()
    path = env.run(acts.add_worktree, WorktreeInput(repo_path=str(git_repo), branch=branch))
    assert Path(path, "README.md").is_file()
    assert env.run(acts.add_worktree, WorktreeInput(repo_path=str(git_repo), branch=branch)) == path
    assert git(git_repo, "worktree", "list").count("\n") == 1  # main + one worktree
    env.run(acts.remove_worktree, WorktreeInput(repo_path=str(git_repo), branch=branch))
    assert not Path(path).exists()
    assert git(git_repo, "rev-parse", "--verify", branch)


def test_commit_round_is_one_commit_per_round(git_repo):
    spec = git_repo / "specs" / "spec.md"
    spec.parent.mkdir()
    spec.write_text("v1\n")
    trailers = {"Workflow-Id": "wf", "Spec-Round": "1"}
    first = commit_round(git_repo, "specs/spec.md", "spec round 1", trailers)
    assert commit_round(git_repo, "specs/spec.md", "spec round 1", trailers) == first
    spec.write_text("v1 rewritten by a retried agent\n")
    amended = commit_round(git_repo, "specs/spec.md", "spec round 1", trailers)
    assert amended != first
    assert git(git_repo, "rev-list", "--count", "HEAD") == "2"  # initial + round 1
    spec.write_text("v2\n")
    second = commit_round(git_repo, "specs/spec.md", "spec round 2",
                          {"Workflow-Id": "wf", "Spec-Round": "2"})
    assert git(git_repo, "rev-list", "--count", "HEAD") == "3"
    assert "Spec-Round: 2" in git(git_repo, "log", "-1", "--format=%B", second)


def test_commit_without_any_git_identity_uses_the_fallback(git_repo, monkeypatch, tmp_path):
    git(git_repo, "config", "--unset", "user.email")
    git(git_repo, "config", "--unset", "user.name")
    monkeypatch.setenv("HOME", str(tmp_path))  # no global identity either
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (git_repo / "f.md").write_text("x\n")
    sha = commit_round(git_repo, "f.md", "subject", {"Workflow-Id": "wf"})
    assert git(git_repo, "log", "-1", "--format=%ae", sha) == "orchestrator@localhost"


def task(worktree: Path, **overrides) -> AgentTask:
    fields = {"workflow_id": "sdlc-repo-csv", "round": 1, "worktree": str(worktree),
              "branch": "001-csv", "title": "Add CSV export",
              "description": "Users download results as CSV. Dates use ISO 8601."}
    return AgentTask(**{**fields, **overrides})


async def test_offline_agent_writes_and_commits_a_deterministic_spec(git_repo):
    acts = AgentActivities({"offline": OfflineRunner()}, "offline")
    ref = await ActivityEnvironment().run(acts.run_agent, task(git_repo))
    text = Path(ref.path).read_text()
    assert "provider: offline" in text and "FR-002" in text and "ISO 8601" in text
    assert git(git_repo, "rev-parse", "HEAD") == ref.commit
    again = await ActivityEnvironment().run(acts.run_agent, task(git_repo))
    assert again == ref  # same request, same file, same commit
    revised = await ActivityEnvironment().run(
        acts.run_agent, task(git_repo, round=2, feedback=["handle empty results"]))
    assert "handle empty results" in Path(revised.path).read_text()
    assert revised.commit != ref.commit


async def test_command_agent_gets_the_request_on_stdin_and_env(git_repo):
    runner = CommandRunner('mkdir -p "$(dirname "$SDLC_SPEC_PATH")" && '
                           '{ echo "# $SDLC_TITLE round $SDLC_ROUND"; cat; } > "$SDLC_SPEC_PATH"')
    acts = AgentActivities({"command": runner}, "command")
    ref = await ActivityEnvironment().run(acts.run_agent, task(git_repo))
    text = Path(ref.path).read_text()
    assert text.startswith("# Add CSV export round 1")
    assert "Users download results as CSV" in text  # the rendered prompt came on stdin
    assert "### README" in text


async def test_command_agent_with_instructions_writes_its_output_path(git_repo):
    runner = CommandRunner('mkdir -p "$(dirname "$SDLC_SPEC_PATH")" && '
                           '{ echo "# $SDLC_INSTRUCTIONS"; cat; } > "$SDLC_SPEC_PATH"')
    acts = AgentActivities({"command": runner}, "command")
    ref = await ActivityEnvironment().run(acts.run_agent, task(
        git_repo, instructions="Draft the migration plan.", output_path="plans/migrate.md"))
    assert ref.path == str(git_repo / "plans" / "migrate.md")
    text = Path(ref.path).read_text()
    assert text.startswith("# Draft the migration plan.")
    assert "`plans/migrate.md`" in text and "feature specification" not in text
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.run_agent, task(
            git_repo, instructions="x", output_path="../escape.md"))
    assert err.value.non_retryable and err.value.type == "InvalidStep"


async def test_agent_that_writes_nothing_or_fails_is_an_error(git_repo):
    acts = AgentActivities({"command": CommandRunner("true"), "bad": CommandRunner("exit 3")},
                           "command")
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.run_agent, task(git_repo))
    assert err.value.type == "SpecMissing"
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.run_agent, task(git_repo, runner="bad"))
    assert "exited with code 3" in err.value.message
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.run_agent, task(git_repo, runner="nope"))
    assert err.value.non_retryable and "not available" in err.value.message




async def test_timeout_and_cancellation_kill_the_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pidfile}; wait"
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(
            run_process, ["/bin/sh", "-c", script], cwd=tmp_path, env=dict(os.environ),
            stdin=b"", timeout=0.5)
    assert err.value.type == "AgentTimeout"
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not alive(child)

    pidfile.unlink()
    env = ActivityEnvironment()
    run = asyncio.ensure_future(env.run(
        run_process, ["/bin/sh", "-c", script], cwd=tmp_path, env=dict(os.environ), stdin=b"",
        timeout=60))
    while not pidfile.exists() or not pidfile.read_text().strip():
        await asyncio.sleep(0.05)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not alive(child)


async def test_feedback_file_lives_beside_a_configured_output(git_repo):
    """An agent step with its own ``output`` gets (and commits) its feedback file in that
    output's directory; the next round reads the earlier rounds from that commit."""
    runner = CommandRunner('mkdir -p "$(dirname "$SDLC_SPEC_PATH")" && '
                           '{ echo "round $SDLC_ROUND"; if [ -n "$SDLC_FEEDBACK_FILE" ]; '
                           'then cat "$SDLC_FEEDBACK_FILE"; fi; } > "$SDLC_SPEC_PATH"')
    acts = AgentActivities({"command": runner}, "command")
    env = ActivityEnvironment()
    step = {"instructions": "Write notes.", "output_path": "docs/notes.md",
            "feedback_key": "notes"}
    first = await env.run(acts.run_agent, task(git_repo, **step))
    second = await env.run(acts.run_agent, task(git_repo, round=2, new_feedback="add dates",
                                                feedback_from=first.commit, **step))
    third = await env.run(acts.run_agent, task(git_repo, round=3, new_feedback="shorter",
                                               feedback_from=second.commit, **step))
    committed = git(git_repo, "show", f"{third.commit}:docs/feedback-notes.md")
    assert "## Round 1\n\nadd dates" in committed and "## Round 2\n\nshorter" in committed
    assert "add dates" in Path(third.path).read_text()
    assert not (git_repo / "specs").exists()


async def test_feedback_committed_by_older_code_under_specs_is_still_read(git_repo):
    """A round committed before the feedback file moved beside the output kept it under
    ``specs/<branch>/``: the next round still finds the earlier feedback there."""
    (git_repo / "specs" / "001-csv").mkdir(parents=True)
    (git_repo / "specs" / "001-csv" / "feedback-notes.md").write_text(
        "# Reviewer feedback\n\n<!-- feedback on round 1 -->\n## Round 1\n\nadd dates\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "round 2 by older code")
    acts = AgentActivities({"offline": OfflineRunner()}, "offline")
    ref = await ActivityEnvironment().run(acts.run_agent, task(
        git_repo, round=3, new_feedback="shorter", feedback_from=git(git_repo, "rev-parse",
                                                                      "HEAD"),
        instructions="Write notes.", output_path="docs/notes.md", feedback_key="notes"))
    text = Path(ref.path).read_text()
    assert "Round 1: add dates" in text and "Round 2: shorter" in text
