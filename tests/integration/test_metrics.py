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
from anthropic import AsyncAnthropic
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.runtime import Runtime
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.llm import AnthropicProvider, LlmActivities
from models.common import GateDecision, Verdict
from models.sdlc import GATE_1, SdlcResult, SdlcState
from settings import DEFAULT_LLM_PRICES, Settings
from temporal_plumbing import metrics
from temporal_plumbing.client import connect_client
from temporal_plumbing.environments import free_port
from temporal_plumbing.runtime import build_runtime
from temporal_plumbing.workers import replayer
from tests.conftest import NO_SIGNERS
from tests.fakes import anthropic_api as api
from tests.fault_harness import start_workstream, wait_file, workstream_input
from tests.workflows.llm_probe import LlmProbeWorkflow, ProbeInput
from tests.workflows.test_sdlc import FakeActivities, request
from worker import make_worker
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
        await handle.signal(SdlcWorkflow.gate_decision,
                            {"gate": GATE_1, "verdict": "maybe", "actor": "bob"})
        await until_counted(address, "orchestrator_gate_refused_total")
        await handle.execute_update(SdlcWorkflow.decide_gate, GateDecision(
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
                 metrics.LEARNING_ANSWERS, metrics.MASTERY_EVENTS, metrics.TRANSITIONS,
                 metrics.LLM_FAILURES):
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


async def metrics_client(env: WorkflowEnvironment) -> tuple[str, Runtime, Client]:
    """A runtime of its own that serves metrics at the returned address (its series
    start at zero), and a client of ``env``'s server on it."""
    address = f"127.0.0.1:{free_port()}"
    runtime = build_runtime(address)
    client = await connect_client(runtime, target_host=env.client.service_client.config.target_host,
                                  namespace=env.client.namespace)
    return address, runtime, client


async def until_value(address: str, name: str, wanted: float, **labels: str) -> str:
    """The endpoint's text once the summed series of ``name`` with ``labels`` reach
    ``wanted`` (the exporter publishes within moments), else the last text."""
    text = ""
    for _ in range(300):
        text = scrape(address)
        if (value_sum(text, name, **labels) or 0) >= wanted:
            break
        await asyncio.sleep(0.1)
    return text


def value_sum(text: str, name: str, **labels: str) -> float | None:
    """The sum of every series of ``name`` whose labels include ``labels``."""
    found = []
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if m and m.group(1) == name:
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                found.append(float(m.group(3)))
    return sum(found) if found else None


async def test_a_worker_without_a_cache_counts_each_event_once(dev_env: WorkflowEnvironment):
    """max_cached_workflows=0: every task replays the whole history, and a query that
    arrives while a workflow task is pending is answered by running the workflow
    through the events that task has yet to process, as live code (the SDK does not
    mark them replaying). With queries polling each run the whole time (as ``--follow``
    and ``status`` do), each gate, decision and transition still counts once."""
    address, _runtime, client = await metrics_client(dev_env)
    runs = 2
    task_queue = f"metrics-nocache-{uuid.uuid4()}"
    async with Worker(client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*FakeActivities().all(), NO_SIGNERS],
                      max_cached_workflows=0):
        handles = [await client.start_workflow(SdlcWorkflow.run, request(),
                                               id=f"sdlc-{uuid.uuid4()}", task_queue=task_queue)
                   for _ in range(runs)]
        done = asyncio.Event()

        async def state_of(handle: WorkflowHandle) -> SdlcState | None:
            try:
                return await handle.query(SdlcWorkflow.state)
            except RPCError:  # a loaded worker answers late: ask again
                return None

        async def gate_open(handle: WorkflowHandle, round_: int) -> None:
            while True:
                state = await state_of(handle)
                if state and state.round == round_ and state.pending_gates:
                    return
                await asyncio.sleep(0.05)

        async def watch(handle: WorkflowHandle) -> None:
            while not done.is_set():
                await state_of(handle)
                await asyncio.sleep(0.03)

        watchers = [asyncio.create_task(watch(h)) for h in handles]
        try:
            for handle in handles:  # a refused signal, a revise, then an approve
                await gate_open(handle, 1)
                await handle.signal(SdlcWorkflow.gate_decision,
                                    {"gate": GATE_1, "verdict": "maybe", "actor": "bob"})
                await handle.execute_update(SdlcWorkflow.decide_gate, GateDecision(
                    gate=GATE_1, verdict=Verdict.REVISE, actor="ann", comment="more"))
                await gate_open(handle, 2)
                await handle.execute_update(SdlcWorkflow.decide_gate, GateDecision(
                    gate=GATE_1, verdict=Verdict.APPROVE, actor="ann"))
                await handle.result()
        finally:
            done.set()
            await asyncio.gather(*watchers)
        text = await until_value(address, "orchestrator_transitions_total", runs, to="DONE")
    wf = {"workflow_type": "SdlcWorkflow"}
    counted = {name: value_sum(text, f"orchestrator_{name}_total", **wf) for name in
               ("gates_opened", "gates_closed", "gate_decisions", "gate_refused")}
    assert counted == {"gates_opened": 2 * runs, "gates_closed": 2 * runs,
                       "gate_decisions": 2 * runs, "gate_refused": runs}
    transitions = {to: value_sum(text, "orchestrator_transitions_total", **wf, to=to)
                   for to in ("PHASE_1", "PHASE_2", "GATE_1", "DONE")}
    assert transitions == {"PHASE_1": runs, "PHASE_2": 2 * runs, "GATE_1": 2 * runs,
                           "DONE": runs}


