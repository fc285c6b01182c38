"""The worker: ``python worker.py`` hosts every workflow and activity on one task queue.

It connects through ``temporal_plumbing`` (``temporalio.envconfig`` profile,
TEMPORAL_ADDRESS default localhost:7233; the shared data converter and
interceptors; worker options from the performance settings) and shuts down
gracefully on SIGINT/SIGTERM (running activities get the graceful-shutdown
timeout to finish).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.agents import (
    AgentActivities,
    AnthropicRunner,
    ClaudeRunner,
    CommandRunner,
    OfflineRunner,
)
from activities.analysis import AnalysisActivities
from activities.artifacts import ArtifactStore
from activities.breaker import BreakerActivities
from activities.git import GitActivities
from activities.github import GitHubIssueTracker
from activities.issues import LocalIssueTracker
from activities.learning import LearningStore
from activities.llm import LlmActivities, build_anthropic_provider, build_llm_provider
from activities.web_search import WebSearchActivities, build_exa_client
from activities.workstream import WorkstreamActivities
from settings import (
    PerformanceSettings,
    Settings,
    SettingsError,
    load_performance_settings,
    load_settings,
)
from temporal_plumbing.client import connect_client, temporal_connect_config
from temporal_plumbing.runtime import exit_process
from temporal_plumbing.search_attributes import ensure_search_attributes
from temporal_plumbing.workers import worker_options
from workflows.analysis import AnalysisWorkflow
from workflows.breaker import BreakerWorkflow
from workflows.learning_loop import LearningLoopWorkflow
from workflows.sdlc import SdlcWorkflow
from workflows.workstream import WorkstreamWorkflow

ALL_WORKFLOWS: list[type] = [SdlcWorkflow, AnalysisWorkflow, WorkstreamWorkflow,
                             BreakerWorkflow, LearningLoopWorkflow]


def build_activities(settings: Settings) -> list[Any]:
    """Every activity callable of the worker, with clients built from ``settings``."""
    runners: dict[str, Any] = {"offline": OfflineRunner(), "claude": ClaudeRunner(
        settings.claude_executable)}
    if settings.agent_command:
        runners["command"] = CommandRunner(settings.agent_command)
    if settings.anthropic_api_key is not None:
        runners["anthropic"] = AnthropicRunner(build_anthropic_provider(settings))
    git = GitActivities(settings.worktree_root)
    agents = AgentActivities(runners, settings.agent_runner)
    llm = LlmActivities(build_llm_provider(settings))
    analysis = AnalysisActivities(ArtifactStore(settings.artifact_root))
    exa_key = settings.exa_api_key.get_secret_value() if settings.exa_api_key else None
    search = WebSearchActivities(build_exa_client(exa_key, settings.exa_base_url))
    activities = [
        git.prepare_branch, git.add_worktree, git.remove_worktree,
        *issue_tracker_activities(settings),
        agents.run_agent,
        llm.llm_complete,
        analysis.load_sources, analysis.write_report, search.web_search,
        *LearningStore(settings.learning_database_url, settings.artifact_root).all(),
    ]
    # workstream engine
    ws = WorkstreamActivities(settings.workspace_root, ArtifactStore(settings.artifact_root))
    breakers = BreakerActivities()
    activities += [ws.init_workspace, ws.run_shell, ws.run_python, ws.run_noop,
                   ws.commit_handoff, ws.merge, breakers.pick, breakers.report]
    return activities


def issue_tracker_activities(settings: Settings) -> list[Any]:
    """The issue tracker's activities: GitHub when configured, else local issues."""
    if settings.github_enabled:
        assert settings.github_token and settings.github_repository
        return GitHubIssueTracker(
            settings.github_token.get_secret_value(), settings.github_repository,
            api_url=settings.github_api_url, label_prefix=settings.github_label_prefix,
            remote=settings.github_remote).activities()
    tracker = LocalIssueTracker(settings.issues_root)
    return [tracker.open_issue, tracker.sync_phase_label]


def make_worker(client: Client, settings: Settings, perf: PerformanceSettings | None = None,
                **options: Any) -> Worker:
    """A worker for every workflow and activity on ``settings.temporal_task_queue``,
    tuned by ``perf`` (default: the environment); ``options`` override any Worker argument."""
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=ALL_WORKFLOWS,
        activities=build_activities(settings),
        **{**worker_options(perf), **options},
    )


async def run_worker(settings: Settings) -> None:
    """Run the worker until SIGINT or SIGTERM."""
    client = await connect_client()
    if not await ensure_search_attributes(client):
        print("note: could not register search attributes; the web UI cannot filter by them",
              flush=True)
    if notice := settings.llm_provider_notice():
        print(notice, flush=True)
    worker = make_worker(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"worker polling task queue {settings.temporal_task_queue!r} "
          f"on {temporal_connect_config()['target_host']}", flush=True)
    async with worker:
        await stop.wait()
        print("shutting down: finishing running activities", flush=True)
    print("worker stopped", flush=True)


def main() -> int:
    """Entry point of ``python worker.py``."""
    try:
        settings = load_settings()
        load_performance_settings()
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        asyncio.run(run_worker(settings))
    except ConnectionError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_process(main())
