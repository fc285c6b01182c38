"""The worker: ``python worker.py`` hosts every workflow and activity on one task queue.

It connects through ``temporal_plumbing`` (``temporalio.envconfig`` profile,
TEMPORAL_ADDRESS default localhost:7233; the shared data converter and
interceptors; worker options from the performance settings) and shuts down
gracefully on SIGINT/SIGTERM (running activities get the graceful-shutdown
timeout to finish). Operations: METRICS_BIND serves Prometheus metrics, LOG_FORMAT
(``text``/``json``) and LOG_LEVEL shape its log (``temporal_plumbing.logs``: one line
per expected failure, tracebacks only for bugs).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.worker import Worker

from activities.agents import (
    AgentActivities,
    AnthropicRunner,
    ClaudeRunner,
    CommandRunner,
    OfflineRunner,
)
from activities.analysis import AnalysisActivities
from activities.artifacts import ArtifactStore
from activities.breaker import BreakerActivities
from activities.git import GitActivities
from activities.github import GitHubIssueTracker
from activities.issues import LocalIssueTracker
from activities.learning import LearningStore
from activities.llm import LlmActivities, build_anthropic_provider, build_llm_provider
from activities.secrets import Scrubber, ScrubbingInterceptor, secret_names, short_secrets
from activities.signers import GateSignerActivities, read_gate_signers
from activities.web_search import WebSearchActivities, build_exa_client
from activities.workstream import WorkstreamActivities
from models.signatures import SignatureError
from models.workstream import DEFAULT_ROUTER_CONFIG, RouterConfig, ToolAuthority
from settings import (
    PerformanceSettings,
    Settings,
    SettingsError,
    load_performance_settings,
    load_settings,
)
from settings.codec import load_codec_settings
from settings.observability import ObservabilitySettings, load_observability_settings
from temporal_plumbing.client import connect_client, temporal_connect_config
from temporal_plumbing.logs import configure_logging
from temporal_plumbing.runtime import exit_process, process_runtime
from temporal_plumbing.search_attributes import ensure_search_attributes
from temporal_plumbing.workers import worker_options
from workflows.registry import ALL_WORKFLOWS

log = logging.getLogger("orchestrator.worker")

def build_scrubber(settings: Settings) -> Scrubber:
    """The worker's scrubber: the values of ANTHROPIC_API_KEY, GITHUB_TOKEN,
    EXA_API_KEY, TEMPORAL_API_KEY and the SECRET_ENV names (environment, ``.env``
    and the Temporal config profile).

    Raises:
        SettingsError: a secret is set to a value too short to scrub (under
            ``activities.secrets.MIN_SECRET_LENGTH`` characters); the message names
            the variable, never the value.
    """
    names = secret_names(settings.secret_env)
    named = [(n, os.environ.get(n, "")) for n in names] + list(settings.secrets().items())
    try:
        api_key = temporal_connect_config().get("api_key")
    except Exception:  # noqa: BLE001 - a broken profile fails at connect, with its reason
        api_key = None
    if isinstance(api_key, str):
        named.append(("TEMPORAL_API_KEY (Temporal config profile)", api_key))
    problems = short_secrets(named)
    if problems:
        raise SettingsError("; ".join(problems))
    return Scrubber(value for _, value in named)


def build_tool_authority(settings: Settings) -> ToolAuthority:
    """What workstream runs may use on this worker: WORKSTREAM_ROUTER_CONFIG (else
    the default router config), WORKSTREAM_TRUST_SPEC_TOOLS, WORKSTREAM_PYTHON_MODULES.

    Raises:
        SettingsError: the router config file cannot be read or is invalid.
    """
    data: Any = DEFAULT_ROUTER_CONFIG
    path: Path | None = settings.workstream_router_config
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise SettingsError(f"WORKSTREAM_ROUTER_CONFIG: cannot read {path}: "
                                f"{str(err).splitlines()[0]}") from None
    try:
        router = RouterConfig.model_validate(data)
    except ValidationError as err:
        raise SettingsError(f"WORKSTREAM_ROUTER_CONFIG: {path} is not a valid router "
                            f"config: {err.errors()[0]['msg']}") from None
    return ToolAuthority(router=router, trust_spec_tools=settings.workstream_trust_spec_tools,
                         python_modules=list(settings.workstream_python_modules))


def build_activities(settings: Settings, scrubber: Scrubber | None = None) -> list[Any]:
    """Every activity callable of the worker, with clients built from ``settings``;
    artifacts are scrubbed by ``scrubber`` (default: :func:`build_scrubber`)."""
    scrubber = scrubber if scrubber is not None else build_scrubber(settings)
    grants = settings.agent_secret_env
    runners: dict[str, Any] = {"offline": OfflineRunner(), "claude": ClaudeRunner(
        settings.claude_executable, grants)}
    if settings.agent_command:
        runners["command"] = CommandRunner(settings.agent_command, grants)
    if settings.anthropic_api_key is not None:
        runners["anthropic"] = AnthropicRunner(build_anthropic_provider(settings))
    store = ArtifactStore(settings.artifact_root, scrubber)
    git = GitActivities(settings.worktree_root)
    agents = AgentActivities(runners, settings.agent_runner, scrubber)
    llm = LlmActivities(build_llm_provider(settings), store=store)
    analysis = AnalysisActivities(store)
    exa_key = settings.exa_api_key.get_secret_value() if settings.exa_api_key else None
    search = WebSearchActivities(build_exa_client(exa_key, settings.exa_base_url))
    activities = [
        git.prepare_branch, git.add_worktree, git.remove_worktree,
        *issue_tracker_activities(settings),
        agents.run_agent,
        llm.llm_complete,
        *analysis.activities(), search.web_search,
        *LearningStore(settings.learning_database_url, settings.artifact_root).all(),
        GateSignerActivities(settings.gate_signers).load_gate_signers,
    ]
    # workstream engine
    ws = WorkstreamActivities(settings.workspace_root, store, build_tool_authority(settings))
    breakers = BreakerActivities()
    activities += [ws.check_run, ws.init_workspace, ws.run_shell, ws.run_python, ws.run_noop,
                   ws.commit_handoff, ws.merge, ws.kill_processes, breakers.pick,
                   breakers.report]
    return activities


def issue_tracker_activities(settings: Settings) -> list[Any]:
    """The issue tracker's activities: GitHub when configured, else local issues."""
    if settings.github_enabled:
        assert settings.github_token and settings.github_repository
        return GitHubIssueTracker(
            settings.github_token.get_secret_value(), settings.github_repository,
            api_url=settings.github_api_url, label_prefix=settings.github_label_prefix,
            remote=settings.github_remote).activities()
    tracker = LocalIssueTracker(settings.issues_root)
    return [tracker.open_issue, tracker.sync_phase_label]


