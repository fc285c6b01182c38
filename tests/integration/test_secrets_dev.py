"""Secrets stay on the worker (dev server, real shell steps, the real `temporal` CLI).

A worker holds four secrets; a workstream step prints its whole environment and
fails, python steps return and raise a secret. The history as
``temporal workflow show --output json`` prints it and every file of the
artifact store and the workspace are then searched for the secret values.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from temporalio.client import WorkflowFailureError

from models.workstream import RouterConfig, WorkstreamInput, WorkstreamSpec
from settings import Settings
from temporal_plumbing.environments import temporal_executable
from tests.integration.test_cli import acli, assert_one_line_error, env  # noqa: F401
from worker import make_worker

CALLABLES = "tests.workflows.workstream_callables"


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Secret values in the worker's environment (the known names and a SECRET_ENV one)."""
    values = {name: f"{name.lower()}-{uuid.uuid4().hex}" for name in (
        "ANTHROPIC_API_KEY", "EXA_API_KEY", "DB_PASSWORD")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SECRET_ENV", "DB_PASSWORD")
    return values


def history_json(address: str, workflow_id: str) -> str:
    """``temporal workflow show --output json`` of a workflow, as text."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    return subprocess.run(
        [temporal_executable(), "workflow", "show", "--address", address, "--namespace",
         "default", "--workflow-id", workflow_id, "--output", "json"],
        capture_output=True, text=True, check=True, env=clean, timeout=60).stdout


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts]


async def test_step_printing_its_environment_leaks_no_secret(
        dev_env, task_queue, tmp_path, secrets):
    router = {"tools": {"sh": {"adapter": "shell", "breaker": None,
                               "secrets": ["DB_PASSWORD"]},
                        "py": {"adapter": "python", "breaker": None}},
              "routes": {"shell": {"tools": ["sh"]}, "python": {"tools": ["py"]}}}
    router_file = tmp_path / "router.yaml"
    router_file.write_text(yaml.safe_dump(router))
    home = tmp_path / "home"
    settings = Settings(orchestrator_home=home, temporal_task_queue=task_queue,
                        anthropic_api_key=None, llm_provider="offline",
                        workstream_router_config=router_file,
                        workstream_python_modules=[CALLABLES])
    inp = WorkstreamInput(
        spec=WorkstreamSpec.model_validate({"work_item": f"leak-{uuid.uuid4().hex[:8]}",
                                            "steps": [
            {"id": "env", "kind": "shell",
             "inputs": {"script": 'env; echo "granted=$DB_PASSWORD" >&2; exit 3'}},
            {"id": "ret", "kind": "python",
             "inputs": {"callable": f"{CALLABLES}:leak", "kwargs": {"name": "EXA_API_KEY"}}},
            {"id": "err", "kind": "python", "inputs": {
                "callable": f"{CALLABLES}:leak_in_error",
                "kwargs": {"name": "ANTHROPIC_API_KEY"}}},
        ]}), router=RouterConfig.model_validate(router), spec_dir=str(tmp_path))
    wf_id = f"workstream-{inp.spec.work_item}"
    async with make_worker(dev_env.client, settings):
        handle = await dev_env.client.start_workflow(
            "WorkstreamWorkflow", inp, id=wf_id, task_queue=task_queue)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert "env" in str(failed.value.cause) and "exited with code 3" in history_json(
        dev_env.client.service_client.config.target_host, wf_id)

    history = history_json(dev_env.client.service_client.config.target_host, wf_id)
    for name, value in secrets.items():
        assert value not in history, f"{name} is in the workflow history"
    assert "***" in history  # the granted secret printed on stderr, scrubbed

    artifacts = home / "artifacts"
    assert stat.S_IMODE(artifacts.stat().st_mode) == 0o700
    written = files_under(artifacts)
    assert {p.name for p in written} >= {"stdout.txt", "stderr.txt", "result.json"}
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        if path.parent != artifacts:
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent
    for path in written + files_under(home / "workspaces"):
        text = path.read_text(errors="replace")
        for name, value in secrets.items():
            assert value not in text, f"{name} is in {path}"
    stdout = next(p for p in written if p.name == "stdout.txt" and "/env/" in str(p)
                  ).read_text()
    stderr = next(p for p in written if p.name == "stderr.txt" and "/env/" in str(p)
                  ).read_text()
    # the step's environment was the allowlist: no worker secret, not even by name
    names = {line.split("=", 1)[0] for line in stdout.splitlines() if "=" in line}
    assert "WORKSTREAM_STEP" in names and "PATH" in names
    assert not names & {"ANTHROPIC_API_KEY", "EXA_API_KEY", "SECRET_ENV"}
    assert "DB_PASSWORD=***" in stdout  # granted to this tool, scrubbed in the artifact
    assert "granted=***" in stderr  # granted by the worker's tool config, then scrubbed
    result = json.loads(next(p for p in written if p.name == "result.json").read_text())
    assert result == {"value": ""}  # a python step runs in a subprocess with the allowlist


async def test_cli_start_of_a_spec_the_worker_refuses_is_one_error_line(
        dev_env, env, task_queue, tmp_path):  # noqa: F811
    (tmp_path / "router.yaml").write_text(yaml.safe_dump({
        "tools": {"mine": {"adapter": "shell", "secrets": ["GITHUB_TOKEN"]}},
        "routes": {"build": {"tools": ["mine"]}}}))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "work_item": f"refused-{uuid.uuid4().hex[:6]}", "router_config": "router.yaml",
        "steps": [{"id": "steal", "kind": "build",
                   "inputs": {"script": 'echo "$GITHUB_TOKEN" > stolen'}}]}))
    settings = Settings(orchestrator_home=tmp_path / "home", temporal_task_queue=task_queue)
    async with make_worker(dev_env.client, settings):
        proc = await acli("workstream", "start", str(spec), env=env)
    assert_one_line_error(proc, "refused by the worker's tool configuration: tool 'mine' "
                                "is not defined by this worker's router config")
    assert proc.returncode == 1 and not list(tmp_path.rglob("stolen"))
