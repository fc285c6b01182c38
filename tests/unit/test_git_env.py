"""git subprocesses get an allowlisted environment: hooks that commit and push run see
no worker secret, and a push to GitHub gets the token through a credential helper
only (real git, real repositories, real hooks)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from activities.git import commit_round, git_env
from activities.github import push_branch, push_command, web_host
from settings import Settings, SettingsError
from tests.conftest import git
from worker import build_scrubber

SECRETS = {"ANTHROPIC_API_KEY": "sk-ant-worker-secret-1", "GITHUB_TOKEN": "ghp_workersecret22",
           "EXA_API_KEY": "exa-worker-secret-333", "TEMPORAL_API_KEY": "temporal-secret-4444",
           "DEPLOY_PASSWORD": "deploy-secret-55555"}
TOKEN = "ghp_tracker_token_666"


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's environment holds secrets (and a stray GIT_DIR git must not see)."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SECRET_ENV", "DEPLOY_PASSWORD")


def hook(repo: Path, name: str, dump: Path) -> None:
    """Install a hook that writes its environment to ``dump``."""
    path = repo / ".git" / "hooks" / name
    path.write_text(f"#!/bin/sh\nenv > '{dump}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def leaked(dump: Path) -> list[str]:
    text = dump.read_text()
    return [name for name, value in {**SECRETS, "tracker": TOKEN}.items() if value in text]


def test_commit_hooks_see_no_worker_secret(git_repo: Path, tmp_path: Path, worker_env):
    for name in ("pre-commit", "post-commit"):
        hook(git_repo, name, tmp_path / f"{name}.env")
    (git_repo / "spec.md").write_text("spec\n")
    commit_round(git_repo, "spec.md", "spec round 1", {"Workflow-Id": "wf"})
    for name in ("pre-commit", "post-commit"):
        dump = tmp_path / f"{name}.env"
        assert leaked(dump) == []
        variables = dict(line.split("=", 1) for line in dump.read_text().splitlines()
                         if "=" in line)
        assert "PATH" in variables and "HOME" in variables
        assert variables["GIT_TERMINAL_PROMPT"] == "0"


def test_a_push_to_another_remote_gets_no_token(git_repo: Path, tmp_path: Path, worker_env):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(git_repo, "remote", "add", "origin", str(remote))
    hook(git_repo, "pre-push", tmp_path / "pre-push.env")
    push = push_branch(git_repo, "origin", "main", TOKEN, "github.com")
    assert push.returncode == 0, push.stderr
    assert git(remote, "rev-parse", "main") == git(git_repo, "rev-parse", "main")
    assert leaked(tmp_path / "pre-push.env") == []


def test_a_push_to_github_gets_the_token_through_a_credential_helper(git_repo: Path,
                                                                    worker_env):
    git(git_repo, "remote", "add", "origin", "https://github.com/octo/shop.git")
    argv, env = push_command(git_repo, "origin", "001-csv", TOKEN, web_host(
        "https://api.github.com"))
    assert not any(TOKEN in arg for arg in argv)
    assert env["GITHUB_TOKEN"] == TOKEN
    assert [name for name, value in SECRETS.items() if value in env.values()] == []
    # the helper git is given answers with the token, from the push's environment
    config = argv[1:argv.index("push")]
    answer = subprocess.run(["git", *config, "credential", "fill"], cwd=git_repo, env=env,
                            input="protocol=https\nhost=github.com\n\n", text=True,
                            capture_output=True, check=True).stdout
    assert f"password={TOKEN}" in answer.splitlines()
    # another host, or ssh, gets neither the token nor the helper
    git(git_repo, "remote", "set-url", "origin", "https://gitlab.example/octo/shop.git")
    argv, env = push_command(git_repo, "origin", "001-csv", TOKEN, "github.com")
    assert "GITHUB_TOKEN" not in env and not any("credential" in arg for arg in argv)
    git(git_repo, "remote", "set-url", "origin", "git@github.com:octo/shop.git")
    argv, env = push_command(git_repo, "origin", "001-csv", TOKEN, "github.com")
    assert "GITHUB_TOKEN" not in env and env["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes"


def test_enterprise_hosts_are_derived_from_the_api_url():
    assert web_host("https://api.github.com") == "github.com"
    assert web_host("https://ghe.example.com/api/v3") == "ghe.example.com"


def test_git_env_is_an_allowlist(worker_env, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GIT_DIR", "/elsewhere/.git")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    env = git_env()
    assert "GIT_DIR" not in env and env["SSH_AUTH_SOCK"] == "/tmp/agent.sock"
    assert not set(SECRETS) & set(env)


def test_a_secret_too_short_to_scrub_stops_the_worker(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path):
    monkeypatch.setenv("DEPLOY_PASSWORD", "abc")
    settings = Settings(_env_file=None, orchestrator_home=tmp_path,
                        secret_env=["DEPLOY_PASSWORD"])
    with pytest.raises(SettingsError) as err:
        build_scrubber(settings)
    assert "DEPLOY_PASSWORD holds only 3 character(s)" in str(err.value)
    assert "abc" not in str(err.value).replace("DEPLOY_PASSWORD", "")
    monkeypatch.setenv("DEPLOY_PASSWORD", "abcdef")
    assert "abcdef" in build_scrubber(settings).values
