"""The four engine workloads on LangGraph with its SQLite checkpointer (file database).

Runs inside the benchmark's own virtualenv (bench/peers/__init__.py makes it):
``python peer_langgraph.py WORKDIR`` prints one JSON document. Every step is
checkpointed before the next (``durability="sync"``), as Temporal records each.
LangGraph has no recovery of its own: after the kill, the restarted process
re-invokes the thread, which resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

# peer_common.py is beside this script, whose folder is sys.path[0]
from peer_common import STEP_SECONDS, peak_rss_mb
from peer_common import recovery as peer_recovery


class State(TypedDict):
    """The graph's state: the count of steps run."""
    i: int


def noop(state: State) -> dict[str, int]:
    """A no-op step."""
    return {"i": state["i"] + 1}


def gate(state: State) -> dict[str, int]:
    """Waits for the approval (a LangGraph interrupt)."""
    interrupt("approve?")
    return {"i": state["i"] + 1}


def chain(nodes: list[Any], saver: SqliteSaver) -> Any:
    """A compiled graph running ``nodes`` in a row."""
    graph = StateGraph(State)
    previous = START
    for k, fn in enumerate(nodes):
        graph.add_node(f"s{k}", fn)
        graph.add_edge(previous, f"s{k}")
        previous = f"s{k}"
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=saver)


def saver_at(path: Path) -> SqliteSaver:
    """The SQLite checkpointer on a file."""
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))


def config(thread: str) -> dict[str, Any]:
    """Invocation config of one thread."""
    return {"configurable": {"thread_id": thread}}


def step_ms(saver: SqliteSaver, steps: int = 50, runs: int = 3) -> float:
    """Median ms per no-op step of a ``steps``-step graph."""
    graph = chain([noop] * steps, saver)
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        graph.invoke({"i": 0}, config(str(uuid.uuid4())), durability="sync")
        times.append((time.perf_counter() - begin) * 1000 / steps)
    return round(statistics.median(times), 2)


def workflows_per_s(saver: SqliteSaver, count: int = 200) -> float:
    """``count`` one-step graphs on 16 threads; count / seconds."""
    graph = chain([noop], saver)
    begin = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: graph.invoke({"i": 0}, config(str(uuid.uuid4())),
                                             durability="sync"), range(count)))
    return round(count / (time.perf_counter() - begin), 1)


def gate_ms(saver: SqliteSaver, runs: int = 10) -> float:
    """Median ms from the resume (approval) sent to the graph's end."""
    graph = chain([gate], saver)
    times = []
    for _ in range(runs):
        cfg = config(str(uuid.uuid4()))
        graph.invoke({"i": 0}, cfg, durability="sync")  # stops at the interrupt
        begin = time.perf_counter()
        graph.invoke(Command(resume="approve"), cfg, durability="sync")
        times.append((time.perf_counter() - begin) * 1000)
    return round(statistics.median(times), 2)


def journal_step(journal: str, index: int) -> Any:
    """A step that journals its start and end and takes STEP_SECONDS."""
    def step(state: State) -> dict[str, int]:
        with open(journal, "a") as f:
            f.write(f"start {index} {time.time()}\n")
        time.sleep(STEP_SECONDS)
        with open(journal, "a") as f:
            f.write(f"done {index} {time.time()}\n")
        return {"i": state["i"] + 1}
    return step


def recovery_child(db: str, journal: str, thread: str, steps: int) -> None:
    """Run (or resume) the journaled graph of thread ``thread``."""
    graph = chain([journal_step(journal, k) for k in range(steps)], saver_at(Path(db)))
    cfg = config(thread)
    started = graph.get_state(cfg).values
    graph.invoke(None if started else {"i": 0}, cfg, durability="sync")


def recovery(workdir: Path, steps: int = 6) -> dict[str, Any]:
    """The kill-and-restart workload (peer_common.recovery) on ``--child`` processes."""
    def child(run_no: int) -> tuple[list[str], Path]:
        journal = workdir / f"lg-journal-{run_no}"
        db = workdir / f"lg-recovery-{run_no}.sqlite"
        return [sys.executable, __file__, "--child", str(db), str(journal), "t",
                str(steps)], journal

    return peer_recovery(child)


def main() -> None:
    """``WORKDIR``: all workloads, JSON on stdout; ``--child ...``: the recovery process."""
    if sys.argv[1] == "--child":
        recovery_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    import langgraph

    workdir = Path(sys.argv[1])
    workdir.mkdir(parents=True, exist_ok=True)
    saver = saver_at(workdir / f"lg-{uuid.uuid4().hex[:8]}.sqlite")
    result = {
        "engine": "langgraph", "setup": "SqliteSaver, durability=sync",
        "version": getattr(langgraph, "__version__", None) or _version("langgraph"),
        "step_ms_activity": step_ms(saver),
        "gate_ms": gate_ms(saver),
        "workflows_per_s": workflows_per_s(saver),
        "memory": {"peak_rss_mb": peak_rss_mb()},
        "recovery": recovery(workdir),
    }
    print(json.dumps(result))


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
