"""Benchmark: GitHub label reconciliation per transition and one comment poll.

``python bench/github.py [--runs N] [--comments M]`` prints JSON. The real PyGithub
client and the tracker's activity code run against the local GitHub server of the
tests (``tests/github_server.py``), so the figures are this code's own cost plus
one local HTTP round trip per request, not GitHub's latency; the request counts
say how many round trips a real GitHub would add. Over N runs (default 10), each
a new issue taken through PHASE_1 -> PHASE_2 -> GATE_1 -> PHASE_2 -> GATE_1 ->
DONE, the median, p95 and max time of one label reconciliation, in ms, against
the seed's 2 s budget; then one comment poll over M comments (default 50) with
commands from a writer and a reader (permission checks and one reply), and a
poll that finds nothing new.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    # Run as `python bench/<name>.py`, sys.path[0] is bench/, where github.py would
    # shadow PyGithub's `github` package: put the project root there instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from activities.github import GitHubIssueTracker
from models.issues import CommentPollInput
from models.sdlc import OpenIssueInput, PhaseLabelInput, SdlcPhase
from tests.github_server import GitHubServer

BUDGET_MS = 2000.0  # seed 002: label sync < 2 s
TRANSITIONS = [SdlcPhase.PHASE_1, SdlcPhase.PHASE_2, SdlcPhase.GATE_1, SdlcPhase.PHASE_2,
               SdlcPhase.GATE_1, SdlcPhase.DONE]


def summary(values: list[float]) -> dict[str, float]:
    """Median, p95 (nearest rank) and max of ``values``, rounded to 0.01."""
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return {"median": round(statistics.median(ordered), 2), "p95": round(p95, 2),
            "max": round(ordered[-1], 2)}


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """Call ``fn(*args)``; return its result and the elapsed ms."""
    begin = time.perf_counter()
    result = fn(*args)
    return result, (time.perf_counter() - begin) * 1000


async def run(runs: int = 10, comments: int = 50) -> dict[str, Any]:
    """Run the benchmark on a local GitHub server of its own; returns the JSON figures."""
    with GitHubServer() as server:
        gh = server.gh
        gh.permissions.update({"alice": "write", "mallory": "read"})
        tracker = GitHubIssueTracker(gh.token, gh.full_name, api_url=server.api_url)
        first: list[float] = []
        later: list[float] = []
        requests_per_sync: list[int] = []
        for i in range(runs):
            ref = tracker.open_issue(OpenIssueInput(workflow_id=f"bench-{i}", repo_path="/",
                                                    title=f"Feature {i}", body="Benchmark."))
            for n, phase in enumerate(TRANSITIONS):
                before = len(gh.requests)
                _, ms = timed(tracker.sync_phase_label,
                              PhaseLabelInput(repo_path="/", issue=ref, phase=phase))
                requests_per_sync.append(len(gh.requests) - before)
                (first if n == 0 else later).append(ms)
        ref = tracker.open_issue(OpenIssueInput(workflow_id="bench-poll", repo_path="/",
                                                title="Poll", body="Benchmark."))
        opened = datetime.now(UTC) - timedelta(seconds=5)
        for i in range(comments):
            author, body = ("alice", f"Note {i}") if i % 10 else ("mallory", "/approve")
            gh.add_comment(ref.number, author, body)
        gh.add_comment(ref.number, "alice", "/revise name the columns")
        inp = CommentPollInput(issue=ref, not_before=opened, gate="GATE_1")
        before = len(gh.requests)
        poll, poll_ms = timed(tracker.poll_comments, inp)
        poll_requests = len(gh.requests) - before
        idle = [timed(tracker.poll_comments,
                      inp.model_copy(update={"after_id": poll.last_seen_id}))[1]
                for _ in range(10)]
    every = first + later
    return {
        "benchmark": "github",
        "server": "local GitHub REST server (tests/github_server.py), real PyGithub",
        "runs": runs,
        "label_sync_ms": summary(every),
        "label_sync_first_ms": summary(first),
        "label_sync_requests": summary([float(r) for r in requests_per_sync]),
        "label_sync_budget_ms": BUDGET_MS,
        "label_sync_within_budget": max(every) < BUDGET_MS,
        "comment_poll": {"comments": comments + 1, "commands_accepted": len(poll.commands),
                         "ignored_and_answered": poll.ignored, "ms": round(poll_ms, 2),
                         "requests": poll_requests},
        "comment_poll_nothing_new_ms": summary(idle),
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--comments", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.runs, args.comments)), indent=2))


if __name__ == "__main__":
    main()
