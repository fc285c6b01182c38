"""Prometheus metrics: a worker whose runtime serves METRICS_BIND runs a gated SDLC
workflow on the dev server; its /metrics endpoint shows the SDK's own
metrics and ours with the values of that run, and (where Debian's `prometheus`
is installed) a real Prometheus scrapes it and answers a PromQL query for the
gate-wait histogram."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models.common import GateDecision, Verdict
from models.sdlc import GATE_1, SdlcResult
from temporal_plumbing import metrics
from temporal_plumbing.client import connect_client
from temporal_plumbing.environments import free_port
from temporal_plumbing.runtime import build_runtime
from temporal_plumbing.workers import replayer
from tests.conftest import NO_SIGNERS
from tests.workflows.test_sdlc import FakeActivities, request
from workflows.gates import GATE_SIGNAL, GATE_UPDATE
from workflows.sdlc import SdlcWorkflow

pytestmark = pytest.mark.devserver

ROOT = Path(__file__).resolve().parents[2]
WAIT = timedelta(seconds=1.5)  # between the gate opening and the decision


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as resp:
        return resp.read().decode()


def value(text: str, name: str, **labels: str) -> float | None:
    """The value of the one series ``name`` whose labels include ``labels``."""
    found = []
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m.group(3)))
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series"
    return found[0] if found else None


async def until_counted(address: str, name: str) -> None:
    """Wait until the endpoint shows a series of ``name``."""
    for _ in range(600):
        if any(line.startswith(name) for line in scrape(address).splitlines()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never appeared")


@dataclass
class MetricsRun:
    address: str
    text: str
    workflow_id: str
    client: Client


@pytest_asyncio.fixture(scope="module")
async def metrics_run(dev_env: WorkflowEnvironment) -> AsyncIterator[MetricsRun]:
    """One SDLC run decided after WAIT, with a refused signal before the decision."""
    address = f"127.0.0.1:{free_port()}"
    runtime = build_runtime(address)
    client = await connect_client(
        runtime, target_host=dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace)
    task_queue = f"metrics-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*FakeActivities().all(), NO_SIGNERS]):
        handle = await client.start_workflow(SdlcWorkflow.run, request(),
                                             id=f"sdlc-{uuid.uuid4()}", task_queue=task_queue)
        await until_counted(address, "orchestrator_gates_opened_total")
        await asyncio.sleep(WAIT.total_seconds())
        await handle.signal(GATE_SIGNAL, {"gate": GATE_1, "verdict": "maybe", "actor": "bob"})
        await until_counted(address, "orchestrator_gate_refused_total")
        await handle.execute_update(GATE_UPDATE, GateDecision(
            gate=GATE_1, verdict=Verdict.APPROVE, actor="ann"))
        result = SdlcResult.model_validate(await handle.result())
        assert result.phase.value == "DONE"
        text = ""
        for _ in range(300):  # the exporter publishes what was recorded within moments
            text = scrape(address)
            if (value(text, "orchestrator_gates_closed_total", outcome="decided")
                    and value(text, "temporal_workflow_completed_total")):
                break
            await asyncio.sleep(0.1)
    yield MetricsRun(address, text, handle.id, client)


async def test_the_endpoint_serves_the_runs_gate_metrics(metrics_run: MetricsRun):
    text = metrics_run.text
    wf = {"workflow_type": "SdlcWorkflow", "gate": GATE_1}
    assert value(text, "orchestrator_gates_opened_total", **wf) == 1
    assert value(text, "orchestrator_gates_closed_total", **wf, outcome="decided") == 1
    assert value(text, "orchestrator_gate_decisions_total", **wf, verdict="approve",
                 source="update") == 1
    assert value(text, "orchestrator_gate_refused_total", workflow_type="SdlcWorkflow",
                 source="signal") == 1
    # the decision came WAIT (1.5 s; more on a loaded machine) after the gate opened
    hist = {**wf, "verdict": "approve"}
    assert value(text, "orchestrator_gate_wait_seconds_count", **hist) == 1
    waited = value(text, "orchestrator_gate_wait_seconds_sum", **hist)
    assert waited is not None and WAIT.total_seconds() <= waited < WAIT.total_seconds() + 60
    assert value(text, "orchestrator_gate_wait_seconds_bucket", **hist, le="1") == 0
    assert value(text, "orchestrator_gate_wait_seconds_bucket", **hist, le="300") == 1


async def test_a_replay_of_the_run_counts_nothing(metrics_run: MetricsRun):
    """A worker that replays the run's history (after a restart or a cache eviction)
    records no orchestrator metric: the meters are replay-safe."""
    address = f"127.0.0.1:{free_port()}"
    history = await metrics_run.client.get_workflow_handle(
        metrics_run.workflow_id).fetch_history()
    runtime = build_runtime(address)  # serves while referenced
    result = await replayer([SdlcWorkflow], runtime).replay_workflow(history)
    assert result.replay_failure is None
    await asyncio.sleep(1)  # what a replay recorded would be exported by now
    text = scrape(address)
    del runtime
    assert "temporal_workflow_completed" not in text
    assert not [line for line in text.splitlines() if line.startswith("orchestrator_")]


async def test_the_endpoint_serves_the_sdk_metrics(metrics_run: MetricsRun):
    text = metrics_run.text
    assert value(text, "temporal_workflow_completed_total", workflow_type="SdlcWorkflow") == 1
    assert "temporal_workflow_task_execution_latency_bucket" in text
    assert "temporal_sticky_cache_size" in text or "temporal_num_pollers" in text


def dashboard_queries() -> list[str]:
    """Every PromQL expression of deploy/grafana/orchestrator.json."""
    dashboard = json.loads((ROOT / "deploy/grafana/orchestrator.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_dashboard_charts_every_metric_we_emit():
    exprs = " ".join(dashboard_queries())
    for name in (metrics.GATES_OPENED, metrics.GATES_CLOSED, metrics.GATE_WAIT,
                 metrics.GATE_DECISIONS, metrics.GATE_REFUSED, metrics.LLM_TOKENS,
                 metrics.LLM_COST, metrics.STEP_DURATION, metrics.BREAKER_TRANSITIONS,
                 metrics.LEARNING_ANSWERS, metrics.MASTERY_EVENTS):
        assert name in exprs, f"{name} is on no panel"


def _prometheus() -> str | None:
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None)


@pytest.mark.skipif(_prometheus() is None,
                    reason="Debian's prometheus package is not installed "
                           "(.ci/run installs it: apt-get install -y prometheus)")
async def test_prometheus_scrapes_the_worker_and_answers_promql(metrics_run: MetricsRun,
                                                                tmp_path: Path):
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "orchestrator-worker",
                            "static_configs": [{"targets": [metrics_run.address]}]}]}))
    proc = subprocess.Popen(
        [str(_prometheus()), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'db'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    query = 'sum by (le) (orchestrator_gate_wait_seconds_bucket{gate="' + GATE_1 + '"})'
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        buckets: dict[str, float] = {}
        for _ in range(120):  # start-up and the first scrapes: seconds on a loaded machine
            await asyncio.sleep(0.5)
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    body = json.load(resp)
            except OSError:
                continue
            buckets = {r["metric"]["le"]: float(r["value"][1]) for r in body["data"]["result"]}
            if buckets:
                break
        assert buckets, f"Prometheus returned no series for {query}"
        assert buckets["1"] == 0 and buckets["300"] == 1 and buckets["+Inf"] == 1
        # every query of the Grafana dashboard is PromQL this Prometheus accepts
        for expr in dashboard_queries():
            expr = expr.replace("$__rate_interval", "1m").replace("$__range", "1h")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query?"
                                        + urllib.parse.urlencode({"query": expr}),
                                        timeout=5) as resp:
                assert json.load(resp)["status"] == "success", expr
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_the_worker_process_serves_metrics_and_logs_json_lines(dev_env, tmp_path):
    """`python worker.py` with METRICS_BIND and LOG_FORMAT=json: its endpoint serves
    the SDK's metrics while it polls, and every line it logs is one JSON object."""
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
           "TEMPORAL_TASK_QUEUE": f"metrics-{uuid.uuid4()}",
           "ORCHESTRATOR_HOME": str(tmp_path / "home"), "METRICS_BIND": address,
           "LOG_FORMAT": "json"}
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        text = ""
        for _ in range(300):
            await asyncio.sleep(0.1)
            assert proc.poll() is None, log.read_text()
            try:
                text = scrape(address)
            except OSError:
                continue
            if "temporal_num_pollers" in text:
                break
        assert "temporal_num_pollers" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    messages = [r["message"] for r in records]
    assert f"metrics at http://{address}/metrics" in messages
    assert any(m.startswith("worker polling task queue") for m in messages)
    assert messages[-1] == "worker stopped"
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
