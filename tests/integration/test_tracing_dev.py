"""OpenTelemetry tracing: a whole SDLC run on the dev server, started the way
`sdlc start` starts it (cli.sdlc.start_sdlc) through a client from
temporal_plumbing with tracing on, with the real worker and activities on a
temporary git repository. The OpenTelemetry SDK's in-memory exporter receives
the spans: one trace from the start through every activity."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.contrib.opentelemetry import TracingInterceptor

from cli.sdlc import feature_request, start_sdlc
from models.common import Verdict
from models.sdlc import SdlcPhase, SdlcResult
from settings import Settings
from temporal_plumbing import tracing
from temporal_plumbing.client import client_interceptors, connect_client
from tests.integration.test_sdlc_dev import decide, wait_gate
from worker import make_worker

pytestmark = pytest.mark.devserver


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install_tracer_provider(provider)
    yield exporter
    tracing.install_tracer_provider(None)


def test_without_an_endpoint_clients_have_no_tracing_interceptor(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    tracing.install_tracer_provider(None)
    assert client_interceptors() == []


def test_an_endpoint_gives_every_client_the_tracing_interceptor(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    try:
        assert [type(i) for i in client_interceptors()] == [TracingInterceptor]
    finally:
        tracing.install_tracer_provider(None)


async def test_one_trace_from_sdlc_start_through_every_activity(
        dev_env, task_queue, git_repo, tmp_path, spans):
    client = await connect_client(target_host=dev_env.client.service_client.config.target_host,
                                  namespace=dev_env.client.namespace)
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    req = feature_request(settings, title="Add CSV export", description="Export as CSV.",
                          repo_path=str(git_repo))
    async with make_worker(client, settings):  # traced: the client's interceptor
        handle = await start_sdlc(client, settings, req)
        await wait_gate(handle, 1)
        await decide(handle, Verdict.APPROVE)
        result = SdlcResult.model_validate(await handle.result())
    assert result.phase == SdlcPhase.DONE

    finished = spans.get_finished_spans()
    start = [s for s in finished if s.name == "StartWorkflow:SdlcWorkflow"]
    assert len(start) == 1 and start[0].parent is None  # the root
    trace_id = start[0].context.trace_id
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    names = {s.name for s in in_trace}
    assert "RunWorkflow:SdlcWorkflow" in names
    for act in ("open_issue", "prepare_branch", "add_worktree", "run_agent",
                "sync_phase_label"):
        assert f"StartActivity:{act}" in names, act
        assert f"RunActivity:{act}" in names, act
    assert "CompleteWorkflow:SdlcWorkflow" in names
    # every activity that ran, ran inside that one trace
    ran = [s for s in finished if s.name.startswith("RunActivity:")]
    assert ran and all(s.context.trace_id == trace_id for s in ran)
    # spans name the workflow they belong to
    run_agent = next(s for s in ran if s.name == "RunActivity:run_agent")
    assert run_agent.attributes["temporalWorkflowID"] == handle.id
