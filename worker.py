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
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.agents import AgentActivities, ClaudeRunner, CommandRunner, OfflineRunner
from activities.git import GitActivities
from activities.issues import LocalIssueTracker
from activities.learning import LearningStore
from activities.llm import LlmActivities
from cli.server import ensure_search_attributes
from settings import (
    Settings,
    SettingsError,
    connect_client,
    load_settings,
    temporal_connect_config,
)
from workflows.learning_loop import LearningLoopWorkflow
from workflows.sdlc import SdlcWorkflow

ALL_WORKFLOWS: list[type] = [SdlcWorkflow, LearningLoopWorkflow]

GRACEFUL_SHUTDOWN = timedelta(seconds=10)
ACTIVITY_THREADS = 16


def build_activities(settings: Settings) -> list[Any]:
    """Every activity callable of the worker, with clients built from ``settings``."""
    runners: dict[str, Any] = {"offline": OfflineRunner(), "claude": ClaudeRunner(
        settings.claude_executable)}
    if settings.agent_command:
        runners["command"] = CommandRunner(settings.agent_command)
    git = GitActivities(settings.worktree_root)
    tracker = LocalIssueTracker(settings.issues_root)
    agents = AgentActivities(runners, settings.agent_runner)
    return [
        git.prepare_branch, git.add_worktree, git.remove_worktree,
        tracker.open_issue, tracker.sync_phase_label,
        agents.run_agent,
        # learning loop (issue 5); LlmActivities is the local seam until issue 4 lands
        *LearningStore(settings.learning_database_url, settings.artifact_root).all(),
        LlmActivities().llm_complete,
    ]


def make_worker(client: Client, settings: Settings, **options: Any) -> Worker:
    """A worker for every workflow and activity on ``settings.temporal_task_queue``."""
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=ALL_WORKFLOWS,
        activities=build_activities(settings),
        activity_executor=ThreadPoolExecutor(ACTIVITY_THREADS),
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        **options,
    )


async def run_worker(settings: Settings) -> None:
    """Run the worker until SIGINT or SIGTERM."""
    client = await connect_client()
    if not await ensure_search_attributes(client):
        print("note: could not register search attributes; the web UI cannot filter by them",
              flush=True)
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
    sys.exit(main())
