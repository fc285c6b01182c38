"""The ``anthropic`` agent runner: the real SDK against the local Messages API fake,
on a real git repository; and its usage landing in the SDLC workflow's ledger."""

from __future__ import annotations

from pathlib import Path

from anthropic import AsyncAnthropic
from temporalio import activity
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.agents import AgentActivities, AnthropicRunner
from activities.git import GitActivities
from activities.llm import AnthropicProvider
from models.common import Verdict
from models.git import WorktreeInput
from models.llm import LlmArtifactRef, LlmLedger, LlmUsage
from models.sdlc import AgentTask, SdlcResult
from settings import DEFAULT_LLM_PRICES
from tests.conftest import NO_SIGNERS, git
from tests.fakes import anthropic_api as api
from tests.workflows.test_sdlc import FakeActivities, decide, gate_open, request, start
from workflows.sdlc import SdlcWorkflow

SPEC = "# Feature specification: CSV export\n\n## Summary\nExport results as CSV.\n"


async def test_anthropic_runner_writes_and_commits_the_spec(git_repo: Path, tmp_path: Path):
    (git_repo / "src").mkdir()
    (git_repo / "src" / "export.py").write_text("pass\n")
    git(git_repo, "add", ".")
    git(git_repo, "commit", "-q", "-m", "code")
    git(git_repo, "branch", "001-csv-export")
    worktree = GitActivities(tmp_path / "wt").add_worktree(
        WorktreeInput(repo_path=str(git_repo), branch="001-csv-export"))
    with api.serve() as fake:
        fake.script = [api.text("```markdown\n" + SPEC + "```", input_tokens=2000,
                                output_tokens=400)]
        client = AsyncAnthropic(api_key="sk-test", base_url=fake.url, max_retries=0)
        runner = AnthropicRunner(AnthropicProvider(client, "claude-sonnet-4-6", {},
                                                   DEFAULT_LLM_PRICES))
        acts = AgentActivities({"anthropic": runner}, "anthropic")
        ref = await ActivityEnvironment().run(acts.run_agent, AgentTask(
            workflow_id="sdlc-x", round=2, worktree=worktree, branch="001-csv-export",
            title="CSV export", description="Users export results as CSV.",
            feedback=["cover empty results"]))
    prompt = fake.requests[0]["messages"][0]["content"]
    assert "Users export results as CSV." in prompt and "Round 1: cover empty results" in prompt
    assert "# Test repository" in prompt and "src/export.py" in prompt  # README and tree
    assert Path(ref.path).read_text() == SPEC  # the fence is removed
    assert git(Path(worktree), "log", "-1", "--format=%H") == ref.commit
    assert ref.usage.provider == "anthropic" and ref.usage.phase == "sdlc_spec"
    assert ref.usage.cost_usd == (2000 * 3 + 400 * 15) / 1e6


async def test_anthropic_runner_follows_a_steps_own_instructions(git_repo: Path,
                                                                   tmp_path: Path):
    """A workstream agent step's instructions replace the spec request; the answer is
    written to and committed at the step's output path, not specs/<branch>/spec.md."""
    git(git_repo, "branch", "002-notes")
    worktree = GitActivities(tmp_path / "wt").add_worktree(
        WorktreeInput(repo_path=str(git_repo), branch="002-notes"))
    with api.serve() as fake:
        fake.script = [api.text("# Release notes\n\n- CSV export\n")]
        client = AsyncAnthropic(api_key="sk-test", base_url=fake.url, max_retries=0)
        runner = AnthropicRunner(AnthropicProvider(client, "claude-sonnet-4-6", {},
                                                   DEFAULT_LLM_PRICES))
        acts = AgentActivities({"anthropic": runner}, "anthropic")
        ref = await ActivityEnvironment().run(acts.run_agent, AgentTask(
            workflow_id="workstream-x", round=1, worktree=worktree, branch="002-notes",
            title="Release notes", description="", output_path="docs/notes.md",
            instructions="List the user-visible changes since v1.2."))
    prompt = fake.requests[0]["messages"][0]["content"]
    assert "List the user-visible changes since v1.2." in prompt
    assert "`docs/notes.md`" in prompt and "feature specification" not in prompt.lower()
    assert ref.path == str(Path(worktree) / "docs" / "notes.md")
    assert Path(ref.path).read_text() == "# Release notes\n\n- CSV export\n"
    assert not (Path(worktree) / "specs").exists()
    assert git(Path(worktree), "log", "-1", "--format=%s") == "agent: Release notes (round 1)"


async def test_runner_usage_goes_into_the_sdlc_ledger(ts_env, task_queue):
    fakes = FakeActivities()
    usage = LlmUsage(provider="anthropic", model="claude-sonnet-4-6", input_tokens=10,
                     output_tokens=5, cost_usd=0.25, phase="sdlc_spec")

    @activity.defn(name="run_agent")
    async def run_agent(task: AgentTask) -> LlmArtifactRef:
        return LlmArtifactRef(path="/spec.md", sha256="a" * 64, bytes=1, commit="c" * 40,
                              usage=usage)

    others = [a for a in fakes.all() if a.__name__ != "run_agent"]
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*others, run_agent, NO_SIGNERS]):
        handle = await start(ts_env, task_queue, request())
        await gate_open(handle)
        await decide(handle, Verdict.REVISE, "more")
        await gate_open(handle)
        ledger = await handle.query("llm_ledger", result_type=LlmLedger)
        await decide(handle, Verdict.APPROVE)
        assert SdlcResult.model_validate(await handle.result()).rounds == 2
    assert [(p.phase, p.calls, p.cost_usd) for p in ledger.by_phase] == [("sdlc_spec", 2, 0.5)]
