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

from pydantic import Field, ValidationError, field_validator, model_validator
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
        return await Client.connect(**config, data_converter=pydantic_data_converter,
                                    runtime=process_runtime())
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


# -- Performance and recovery (issue 7) ---------------------------------------
# Defaults tuned on a 2-core machine; bench/run_all.py measures what each gives.
# Each default says why it is what it is.


class PerformanceSettings(BaseSettings):
    """Dev-server tuning, crash recovery and worker concurrency; each field is the
    environment variable of the same name in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    dev_server_tuned: bool = Field(
        True, description="start the embedded dev server with cli.server.TUNED_DYNAMIC_CONFIG "
        "(false: the stock server, for comparison)")
    dev_server_dynamic_config: dict[str, Any] = Field(
        default_factory=dict, description="JSON object of extra dev-server dynamic config "
        "values; a key here overrides the tuned value of the same key")
    # A killed worker's sticky queue keeps its workflow tasks until this passes;
    # then they go to the shared queue and any worker takes them (SDK default 10 s).
    sticky_schedule_to_start_timeout: timedelta = Field(
        timedelta(milliseconds=500),
        description="how long a workflow task waits for the worker that cached the workflow")
    # A workflow task started by a worker that then died is retried after this
    # (server default 10 s). Ours take milliseconds; 2 s leaves room for a cold
    # replay of a long history on a busy 2-core machine.
    workflow_task_timeout: timedelta = Field(
        timedelta(seconds=2), description="start-to-close timeout of one workflow task")
    # Long activities heartbeat: the timeout is workflow-side (workflows never read
    # settings): workflows/policies.py AGENT_HEARTBEAT_TIMEOUT, 5 s.
    # On SIGTERM the worker stops polling at once (releasing its sticky queue, so
    # the server hands its workflows to another worker without waiting for the
    # sticky timeout) and gives running activities this long to finish.
    graceful_shutdown_timeout: timedelta = Field(
        timedelta(seconds=10), description="time running activities get to finish on SIGTERM")
    # Sync activities (git, PyGithub, SQLAlchemy) wait on I/O and subprocesses,
    # so more threads than cores; each thread is one concurrent activity.
    activity_threads: int = Field(
        16, ge=1, description="threads of the activity executor (= concurrent sync activities)")
    max_concurrent_activities: int = Field(
        16, ge=1, description="activity tasks one worker runs at once (<= activity_threads)")
    # Workflow tasks are CPU-bound Python; 2 cores gain nothing from more than a
    # handful in flight, and fewer slots keep each task's latency low.
    max_concurrent_workflow_tasks: int = Field(
        8, ge=2, description="workflow tasks one worker processes at once")
    max_concurrent_local_activities: int = Field(
        16, ge=1, description="local activities one worker runs at once")
    workflow_task_polls: int = Field(
        4, ge=2, description="concurrent workflow-task long polls (sticky and shared queue)")
    activity_task_polls: int = Field(
        4, ge=1, description="concurrent activity-task long polls")
    nonsticky_to_sticky_poll_ratio: float = Field(
        0.2, gt=0, le=1, description="share of workflow-task polls on the shared queue")

    @field_validator("sticky_schedule_to_start_timeout", "workflow_task_timeout",
                     "graceful_shutdown_timeout", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        # "0.5" from the environment means seconds, as the README says of durations.
        try:
            return timedelta(seconds=float(value)) if isinstance(value, str) else value
        except ValueError:
            return value  # ISO 8601 (PT0.5S) and [HH:MM:]SS are pydantic's own

    @model_validator(mode="after")
    def _check_limits(self) -> PerformanceSettings:
        if self.max_concurrent_activities > self.activity_threads:
            raise ValueError(
                "MAX_CONCURRENT_ACTIVITIES must not exceed ACTIVITY_THREADS (each running "
                "sync activity holds one thread)")
        return self


def load_performance_settings(**overrides: Any) -> PerformanceSettings:
    """Read and validate the performance settings.

    Raises:
        SettingsError: a variable is invalid; the message names each one and why.
    """
    try:
        return PerformanceSettings(**overrides)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}"
            for e in err.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None


_RUNTIME: Any = None


def process_runtime() -> Any:
    """The one ``temporalio.runtime.Runtime`` of this process, made on first use and
    passed to every client, worker and test environment of the process.

    One explicit runtime (rather than the lazily created default) makes the
    process own the Rust thread pool's lifetime; it is also made the default,
    so code that passes no runtime (a Replayer, a plain ``Client.connect``)
    shares it. See ``cli.common.exit_process`` for why short-lived CLI processes
    also leave without interpreter finalization.
    """
    global _RUNTIME
    if _RUNTIME is None:
        from temporalio.runtime import Runtime, TelemetryConfig

        _RUNTIME = Runtime(telemetry=TelemetryConfig())
        Runtime.set_default(_RUNTIME, error_if_already_set=False)
    return _RUNTIME
