"""The process's one Temporal runtime (telemetry: Prometheus metrics when asked),
and how a process that used it exits."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from temporal_plumbing import tracing
from temporal_plumbing.metrics import HISTOGRAM_BUCKETS

_RUNTIME: Runtime | None = None
_METRICS_BIND: str | None = None


def build_runtime(metrics_bind: str | None = None, forward_core_logs: bool = False) -> Runtime:
    """A new ``Runtime``; with ``metrics_bind`` (``HOST:PORT``) it serves Prometheus
    metrics at ``http://HOST:PORT/metrics``: the SDK's own (``temporal_*``: task
    latencies, slots, sticky cache, ...) and ours (``orchestrator_*``, see
    ``temporal_plumbing.metrics``), durations in seconds, counters with
    ``_total``, and our histograms with buckets that fit them. With
    ``forward_core_logs`` the SDK core's own log lines (warnings and up) go to the
    Python logger ``temporalio.core``, so they take the worker's log format
    (``temporal_plumbing.logs``) instead of being printed by the core.

    Raises:
        ValueError: the address cannot be bound (e.g. the port is taken).
    """
    logs = LoggingConfig.default
    if forward_core_logs:
        logs = LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
            forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")))
    prometheus = None if metrics_bind is None else PrometheusConfig(
        bind_address=metrics_bind, counters_total_suffix=True, durations_as_seconds=True,
        histogram_bucket_overrides=dict(HISTOGRAM_BUCKETS))
    return Runtime(telemetry=TelemetryConfig(logging=logs, metrics=prometheus))


def process_runtime(metrics_bind: str | None = None, forward_core_logs: bool = False
                    ) -> Runtime:
    """The one ``temporalio.runtime.Runtime`` of this process, made on first use and
    passed to every client, worker and test environment of the process.

    Args:
        metrics_bind: ``HOST:PORT`` to serve Prometheus metrics on (the worker
            passes METRICS_BIND); only the call that makes the runtime may give
            it, later calls get that runtime whatever they pass.
        forward_core_logs: as in :func:`build_runtime` (the worker passes True).

    One explicit runtime (rather than the lazily created default) makes the
    process own the Rust thread pool's lifetime; it is also made the default,
    so code that passes no runtime (a Replayer, a plain ``Client.connect``)
    shares it. See :func:`exit_process` for why short-lived processes also
    leave without interpreter finalization.

    Raises:
        ValueError: ``metrics_bind`` cannot be bound.
    """
    global _RUNTIME, _METRICS_BIND
    if _RUNTIME is None:
        _RUNTIME = build_runtime(metrics_bind, forward_core_logs)
        _METRICS_BIND = metrics_bind
        Runtime.set_default(_RUNTIME, error_if_already_set=False)
    return _RUNTIME


def metrics_address() -> str | None:
    """``HOST:PORT`` where the process runtime serves metrics, or None."""
    return _METRICS_BIND


def exit_process(code: int) -> NoReturn:
    """End a process that used a Temporal client, skipping interpreter finalization.

    The SDK's Rust threads can still call into Python while the interpreter is
    finalizing, and a short-lived process then aborts with "Fatal Python error:
    PyGILState_Release" (temporalio/sdk-python issue 300). Our work is done and
    flushed by then (batched trace spans are flushed here), so leave with ``os._exit``.
    """
    try:
        tracing.flush()
    except Exception:  # noqa: BLE001 - an unreachable collector must not change the exit
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
