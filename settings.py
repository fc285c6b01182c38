"""Every environment variable the worker and the CLI read, validated once.

Temporal connection settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE) are read by
``temporalio.envconfig`` in :func:`temporal_connect_config`; everything else is
a field of :class:`Settings`. Values also come from a ``.env`` file in the
working directory. Workflows never read settings: the CLI copies what a
workflow needs into its input.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"


class SettingsError(ValueError):
    """The environment holds an invalid or missing setting; the message names it."""


class Settings(BaseSettings):
    """Process settings; each field is the environment variable of the same name
    in upper case (``temporal_task_queue`` <- ``TEMPORAL_TASK_QUEUE``)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    temporal_task_queue: str = Field(
        "orchestrator", description="task queue the worker polls and the CLI starts on")
    temporal_ui_url: str = Field(
        "http://localhost:8233", description="web UI base URL, for links the CLI prints")
    orchestrator_home: Path = Field(
        Path(".orchestrator"),
        description="local state: dev-server database, worktrees, local issues, artifacts")
    agent_runner: Literal["offline", "command", "claude"] = Field(
        "offline", description="default agent runner of the SDLC workflow")
    agent_command: str = Field(
        "", description="shell command of the `command` agent runner (request on stdin)")
    claude_executable: str = Field("claude", description="the Claude Code CLI for `claude`")
    agent_timeout: timedelta = Field(
        timedelta(minutes=30), description="wall-clock limit of one agent run")
    sdlc_max_rounds: int = Field(3, ge=1, description="spec rounds before an SDLC run FAILS")
    gate_reminder_interval: timedelta = Field(
        timedelta(hours=24), description="a reminder is recorded this often at an open gate")
    gate_expiry: timedelta | None = Field(
        None, description="an open gate expires after this long (unset: never)")

    # -- learning loop (issue 5) ----------------------------------------------
    database_url: str = Field(
        "", description="SQLAlchemy URL of the learning database (unset: SQLite file "
        "learning.db under ORCHESTRATOR_HOME; PostgreSQL: postgresql+psycopg://...)")
    learning_mastery_threshold: float = Field(
        0.95, gt=0, le=1, description="P(L) at which a knowledge component counts as mastered")
    learning_max_rounds: int = Field(
        30, ge=1, description="rounds (one test each) before a learning loop ends ROUND_LIMIT")
    learning_items_per_test: int = Field(3, ge=1, le=20, description="items per test")
    learning_test_reminder: timedelta = Field(
        timedelta(days=1), description="a reminder is recorded this often while a test is open")
    learning_test_expiry: timedelta = Field(
        timedelta(days=7), description="an open test expires after this long (not attempted)")
    learning_on_expiry: Literal["continue", "pause"] = Field(
        "continue", description="after an expired test: go on with the next round, or pause")
    learning_llm_grading: bool = Field(
        False, description="grade free-text answers with the LLM (else exact match)")

    @model_validator(mode="after")
    def _check_runner(self) -> Settings:
        if self.agent_runner == "command" and not self.agent_command.strip():
            raise ValueError(
                "AGENT_RUNNER=command needs AGENT_COMMAND, the shell command that writes "
                "the spec (it gets the request on stdin and SDLC_* variables)")
        return self

    @property
    def worktree_root(self) -> Path:
        """Where SDLC worktrees are made."""
        return (self.orchestrator_home / "worktrees").resolve()

    @property
    def issues_root(self) -> Path:
        """Where the local issue tracker keeps its issues."""
        return (self.orchestrator_home / "issues").resolve()

    @property
    def artifact_root(self) -> Path:
        """The artifact store's directory."""
        return (self.orchestrator_home / "artifacts").resolve()

    @property
    def learning_database_url(self) -> str:
        """DATABASE_URL, or the SQLite file ``learning.db`` under ORCHESTRATOR_HOME."""
        return self.database_url or (
            f"sqlite:///{(self.orchestrator_home / 'learning.db').resolve()}")


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings.

    Raises:
        SettingsError: a variable is invalid; the message names each one and why.
    """
    try:
        return Settings(**overrides)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}"
            for e in err.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None


async def connect_client() -> Any:
    """A ``temporalio.client.Client`` for the configured server, with the pydantic
    data converter (the one connection path of the worker and the CLI).

    Raises:
        ConnectionError: no Temporal server answers at the configured address;
            the message names the address and how to start one.
    """
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    config = temporal_connect_config()
    try:
        return await Client.connect(**config, data_converter=pydantic_data_converter)
    except RuntimeError as err:
        raise ConnectionError(
            f"cannot reach Temporal at {config['target_host']} ({err}); start one with "
            "`python starter.py dev-server` or set TEMPORAL_ADDRESS") from None


def temporal_connect_config() -> dict[str, Any]:
    """Keyword arguments for ``Client.connect`` from ``temporalio.envconfig``
    (TEMPORAL_* variables and the Temporal config file), defaulting to
    ``localhost:7233`` and namespace ``default``."""
    from temporalio.envconfig import ClientConfig

    config = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    return config
