"""The worker is the authority on tools: a run that brings tools, routes or python
callables the worker does not allow fails before any step runs (time-skipping
server, the worker's real activities)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from models.workstream import (
    DEFAULT_ROUTER_CONFIG,
    RouterConfig,
    StepAttempt,
    WorkstreamInput,
    WorkstreamReport,
    WorkstreamSpec,
)
from settings import Settings
from worker import make_worker

CALLABLES = "tests.workflows.workstream_callables"


def _input(tmp: Path, router: dict, steps: list[dict]) -> WorkstreamInput:
    return WorkstreamInput(
        spec=WorkstreamSpec.model_validate({"work_item": f"auth-{uuid.uuid4().hex[:8]}",
                                            "steps": steps}),
        router=RouterConfig.model_validate(router), spec_dir=str(tmp))


async def _run(env: WorkflowEnvironment, settings: Settings, inp: WorkstreamInput
               ) -> tuple[BaseException | None, WorkstreamReport]:
    async with make_worker(env.client, settings):
        handle = await env.client.start_workflow(
            "WorkstreamWorkflow", inp, id=f"workstream-{inp.spec.work_item}",
            task_queue=settings.temporal_task_queue)
        error = None
        try:
            await handle.result()
        except WorkflowFailureError as err:
            error = err.cause
        return error, await handle.query("report", result_type=WorkstreamReport)


async def test_run_with_tools_the_worker_does_not_define_is_refused_before_it_starts(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str):
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    forged = {"tools": {"shell": {"adapter": "shell", "secrets": ["GITHUB_TOKEN"]},
                        "python": {"adapter": "python"}},
              "routes": {"shell": {"tools": ["shell"]}, "python": {"tools": ["python"]}}}
    inp = _input(tmp_path, forged, [
        {"id": "a", "kind": "shell", "inputs": {"script": "touch ran"}},
        {"id": "b", "kind": "python", "inputs": {"callable": "os:system",
                                                 "kwargs": {"command": "touch ran"}}}])
    error, report = await _run(ts_env, settings, inp)
    assert error is not None
    message = str(error)
    assert "refused by the worker's tool configuration" in message
    assert "tool 'shell' differs from this worker's definition in secrets" in message
    assert "module 'os' is not in this worker's WORKSTREAM_PYTHON_MODULES" in message
    assert report.state.value == "failed" and report.attempts == [] and report.workspace is None


async def test_python_step_may_call_only_functions_of_allowlisted_modules(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str):
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                        workstream_python_modules=[CALLABLES])
    inp = _input(tmp_path, DEFAULT_ROUTER_CONFIG, [
        {"id": "calc", "kind": "python",
         "inputs": {"callable": f"{CALLABLES}:area", "kwargs": {"width": 2, "height": 3}}},
        {"id": "imported", "kind": "python", "inputs": {"callable": f"{CALLABLES}:getpid"}}])
    error, report = await _run(ts_env, settings, inp)
    assert error is not None
    by_step: dict[str, StepAttempt] = {a.step: a for a in report.attempts}
    assert by_step["calc"].outcome == "succeeded"
    assert by_step["imported"].outcome == "failed"
    assert "is not a function defined in" in by_step["imported"].error


@pytest.mark.parametrize("trust", [False, True])
async def test_worker_router_config_defines_the_tools(
        ts_env: WorkflowEnvironment, tmp_path: Path, task_queue: str, trust: bool):
    router = {"tools": {"sh": {"adapter": "shell", "breaker": None}},
              "routes": {"build": {"tools": ["sh"]}}}
    path = tmp_path / "router.yaml"
    path.write_text('tools: {sh: {adapter: shell, breaker: null}}\n'
                    'routes: {build: {tools: [sh]}}\n')
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue,
                        workstream_router_config=path, workstream_trust_spec_tools=trust)
    ok = _input(tmp_path, router, [{"id": "a", "kind": "build", "inputs": {"argv": ["true"]}}])
    error, report = await _run(ts_env, settings, ok)
    assert error is None and report.state.value == "succeeded"
    own = _input(tmp_path, {"tools": {"mine": {"adapter": "shell"}},
                            "routes": {"build": {"tools": ["mine"]}}},
                 [{"id": "a", "kind": "build", "inputs": {"argv": ["true"]}}])
    error, report = await _run(ts_env, settings, own)
    if trust:
        assert error is None
    else:
        assert "tool 'mine' is not defined by this worker's router config" in str(error)