async def test_a_failed_llm_call_is_counted(dev_env: WorkflowEnvironment, tmp_path: Path):
    """A call the Messages API refuses (400: not retried) counts once in
    orchestrator_llm_failures with its phase, model and error type."""
    address, _runtime, client = await metrics_client(dev_env)
    (tmp_path / "judge.md").write_text("---\noffline: 'x'\n---\nJudge {topic}.\n")
    task_queue = f"metrics-llm-{uuid.uuid4()}"
    with api.serve() as fake:
        fake.script = [api.error(400, "bad request")]
        acts = LlmActivities(AnthropicProvider(
            AsyncAnthropic(api_key="sk-test", base_url=fake.url, max_retries=0),
            "claude-sonnet-4-6", {}, DEFAULT_LLM_PRICES), tmp_path)
        async with Worker(client, task_queue=task_queue, workflows=[LlmProbeWorkflow],
                          activities=[acts.llm_complete, NO_SIGNERS]):
            handle = await client.start_workflow(
                LlmProbeWorkflow.run, ProbeInput(phases=["judge"]),
                id=f"probe-{uuid.uuid4()}", task_queue=task_queue)
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    labels = {"phase": "judge", "model": "claude-sonnet-4-6", "error": "AnthropicHTTP400"}
    text = await until_value(address, "orchestrator_llm_failures_total", 1, **labels)
    assert value(text, "orchestrator_llm_failures_total", **labels) == 1
    assert value_sum(text, "orchestrator_llm_tokens_total") is None  # no call answered


async def test_a_step_cancelled_with_its_run_is_counted(dev_env: WorkflowEnvironment,
                                                        tmp_path: Path):
    """Cancelling a workstream run while its step runs: the step's execution counts
    in orchestrator_step_duration_seconds with outcome ``canceled``."""
    address, _runtime, client = await metrics_client(dev_env)
    task_queue = f"metrics-steps-{uuid.uuid4()}"
    started = tmp_path / "started"
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    inp = workstream_input([{"id": "long", "kind": "shell",
                             "inputs": {"script": f"echo up > {started}; sleep 60"}}],
                           spec_dir=tmp_path)
    async with make_worker(client, settings):
        handle = await start_workstream(client, task_queue, inp)
        await asyncio.to_thread(wait_file, started)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    name = "orchestrator_step_duration_seconds_count"
    text = await until_value(address, name, 1, outcome="canceled")
    assert value(text, name, workflow_type="WorkstreamWorkflow", outcome="canceled") == 1


async def open_gates(handle: WorkflowHandle) -> list:
    """The run's open gates, or [] while a query goes unanswered (one sent as the run
    continues as new: ask again, with a deadline, instead of waiting on it)."""
    try:
        return await handle.query(SdlcWorkflow.pending_gates,
                                  rpc_timeout=timedelta(seconds=2))
    except RPCError:
        return []


async def test_a_gate_carried_over_continue_as_new_stays_one_open_gate(private_ts_env,
                                                                      task_queue):
    """A gate still open when its run continues as new (the history budget) is neither
    closed by that run nor opened again by the next: opened - closed stays the gates
    open now, and the decision in the last run closes the one gate."""
    # its own server: the time-skipping server leaves a query that arrives while a run
    # continues as new unanswered and stops skipping time, which would hang later tests
    ts_env = private_ts_env
    address, _runtime, client = await metrics_client(ts_env)
    async with Worker(client, task_queue=task_queue, workflows=[SdlcWorkflow],
                      activities=[*FakeActivities().all(), NO_SIGNERS]):
        handle = await client.start_workflow(
            SdlcWorkflow.run, request(reminder_interval=timedelta(minutes=1),
                                      history_budget=100),
            id=f"sdlc-{uuid.uuid4()}", task_queue=task_queue)
        first_run = handle.result_run_id
        while not await handle.query(SdlcWorkflow.pending_gates):
            await asyncio.sleep(0.05)
        for _ in range(6):  # reminders every minute fill the history
            await ts_env.sleep(timedelta(minutes=10))
        assert (await handle.describe()).run_id != first_run  # continued as new
        while not await open_gates(handle):
            await asyncio.sleep(0.05)
        await handle.execute_update(SdlcWorkflow.decide_gate, GateDecision(
            gate=GATE_1, verdict=Verdict.APPROVE, actor="ann"))
        assert (await client.get_workflow_handle(handle.id).result())["phase"] == "DONE"
        text = await until_value(address, "orchestrator_gates_closed_total", 1)
    wf = {"workflow_type": "SdlcWorkflow", "gate": GATE_1}
    assert value_sum(text, "orchestrator_gates_opened_total", **wf) == 1
    assert value_sum(text, "orchestrator_gates_closed_total", **wf) == 1
    assert value(text, "orchestrator_gates_closed_total", **wf, outcome="decided") == 1