def make_worker(client: Client, settings: Settings, perf: PerformanceSettings | None = None,
                **options: Any) -> Worker:
    """A worker for every workflow and activity on ``settings.temporal_task_queue``,
    tuned by ``perf`` (default: the environment); ``options`` override any Worker argument.
    Every activity's result and error pass through the secret scrubber
    (:class:`activities.secrets.ScrubbingInterceptor`)."""
    scrubber = build_scrubber(settings)
    options = dict(options)
    interceptors = [ScrubbingInterceptor(scrubber), *options.pop("interceptors", [])]
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=ALL_WORKFLOWS,
        activities=build_activities(settings, scrubber),
        interceptors=interceptors,
        **{**worker_options(perf), **options},
    )


async def run_worker(settings: Settings, obs: ObservabilitySettings | None = None) -> None:
    """Run the worker until SIGINT or SIGTERM; with METRICS_BIND (``obs``, default:
    the environment) its runtime serves Prometheus metrics there.

    Raises:
        ConnectionError: no Temporal server answers, or METRICS_BIND cannot be bound.
    """
    obs = obs or load_observability_settings()
    try:
        process_runtime(obs.metrics_bind, forward_core_logs=True)
    except (RuntimeError, ValueError) as err:  # the exporter cannot bind the address
        raise ConnectionError(f"METRICS_BIND={obs.metrics_bind}: cannot serve metrics "
                              f"({err})") from None
    if obs.metrics_bind:
        log.info("metrics at http://%s/metrics", obs.metrics_bind)
    client = await connect_client()
    if not await ensure_search_attributes(client):
        log.warning("could not register search attributes; the web UI cannot filter by them")
    if notice := settings.llm_provider_notice():
        log.info("%s", notice)
    if keys := load_codec_settings().keys:
        log.info("payloads are encrypted with key %r (PAYLOAD_KEYS)", keys[0][0])
    worker = make_worker(client, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling task queue %r on %s", settings.temporal_task_queue,
             temporal_connect_config()["target_host"])
    async with worker:
        await stop.wait()
        log.info("shutting down: finishing running activities")
    log.info("worker stopped")


def main() -> int:
    """Entry point of ``python worker.py``."""
    try:
        settings = load_settings()
        load_performance_settings()
        load_codec_settings()
        obs = load_observability_settings()
        build_tool_authority(settings)
        build_scrubber(settings)  # a secret too short to scrub stops the worker now
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    try:  # a bad GATE_SIGNERS stops the worker now, not at a run's first gate
        read_gate_signers(settings.gate_signers)
    except SignatureError as err:
        print(f"invalid configuration: {err}", file=sys.stderr)
        return 2
    configure_logging(obs.log_format, obs.log_level)
    try:
        asyncio.run(run_worker(settings, obs))
    except ConnectionError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_process(main())
