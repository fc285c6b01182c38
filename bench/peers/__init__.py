"""Peer engines measured beside Temporal: LangGraph (SQLite checkpointer) and DBOS (SQLite).

They are never dependencies of the project: :func:`ensure_peer_venv` installs
them with pip into a virtualenv of their own under ``ORCHESTRATOR_HOME``
(default ``.orchestrator/bench-venv``), once, and each ``peer_*.py`` script here
runs in that virtualenv and prints one JSON document.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PEER_PACKAGES = ["langgraph>=1.2,<2", "langgraph-checkpoint-sqlite>=3,<4", "dbos>=3.4,<4"]
PEER_SCRIPTS = {"langgraph": "peer_langgraph.py", "dbos": "peer_dbos.py"}
PEER_TIMEOUT = 600  # seconds per peer run
HERE = Path(__file__).resolve().parent


def peer_venv_dir() -> Path:
    """Where the peers' virtualenv lives: ``$ORCHESTRATOR_HOME/bench-venv``."""
    from settings import load_settings

    return load_settings().orchestrator_home.resolve() / "bench-venv"


def ensure_peer_venv(venv: Path | None = None) -> Path:
    """Make the peers' virtualenv and install PEER_PACKAGES into it, unless a
    previous call did (a marker file holds the package list). pip's output goes
    to stderr. Returns the virtualenv's python.

    Raises:
        subprocess.CalledProcessError: venv creation or pip failed.
    """
    venv = venv or peer_venv_dir()
    python = venv / "bin" / "python"
    marker = venv / ".bench-peers"
    wanted = "\n".join(PEER_PACKAGES)
    if marker.exists() and marker.read_text() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=sys.stderr)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
                   check=True, stdout=sys.stderr)
    marker.write_text(wanted)
    return python


async def run_peer(name: str, python: Path) -> dict[str, Any]:
    """Run one peer's script in the peers' virtualenv; its JSON document, or
    ``{"error": ...}`` when it failed."""
    with tempfile.TemporaryDirectory() as workdir:
        proc = await asyncio.create_subprocess_exec(
            str(python), str(HERE / PEER_SCRIPTS[name]), workdir,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), PEER_TIMEOUT)
        except TimeoutError:
            proc.kill()
            return {"engine": name, "error": f"timed out after {PEER_TIMEOUT} s"}
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        return {"engine": name, "error": f"exit {proc.returncode}: {' | '.join(tail)}"}
    return json.loads(out.decode().strip().splitlines()[-1])
