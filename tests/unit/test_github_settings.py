"""GitHub settings: both or neither of GITHUB_TOKEN and GITHUB_REPOSITORY, owner/name form."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio import activity

from cli.sdlc import feature_request
from settings import SettingsError, load_settings
from worker import build_activities


def activity_name(fn) -> str:
    return activity._Definition.must_from_callable(fn).name


def test_github_is_off_without_token_and_repository(monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    settings = load_settings()
    assert not settings.github_enabled
    names = {activity_name(fn) for fn in build_activities(settings)}
    assert "open_issue" in names and "poll_issue_comments" not in names


def test_github_settings_reach_the_worker_and_the_request(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken-value")
    monkeypatch.setenv("GITHUB_REPOSITORY", "octo/shop")
    monkeypatch.setenv("GITHUB_POLL_INTERVAL", "5")
    settings = load_settings()
    assert settings.github_enabled and "t0ken-value" not in repr(settings)
    names = {activity_name(fn) for fn in build_activities(settings)}
    assert {"poll_issue_comments", "post_issue_comment", "open_pull_request"} <= names
    req = feature_request(settings, title="t", repo_path="/r")
    assert req.comment_poll_interval == timedelta(seconds=5)


@pytest.mark.parametrize(("env", "message"), [
    ({"GITHUB_TOKEN": "t"}, "set GITHUB_REPOSITORY"),
    ({"GITHUB_REPOSITORY": "octo/shop"}, "set GITHUB_TOKEN"),
    ({"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "shop"}, "GITHUB_REPOSITORY: "),
    ({"GITHUB_POLL_INTERVAL": "0"}, "GITHUB_POLL_INTERVAL: "),
])
def test_incomplete_github_settings_are_named(monkeypatch, env, message):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert message in str(err.value)
