"""Settings of secret handling: which variables are secrets, and which the agent
runners may see (see ``activities.secrets``)."""

from __future__ import annotations

from pydantic import Field

from settings.base import EnvSettings, NameList


class SecretSettings(EnvSettings):
    """More secret names to scrub, and the secrets the agent runners are granted."""

    secret_env: NameList = Field(
        default_factory=list, description="more environment variables whose values are "
        "secrets (besides ANTHROPIC_API_KEY, GITHUB_TOKEN, EXA_API_KEY, TEMPORAL_API_KEY): "
        "scrubbed to *** from activity results, errors and artifacts")
    agent_secret_env: NameList = Field(
        default_factory=list, description="secret variables the `command` and `claude` agent "
        "runners may see (claude always gets ANTHROPIC_API_KEY)")
