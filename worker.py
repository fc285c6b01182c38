"""The worker: ``python worker.py`` hosts every workflow and activity on one task queue.

It connects with ``temporalio.envconfig`` (TEMPORAL_ADDRESS, default
localhost:7233), uses the pydantic data converter and shuts down gracefully on
SIGINT/SIGTERM (running activities get the graceful-shutdown timeout to finish).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
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
from activities.signers import GateSignerActivities, read_gate_signers
from activities.web_search import WebSearchActivities, build_exa_client
from activities.workstream import WorkstreamActivities
from cli.server import ensure_search_attributes
from models.signatures import SignatureError
from settings import (
    PerformanceSettings,
    Settings,
    SettingsError,
    connect_client,
    load_performance_settings,
    load_settings,
    temporal_connect_config,
)
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
        GateSignerActivities(settings.gate_signers).load_gate_signers,
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


def worker_options(perf: PerformanceSettings | None = None) -> dict[str, Any]:
    """``Worker`` keyword arguments for concurrency, polling and recovery, from
    ``perf`` (default: the environment); see PerformanceSettings for each reason."""
    from temporalio.worker import PollerBehaviorSimpleMaximum

    perf = perf or load_performance_settings()
    return {
        "activity_executor": ThreadPoolExecutor(perf.activity_threads),
        "max_concurrent_activities": perf.max_concurrent_activities,
        "max_concurrent_workflow_tasks": perf.max_concurrent_workflow_tasks,
        "max_concurrent_local_activities": perf.max_concurrent_local_activities,
        "workflow_task_poller_behavior": PollerBehaviorSimpleMaximum(perf.workflow_task_polls),
        "activity_task_poller_behavior": PollerBehaviorSimpleMaximum(perf.activity_task_polls),
        "nonsticky_to_sticky_poll_ratio": perf.nonsticky_to_sticky_poll_ratio,
        "sticky_queue_schedule_to_start_timeout": perf.sticky_schedule_to_start_timeout,
        "graceful_shutdown_timeout": perf.graceful_shutdown_timeout,
    }


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
    try:  # a bad GATE_SIGNERS stops the worker now, not at a run's first gate
        read_gate_signers(settings.gate_signers)
    except SignatureError as err:
        print(f"invalid configuration: {err}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run_worker(settings))
    except ConnectionError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from cli.common import exit_process

    exit_process(main())
