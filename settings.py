"""Every environment variable the worker and the CLI read, validated once.

Temporal connection settings (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE) are read by
``temporalio.envconfig`` in :func:`temporal_connect_config`; everything else is
a field of :class:`Settings`. Values also come from a ``.env`` file in the
working directory. Workflows never read settings: the CLI copies what a
workflow needs into its input.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.llm import ModelPrice, model_price

DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"

# Anthropic's list prices, USD per million tokens (input, output, cache write, cache read).
DEFAULT_LLM_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-6": ModelPrice(input=5, output=25, cache_write=6.25, cache_read=0.5),
    "claude-opus-4-5": ModelPrice(input=5, output=25, cache_write=6.25, cache_read=0.5),
    "claude-sonnet-4-6": ModelPrice(input=3, output=15, cache_write=3.75, cache_read=0.3),
    "claude-sonnet-4-5": ModelPrice(input=3, output=15, cache_write=3.75, cache_read=0.3),
    "claude-haiku-4-5": ModelPrice(input=1, output=5, cache_write=1.25, cache_read=0.1),
}


class SettingsError(ValueError):
    """The environment holds an invalid or missing setting; the message names it."""


def _seconds_or_duration(value: Any) -> Any:
    # "0.5" from the environment means seconds, as the README says of durations.
    try:
        return timedelta(seconds=float(value)) if isinstance(value, str) else value
    except ValueError:
        return value  # ISO 8601 (PT0.5S) and [HH:MM:]SS are pydantic's own


Seconds = Annotated[timedelta, BeforeValidator(_seconds_or_duration)]
"""A duration setting: plain seconds ("30", "0.5") or any form pydantic reads."""


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
    agent_runner: Literal["offline", "command", "claude", "anthropic"] = Field(
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


    # -- LLM layer (issue 4) ------------------------------------------------
    llm_provider: Literal["anthropic", "offline"] | None = Field(
        None, description="`anthropic` or `offline`; unset: anthropic when "
        "ANTHROPIC_API_KEY is set, else offline")
    anthropic_api_key: SecretStr | None = Field(None, description="Anthropic API key")
    anthropic_base_url: str | None = Field(
        None, description="any Anthropic-compatible Messages API endpoint")
    llm_model: str = Field("claude-sonnet-4-6", description="model of every phase not "
                           "named in LLM_PHASE_MODELS")
    llm_phase_models: dict[str, str] = Field(
        default_factory=dict, description='JSON: phase -> model, e.g. '
        '{"analysis_integrate": "claude-opus-4-6"}')
    llm_prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_LLM_PRICES),
        description="JSON: model (or model-name prefix) -> USD per million tokens "
        "{input, output, cache_write, cache_read}")
    llm_validation_retries: int = Field(
        2, ge=0, description="re-asks after structured output fails its schema")
    llm_timeout: timedelta = Field(
        timedelta(minutes=5), description="limit of one LLM HTTP request")
    llm_budget_usd: float | None = Field(
        5.0, gt=0, description="per-workflow LLM budget in USD; at it the workflow waits "
        "at the `budget` gate (unset: unlimited)")
    llm_offline_latency: timedelta = Field(
        timedelta(0), description="artificial latency of each offline call (benchmarks)")


    # -- analysis pipeline (issue 4) -----------------------------------------
    exa_api_key: SecretStr | None = Field(
        None, description="Exa API key: turns on L2 web search in the analysis pipeline")
    exa_base_url: str | None = Field(None, description="Exa API endpoint (default Exa's)")
    analysis_catalogue: Path | None = Field(
        None, description="YAML of synthesizers, templates and analysts (default: the "
        "shipped catalogue/analysis.yaml)")
    analysis_concurrency: int = Field(5, ge=1, description="analysts that run at once")
    analysis_graceful_degradation: bool = Field(
        False, description="with 2+ failed analysts, go on with the rest instead of aborting")
    analysis_max_web_searches: int = Field(
        3, ge=0, description="web searches allowed per analysis run")
    # -- GitHub (issue 3): unset GITHUB_TOKEN/GITHUB_REPOSITORY = local issues, no PR --
    github_token: SecretStr | None = Field(
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

    # -- authenticated gate decisions (issue 12) ---------------------------------
    gate_signers: Path | None = Field(
        None, description="allowed_signers file (ssh-keygen format) of the reviewers' "
        "ed25519 keys: when set, every gate decision must be SSH-signed by a listed key "
        "(`key:<principal>`) or come from GitHub; unset: anyone who reaches the server decides")

    @field_validator("github_repository")
    @classmethod
    def _check_repository(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", value.strip()):
            raise ValueError(f"{value!r} is not owner/name, e.g. octo-org/shop")
        return value.strip() if value else None

    @model_validator(mode="after")
    def _check_github(self) -> Settings:
        if bool(self.github_token) != bool(self.github_repository):
            missing = "GITHUB_REPOSITORY" if self.github_token else "GITHUB_TOKEN"
            raise ValueError(f"GitHub needs both GITHUB_TOKEN and GITHUB_REPOSITORY: set "
                             f"{missing}, or unset the other to run without GitHub")
        return self

    @property
    def github_enabled(self) -> bool:
        """Whether the SDLC issue, labels, comments and PR live on GitHub."""
        return bool(self.github_token and self.github_repository)
    # -- workstream engine --
    workstream_router_config: Path | None = Field(
        None, description="router config YAML of workstream specs that name none "
        "(unset: one tool per adapter: shell, python, agent, noop)")
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
        if self.agent_runner == "anthropic" and self.anthropic_api_key is None:
            raise ValueError("AGENT_RUNNER=anthropic needs ANTHROPIC_API_KEY")
        if self.llm_provider == "anthropic" and self.anthropic_api_key is None:
            raise ValueError("LLM_PROVIDER=anthropic needs ANTHROPIC_API_KEY (or set "
                             "LLM_PROVIDER=offline)")
        if self.anthropic_api_key is not None:
            for model in {self.llm_model, *self.llm_phase_models.values()}:
                if model_price(self.llm_prices, model) is None:
                    raise ValueError(f"model {model!r} has no price in LLM_PRICES; add it "
                                     "so the cost ledger and budget work")
        return self

    @property
    def effective_llm_provider(self) -> str:
        """LLM_PROVIDER, or its default: anthropic with an API key, else offline."""
        if self.llm_provider:
            return self.llm_provider
        return "anthropic" if self.anthropic_api_key is not None else "offline"

    def llm_provider_notice(self) -> str | None:
        """One line saying the offline provider was chosen by default, else None."""
        if self.llm_provider is None and self.effective_llm_provider == "offline":
            return ("note: ANTHROPIC_API_KEY is not set, so LLM calls use the offline "
                    "provider (deterministic stand-in output marked `provider: offline`)")
        return None

    @property
    def worktree_root(self) -> Path:
        """Where SDLC worktrees are made."""
        return (self.orchestrator_home / "worktrees").resolve()

    @property
    def issues_root(self) -> Path:
        """Where the local issue tracker keeps its issues."""
        return (self.orchestrator_home / "issues").resolve()

    @property
    def workspace_root(self) -> Path:
        """Where workstream runs without a repository get their workspace."""
        return (self.orchestrator_home / "workspaces").resolve()

    @property
    def artifact_root(self) -> Path:
        """The artifact store's directory."""
        return (self.orchestrator_home / "artifacts").resolve()

    @property
    def learning_database_url(self) -> str:
        """DATABASE_URL, or the SQLite file ``learning.db`` under ORCHESTRATOR_HOME."""
        return self.database_url or (
            f"sqlite:///{(self.orchestrator_home / 'learning.db').resolve()}")


