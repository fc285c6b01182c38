"""Secret handling: subprocess environments, scrubbing, the private artifact store,
the worker's tool authority and the settings that drive them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError

from activities.artifacts import ArtifactStore
from activities.secrets import REDACTED, Scrubber, secret_names, subprocess_env
from models.workstream import (
    DEFAULT_ROUTER_CONFIG,
    RouterConfig,
    ToolAuthority,
    ToolSpec,
    WorkstreamInput,
    WorkstreamSpec,
)
from settings import load_settings

SECRET = "sk-ant-0123456789abcdef"


def test_subprocess_env_is_an_allowlist():
    environ = {"PATH": "/bin", "HOME": "/home/w", "LANG": "C.UTF-8",
               "ANTHROPIC_API_KEY": SECRET, "GITHUB_TOKEN": "ghp_x1234567", "OTHER": "x"}
    env = subprocess_env({"WORKSTREAM_STEP": "a"}, tool_env={"MODE": "ci"},
                         grants=["GITHUB_TOKEN", "UNSET"], environ=environ)
    assert env == {"PATH": "/bin", "HOME": "/home/w", "LANG": "C.UTF-8",
                   "GITHUB_TOKEN": "ghp_x1234567", "MODE": "ci", "WORKSTREAM_STEP": "a"}
    # the caller's own variables win over the tool's and the worker's
    assert subprocess_env({"MODE": "own"}, tool_env={"MODE": "tool"}, environ={})["MODE"] == "own"


def test_scrubber_replaces_values_in_text_data_and_models():
    s = Scrubber([SECRET, "short", ""])
    assert s.values == [SECRET]  # too short and empty values are not secrets
    assert s.text(f"key={SECRET}!") == f"key={REDACTED}!"
    assert s.data(f"a {SECRET}".encode()) == b"a ***"
    spec = ToolSpec(adapter="shell", env={"K": SECRET})
    assert s.value(spec).env == {"K": REDACTED}
    assert s.value({"a": [SECRET, 1, None]}) == {"a": [REDACTED, 1, None]}
    clean = ToolSpec(adapter="shell")
    assert s.value(clean) is clean
    # a constraint the scrubbed form breaks: the JSON dict goes on the wire instead
    class Key(BaseModel):
        key: str = Field(pattern=r"^sk-")

    assert s.value(Key(key=SECRET)) == {"key": REDACTED}


def test_scrubber_rebuilds_errors_keeping_type_and_retry_behaviour():
    s = Scrubber([SECRET])
    err = ApplicationError(f"failed: {SECRET}", {"out": SECRET}, type="ExitCode1",
                           non_retryable=True)
    clean = s.error(err)
    assert isinstance(clean, ApplicationError)
    assert clean.message == "failed: ***" and clean.details == ({"out": "***"},)
    assert clean.type == "ExitCode1" and clean.non_retryable
    other = s.error(RuntimeError(SECRET))
    assert isinstance(other, ApplicationError) and other.type == "RuntimeError"
    assert SECRET not in str(other)
    try:
        try:
            raise KeyError(SECRET)
        except KeyError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as outer:
        chained = s.error(outer)
    assert chained is not None and chained.__cause__ is None  # the leaking chain is dropped
    assert s.error(ValueError("harmless")) is None


def test_secret_names_add_secret_env():
    assert secret_names(["DB_PASSWORD", " ", "GITHUB_TOKEN"]) == [
        "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "EXA_API_KEY", "TEMPORAL_API_KEY", "DB_PASSWORD"]


def test_artifact_store_is_private_and_scrubbed(tmp_path: Path):
    root = tmp_path / "artifacts"
    root.mkdir(mode=0o755)
    store = ArtifactStore(root, Scrubber([SECRET]))
    ref = store.write("a/b/out.txt", f"token {SECRET}\n")
    path = Path(ref.path)
    assert path.read_text() == "token ***\n" and ref.bytes == len("token ***\n")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "a" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.read(ref) == b"token ***\n"


def test_settings_read_name_lists(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SECRET_ENV", "DB_PASSWORD, SMTP_PASSWORD")
    monkeypatch.setenv("WORKSTREAM_PYTHON_MODULES", '["pkg.steps"]')
    s = load_settings()
    assert s.secret_env == ["DB_PASSWORD", "SMTP_PASSWORD"]
    assert s.workstream_python_modules == ["pkg.steps"]
    assert load_settings(agent_secret_env="").agent_secret_env == []


def _inp(router: dict, steps: list[dict]) -> WorkstreamInput:
    return WorkstreamInput(spec=WorkstreamSpec.model_validate({"work_item": "w", "steps": steps}),
                           router=RouterConfig.model_validate(router))


def test_tool_authority_refuses_what_the_worker_does_not_define():
    worker = ToolAuthority(router=RouterConfig.model_validate(DEFAULT_ROUTER_CONFIG),
                           python_modules=["pkg.steps"])
    default_ok = _inp(DEFAULT_ROUTER_CONFIG, [
        {"id": "a", "kind": "shell", "inputs": {"script": "true"}},
        {"id": "b", "kind": "python", "inputs": {"callable": "pkg.steps:run"}}])
    assert worker.problems(default_ok) == []
    forged = _inp({"tools": {"shell": {"adapter": "shell", "secrets": ["GITHUB_TOKEN"]},
                             "mine": {"adapter": "shell"},
                             "python": {"adapter": "python"}},
                   "routes": {"shell": {"tools": ["shell"]}, "x": {"tools": ["mine"]},
                              "python": {"tools": ["python"]}}},
                  [{"id": "a", "kind": "x"},
                   {"id": "b", "kind": "python", "inputs": {"callable": "os:system"}},
                   {"id": "c", "kind": "python", "inputs": {"callable": "pkg.steps:_private"}}])
    problems = "\n".join(worker.problems(forged))
    assert "tool 'shell' differs from this worker's definition in secrets" in problems
    assert "tool 'mine' is not defined by this worker's router config" in problems
    assert "route 'x' is not defined" in problems
    assert "module 'os' is not in this worker's WORKSTREAM_PYTHON_MODULES" in problems
    assert "'pkg.steps:_private' is not 'package.module:function'" in problems
    # trusting spec tools accepts them, but grants no secret the worker did not
    trusting = worker.model_copy(update={"trust_spec_tools": True})
    assert all("python" in p for p in trusting.problems(forged))
    assert trusting.granted_secrets("shell", forged.router.tools["shell"]) == []
