"""Settings of the GitHub issue tracker (unset GITHUB_TOKEN/GITHUB_REPOSITORY: local
issues, no PR)."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import Field, field_validator, model_validator

from settings.base import EnvSettings, OptionalSecret, Seconds


class GitHubSettings(EnvSettings):
    """Token, repository, API URL, remote, label prefix and comment polling."""

    github_token: OptionalSecret = Field(
        None, description="token for the issue, labels, comments and pull request")
    github_repository: str | None = Field(
        None, description="owner/name of the GitHub repository of the SDLC issues and PRs")
    github_api_url: str = Field(
        "https://api.github.com", description="REST API base URL (Enterprise: https://HOST/api/v3)")
    github_remote: str = Field(
        "origin", description="git remote of the local repository that DONE pushes to")
    github_label_prefix: str = Field(
        "sdlc:", min_length=1, description="prefix of the phase labels (sdlc:gate-1)")
    github_poll_interval: Seconds = Field(
        timedelta(seconds=30), gt=timedelta(0),
        description="issue comments are polled this often at a gate")

    @field_validator("github_repository")
    @classmethod
    def _check_repository(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", value.strip()):
            raise ValueError(f"{value!r} is not owner/name, e.g. octo-org/shop")
        return value.strip() if value else None

    @model_validator(mode="after")
    def _check_github(self) -> GitHubSettings:
        if bool(self.github_token) != bool(self.github_repository):
            missing = "GITHUB_REPOSITORY" if self.github_token else "GITHUB_TOKEN"
            raise ValueError(f"GitHub needs both GITHUB_TOKEN and GITHUB_REPOSITORY: set "
                             f"{missing}, or unset the other to run without GitHub")
        return self

    @property
    def github_enabled(self) -> bool:
        """Whether the SDLC issue, labels, comments and PR live on GitHub."""
        return bool(self.github_token and self.github_repository)
