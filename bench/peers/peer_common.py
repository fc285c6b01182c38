"""What the peer scripts share: the step journal, peak RSS and the kill-and-restart
recovery workload. Plain standard library: the scripts import it as ``peer_common``
from the peers' virtualenv (their own folder is ``sys.path[0]``). bench/engine.py keeps
its own ``read_journal``: it defines workflows, and the workflow sandbox re-imports it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEP_SECONDS = 0.5  # the recovery workload's step length, as on Temporal


def peak_rss_mb() -> float:
    """This process's peak RSS, MB (VmHWM: unlike ru_maxrss it does not carry the
    parent's peak across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def read_journal(path: Path) -> list[tuple[str, int, float]]:
    """(event, step, unix time) lines of a journal."""
    if not path.exists():
        return []
    return [(e, int(i), float(t)) for e, i, t in
            (line.split() for line in path.read_text().splitlines() if line.strip())]


def recovery(child: Callable[[int], tuple[list[str], Path]], *, quiet: bool = False,
             runs: int = 3, kill_in_step: int = 2) -> dict[str, Any]:
    """Kill -9 a process halfway through step ``kill_in_step``, restart it at once, and
    measure from the restart to the next step's start, and the finished steps re-run.

    Args:
        child: run number -> (argv of the process that runs the steps, its journal).
        quiet: send the processes' output to /dev/null.

    Raises:
        RuntimeError: the first process never reached ``kill_in_step``.
    """
    out = subprocess.DEVNULL if quiet else None
    restart_to_next, rerun = [], []
    for run_no in range(runs):
        argv, journal = child(run_no)
        first = subprocess.Popen(argv, start_new_session=True, stdout=out, stderr=out)
        deadline = time.monotonic() + 60
        while not any(e == "start" and i == kill_in_step for e, i, _ in read_journal(journal)):
            if time.monotonic() > deadline or first.poll() is not None:
                raise RuntimeError(f"the process never reached step {kill_in_step}")
            time.sleep(0.005)
        time.sleep(STEP_SECONDS / 2)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        killed_at = time.time()
        finished = {i for e, i, _ in read_journal(journal) if e == "done"}
        restart = time.time()
        second = subprocess.Popen(argv, start_new_session=True, stdout=out, stderr=out)
        second.wait(timeout=120)
        after = [(e, i, t) for e, i, t in read_journal(journal) if t > killed_at]
        restart_to_next.append(min(t for e, _, t in after if e == "start") - restart)
        rerun.append(sum(1 for e, i, _ in after if e == "start" and i in finished))
    return {"restart_to_next_step_s": [round(x, 2) for x in restart_to_next],
            "restart_to_next_step_s_max": round(max(restart_to_next), 2),
            "finished_steps_rerun": rerun}
