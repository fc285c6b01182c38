"""Dev-server tuning, crash recovery and worker concurrency.

Defaults tuned on a 2-core machine; bench/run_all.py measures what each gives.
Each default says why it is what it is.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field, model_validator

from settings.base import EnvSettings, Seconds, load


class PerformanceSettings(EnvSettings):
    """Dev-server tuning, crash recovery and worker concurrency; each field is the
    environment variable of the same name in upper case."""

    dev_server_tuned: bool = Field(
        True, description="start the embedded dev server with "
        "temporal_plumbing.environments.TUNED_DYNAMIC_CONFIG (false: the stock server, "
        "for comparison)")
    dev_server_dynamic_config: dict[str, Any] = Field(
        default_factory=dict, description="JSON object of extra dev-server dynamic config "
        "values; a key here overrides the tuned value of the same key")
    # A killed worker's sticky queue keeps its workflow tasks until this passes;
    # then they go to the shared queue and any worker takes them (SDK default 10 s).
    sticky_schedule_to_start_timeout: Seconds = Field(
        timedelta(milliseconds=500),
        description="how long a workflow task waits for the worker that cached the workflow")
    # A workflow task started by a worker that then died is retried after this
    # (server default 10 s). Ours take milliseconds; 2 s leaves room for a cold
    # replay of a long history on a busy 2-core machine.
    workflow_task_timeout: Seconds = Field(
        timedelta(seconds=2), description="start-to-close timeout of one workflow task")
    # Long activities heartbeat: the timeout is workflow-side (workflows never read
    # settings): workflows/policies.py AGENT_HEARTBEAT_TIMEOUT, 5 s.
    # On SIGTERM the worker stops polling at once (releasing its sticky queue, so
    # the server hands its workflows to another worker without waiting for the
    # sticky timeout) and gives running activities this long to finish.
    graceful_shutdown_timeout: Seconds = Field(
        timedelta(seconds=10), description="time running activities get to finish on SIGTERM")
    # Sync activities (git, PyGithub, SQLAlchemy) wait on I/O and subprocesses,
    # so more threads than cores; each thread is one concurrent activity.
    activity_threads: int = Field(
        16, ge=1, description="threads of the activity executor (= concurrent sync activities)")
    max_concurrent_activities: int = Field(
        16, ge=1, description="activity tasks one worker runs at once (<= activity_threads)")
    # Workflow tasks are CPU-bound Python; 2 cores gain nothing from more than a
    # handful in flight, and fewer slots keep each task's latency low.
    max_concurrent_workflow_tasks: int = Field(
        8, ge=2, description="workflow tasks one worker processes at once")
    max_concurrent_local_activities: int = Field(
        16, ge=1, description="local activities one worker runs at once")
    workflow_task_polls: int = Field(
        4, ge=2, description="concurrent workflow-task long polls (sticky and shared queue)")
    activity_task_polls: int = Field(
        4, ge=1, description="concurrent activity-task long polls")
    nonsticky_to_sticky_poll_ratio: float = Field(
        0.2, gt=0, le=1, description="share of workflow-task polls on the shared queue")

    @model_validator(mode="after")
    def _check_limits(self) -> PerformanceSettings:
        if self.max_concurrent_activities > self.activity_threads:
            raise ValueError(
                "MAX_CONCURRENT_ACTIVITIES must not exceed ACTIVITY_THREADS (each running "
                "sync activity holds one thread)")
        return self


def load_performance_settings(**overrides: Any) -> PerformanceSettings:
    """Read and validate the performance settings.

    Raises:
        SettingsError: a variable is invalid; the message names each one and why.
    """
    return load(PerformanceSettings, overrides)
