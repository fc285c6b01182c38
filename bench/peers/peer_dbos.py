"""The four engine workloads on DBOS Transact with its SQLite system database.

Runs inside the benchmark's own virtualenv (bench/peers/__init__.py makes it):
``python peer_dbos.py WORKDIR`` prints one JSON document. DBOS checkpoints each
step's result; on launch it recovers the workflows its executor left pending,
so the restarted process resumes the killed workflow by itself. Settings are
DBOS's defaults (its notification polling decides the gate figure).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from dbos import DBOS, SetWorkflowID

# peer_common.py is beside this script, whose folder is sys.path[0]
from peer_common import STEP_SECONDS, peak_rss_mb
from peer_common import recovery as peer_recovery

_JOURNAL = {"path": ""}


@DBOS.step()
def noop(i: int) -> int:
    """A no-op step."""
    return i


@DBOS.workflow()
def steps_workflow(n: int) -> int:
    """``n`` no-op steps in a row."""
    for i in range(n):
        noop(i)
    return n


@DBOS.workflow()
def gate_workflow() -> str:
    """Waits for the approval message, then one step."""
    verdict = DBOS.recv("approval", timeout_seconds=60)
    noop(0)
    return str(verdict)


@DBOS.step()
def journal_step(journal: str, index: int) -> int:
    """Journals its start and end and takes STEP_SECONDS."""
    with open(journal, "a") as f:
        f.write(f"start {index} {time.time()}\n")
    time.sleep(STEP_SECONDS)
    with open(journal, "a") as f:
        f.write(f"done {index} {time.time()}\n")
    return index


@DBOS.workflow()
def journal_workflow(journal: str, n: int) -> int:
    """``n`` journaled steps in a row (the recovery workload)."""
    for i in range(n):
        journal_step(journal, i)
    return n


def launch(db: Path, executor: str = "local") -> None:
    """Configure DBOS on the SQLite file ``db`` and launch it."""
    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{db}",
                 "executor_id": executor, "log_level": "WARNING"})
    DBOS.launch()


def step_ms(steps: int = 50, runs: int = 3) -> float:
    """Median ms per no-op step of a ``steps``-step workflow."""
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        steps_workflow(steps)
        times.append((time.perf_counter() - begin) * 1000 / steps)
    return round(statistics.median(times), 2)


def workflows_per_s(count: int = 200) -> float:
    """``count`` one-step workflows started at once; count / seconds."""
    begin = time.perf_counter()
    handles = [DBOS.start_workflow(steps_workflow, 1) for _ in range(count)]
    for handle in handles:
        handle.get_result()
    return round(count / (time.perf_counter() - begin), 1)


def gate_ms(runs: int = 10) -> float:
    """Median ms from the approval message sent to the workflow's result."""
    times = []
    for _ in range(runs):
        wf_id = str(uuid.uuid4())
        with SetWorkflowID(wf_id):
            handle = DBOS.start_workflow(gate_workflow)
        time.sleep(0.2)  # let it reach recv
        begin = time.perf_counter()
        DBOS.send(wf_id, "approve", "approval")
        handle.get_result()
        times.append((time.perf_counter() - begin) * 1000)
    return round(statistics.median(times), 2)


def recovery_child(db: str, journal: str, wf_id: str, steps: int) -> None:
    """Launch DBOS (which recovers pending workflows); start the workflow if new."""
    launch(Path(db))
    status = DBOS.get_workflow_status(wf_id)
    if status is None:
        with SetWorkflowID(wf_id):
            DBOS.start_workflow(journal_workflow, journal, steps)
    while True:
        status = DBOS.get_workflow_status(wf_id)
        if status is not None and status.status in ("SUCCESS", "ERROR"):
            return
        time.sleep(0.05)


def recovery(workdir: Path, steps: int = 6) -> dict[str, Any]:
    """The kill-and-restart workload (peer_common.recovery) on ``--child`` processes."""
    def child(run_no: int) -> tuple[list[str], Path]:
        journal = workdir / f"dbos-journal-{run_no}"
        db = workdir / f"dbos-recovery-{run_no}.sqlite"
        return [sys.executable, __file__, "--child", str(db), str(journal), f"wf-{run_no}",
                str(steps)], journal

    return peer_recovery(child, quiet=True)


def main() -> None:
    """``WORKDIR``: all workloads, JSON on stdout; ``--child ...``: the recovery process."""
    if sys.argv[1] == "--child":
        recovery_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    from importlib.metadata import version

    workdir = Path(sys.argv[1])
    workdir.mkdir(parents=True, exist_ok=True)
    launch(workdir / f"dbos-{uuid.uuid4().hex[:8]}.sqlite")
    result = {
        "engine": "dbos", "setup": "SQLite system database, default settings",
        "version": version("dbos"),
        "step_ms_activity": step_ms(),
        "gate_ms": gate_ms(),
        "workflows_per_s": workflows_per_s(),
        "memory": {"peak_rss_mb": peak_rss_mb()},
    }
    DBOS.destroy()
    result["recovery"] = recovery(workdir)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