_S = TypeVar("_S", bound=BaseSettings)


def _load(cls: type[_S], overrides: dict[str, Any]) -> _S:
    try:
        return cls(**overrides)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}"
            for e in err.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings.

    Raises:
        SettingsError: a variable is invalid; the message names each one and why.
    """
    return _load(Settings, overrides)


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
    sticky_schedule_to_start_timeout: Seconds = Field(
        timedelta(milliseconds=500),
        description="how long a workflow task waits for the worker that cached the workflow")
    # A workflow task started by a worker that then died is retried after this
    # (server default 10 s). Ours take milliseconds; 2 s leaves room for a cold
    # replay of a long history on a busy 2-core machine.
    workflow_task_timeout: Seconds = Field(
        timedelta(seconds=2), description="start-to-close timeout of one workflow task")
    # Long activities heartbeat: the timeout is workflow-side (workflows never read
    # settings): workflows/policies.py AGENT_HEARTBEAT_TIMEOUT, 5 s.
    # On SIGTERM the worker stops polling at once (releasing its sticky queue, so
    # the server hands its workflows to another worker without waiting for the
    # sticky timeout) and gives running activities this long to finish.
    graceful_shutdown_timeout: Seconds = Field(
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
    return _load(PerformanceSettings, overrides)


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
