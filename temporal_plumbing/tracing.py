"""OpenTelemetry tracing through the SDK's ``TracingInterceptor``.

With OTEL_EXPORTER_OTLP_ENDPOINT set (e.g. ``http://localhost:4317``, an OTLP/gRPC
collector such as Jaeger or the OpenTelemetry Collector), every client that
``temporal_plumbing.client`` makes carries
``temporalio.contrib.opentelemetry.TracingInterceptor``; it is also a worker
interceptor, so the worker made from that client traces too. The CLI's
``StartWorkflow`` span is then the root of one trace that holds the
workflow's run (``RunWorkflow``), every activity it schedules
(``StartActivity``) and runs (``RunActivity``), and its signals, queries and
updates. Spans go out in batches (``BatchSpanProcessor``); short-lived processes
flush them in :func:`flush` before they exit.
"""

from __future__ import annotations

from typing import Any

from settings.observability import load_observability_settings

_PROVIDER: Any = None  # opentelemetry.sdk.trace.TracerProvider of this process, once set


def install_tracer_provider(provider: Any) -> None:
    """Use ``provider`` (an ``opentelemetry.sdk.trace.TracerProvider``) for this
    process's spans: the interceptors of :func:`tracing_interceptors` trace with it.
    Tests install one with an in-memory exporter."""
    global _PROVIDER
    _PROVIDER = provider


def otlp_tracer_provider(endpoint: str, service_name: str) -> Any:
    """A ``TracerProvider`` that batches spans to the OTLP/gRPC collector at ``endpoint``,
    its resource named ``service_name``."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider


def tracer_provider() -> Any:
    """The process's tracer provider: the installed one, else (OTEL_EXPORTER_OTLP_ENDPOINT
    set) an OTLP one made on first use, else None (no tracing).

    Raises:
        SettingsError: an observability setting is invalid.
    """
    if _PROVIDER is None:
        obs = load_observability_settings()
        if obs.otel_exporter_otlp_endpoint:
            install_tracer_provider(otlp_tracer_provider(obs.otel_exporter_otlp_endpoint,
                                                         obs.otel_service_name))
    return _PROVIDER


def tracing_interceptors() -> list[Any]:
    """``[TracingInterceptor]`` tracing with :func:`tracer_provider`, or ``[]`` when
    tracing is off. Workflow spans are made only under a client's span (the SDK's
    default), so a replay never makes orphan spans."""
    provider = tracer_provider()
    if provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(provider.get_tracer("durable-orchestrator"))]


def flush(timeout_seconds: float = 5.0) -> None:
    """Export the spans still batched (a process that exits without finalization,
    ``temporal_plumbing.runtime.exit_process``, would lose them); no-op without tracing."""
    if _PROVIDER is not None:
        _PROVIDER.force_flush(int(timeout_seconds * 1000))
