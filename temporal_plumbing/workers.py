"""Worker options from the performance settings, and the replayer of saved histories."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.runtime import Runtime
from temporalio.worker import Interceptor, PollerBehaviorSimpleMaximum, Replayer

from settings import PerformanceSettings, load_performance_settings
from temporal_plumbing.client import client_interceptors, data_converter


def worker_options(perf: PerformanceSettings | None = None) -> dict[str, Any]:
    """``Worker`` keyword arguments for concurrency, polling and recovery, from
    ``perf`` (default: the environment); see PerformanceSettings for each reason."""
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


def replayer(workflows: Sequence[type], runtime: Runtime | None = None) -> Replayer:
    """A replayer of ``workflows`` with the data converter and interceptors of every
    client, so histories written by the worker (encoded or not) decode the same;
    ``runtime`` default: the process runtime."""
    return Replayer(workflows=workflows, data_converter=data_converter(),
                    interceptors=[i for i in client_interceptors()
                                  if isinstance(i, Interceptor)], runtime=runtime)
