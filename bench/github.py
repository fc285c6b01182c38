"""Benchmark: GitHub requests at repository scale, label reconciliation, comment polls.

``python bench/github.py [--runs N] [--comments M] [--scales 10,1000,10000]`` prints
JSON. The real PyGithub client and the tracker's activity code run against the
local GitHub server of the tests (``tests/github_server.py``, its OpenAPI contract
check off so the times are this code's own), so the times are this code's cost
plus one local HTTP round trip per request, not GitHub's latency; the request
counts are what a real GitHub would be sent, and the figures that matter for its
rate limits (5,000 requests/hour for a token, 1,000 for GitHub Actions' token).

* ``scale``: for each number S of issues/comments (default 10, 1,000, 10,000):
  requests of ``open_issue`` on a repository holding S older issues and pull
  requests (one in five a pull request; a few updated during the run), and of its
  retry after a crash; and requests of an empty comment poll on an issue with S
  comments, after the poll that first read them. Targets: at most 3 requests per
  ``open_issue``, exactly 1 per empty poll, at every scale.
* ``label_sync_*``: over N runs (default 10), each a new issue taken through
  PHASE_1 -> PHASE_2 -> GATE_1 -> PHASE_2 -> GATE_1 -> DONE, the median, p95 and
  max time of one label reconciliation, in ms, against the seed's 2 s budget.
* ``comment_poll``: one poll over M comments (default 50) with commands from a
  writer and a reader (permission checks and one reply), and polls that find
  nothing new.
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

from temporalio.exceptions import ApplicationError

from activities.github import GitHubIssueTracker
from models.issues import CommentPollInput
from models.sdlc import OpenIssueInput, PhaseLabelInput, SdlcPhase
from tests.github_server import GitHubServer

BUDGET_MS = 2000.0  # label sync < 2 s
SCALES = (10, 1_000, 10_000)
OPEN_ISSUE_TARGET = 3  # requests per open_issue, first attempt or retry
EMPTY_POLL_TARGET = 1  # requests per comment poll that finds nothing new
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


def scale_point(size: int) -> dict[str, Any]:
    """Requests and ms of ``open_issue`` (first attempt, and a retry after a crash) among
    ``size`` older issues and pull requests, and of an empty poll over ``size`` comments."""
    run_start = datetime.now(UTC)
    long_ago = run_start - timedelta(days=400)
    with GitHubServer(contract=False) as server:
        gh = server.gh
        gh.permissions["alice"] = "write"
        for i in range(size):
            at = long_ago + timedelta(minutes=i)
            if i % 5 == 4:
                gh.add_pull(f"feature-{i}", body=f"Pull request {i}", at=at)
            else:
                gh.add_issue(f"Issue {i}", f"Body {i}", at=at)
        for number in list(gh.issues)[:3]:  # older issues people touch during the run
            gh.add_comment(number, "alice", "Still relevant.")
        tracker = GitHubIssueTracker(gh.token, gh.full_name, api_url=server.api_url)
        inp = OpenIssueInput(workflow_id="bench-scale", repo_path="/", title="Feature",
                             body="Benchmark.", since=run_start)
        gh.fail_next("POST", r"/issues$", "drop")  # the first attempt creates, then crashes
        before = len(gh.requests)
        try:
            tracker.open_issue(inp)
        except ApplicationError:
            pass
        first = len(gh.requests) - before
        before = len(gh.requests)
        ref, open_ms = timed(tracker.open_issue, inp)
        retry = len(gh.requests) - before
        old = run_start - timedelta(days=1)
        for i in range(size):
            gh.add_comment(ref.number, "bob", f"Note {i}", at=old + timedelta(seconds=i))
        poll_inp = CommentPollInput(issue=ref, not_before=run_start, gate="GATE_1")
        before = len(gh.requests)
        caught_up = tracker.poll_comments(poll_inp)
        catch_up = len(gh.requests) - before
        idle_requests, idle_ms = [], []
        for _ in range(5):
            before = len(gh.requests)
            _, ms = timed(tracker.poll_comments, poll_inp.advanced(caught_up))
            idle_requests.append(len(gh.requests) - before)
            idle_ms.append(ms)
    return {"size": size, "open_issue_requests": first, "open_issue_retry_requests": retry,
            "open_issue_retry_ms": round(open_ms, 2),
            "first_poll_requests": catch_up,
            "empty_poll_requests": max(idle_requests),
            "empty_poll_ms": summary(idle_ms)}


def scale_targets(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request targets over every scale point, in bench/run_all.py's target shape."""
    worst_open = max(max(p["open_issue_requests"], p["open_issue_retry_requests"])
                     for p in points)
    worst_poll = max(p["empty_poll_requests"] for p in points)
    sizes = ", ".join(f"{p['size']:,}" for p in points)
    return [
        {"name": "github_requests_per_open_issue", "target": f"<= {OPEN_ISSUE_TARGET}",
         "measured": worst_open, "met": worst_open <= OPEN_ISSUE_TARGET,
         "at": f"{sizes} issues and pull requests"},
        {"name": "github_requests_per_empty_poll", "target": f"<= {EMPTY_POLL_TARGET}",
         "measured": worst_poll, "met": worst_poll <= EMPTY_POLL_TARGET,
         "at": f"{sizes} comments"},
    ]


async def run(runs: int = 10, comments: int = 50,
              scales: tuple[int, ...] = SCALES) -> dict[str, Any]:
    """Run the benchmark on local GitHub servers of its own; returns the JSON figures."""
    points = [await asyncio.to_thread(scale_point, size) for size in scales]
    with GitHubServer(contract=False) as server:
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
        before = len(gh.requests)
        idle = [timed(tracker.poll_comments, inp.advanced(poll))[1] for _ in range(10)]
        idle_requests = (len(gh.requests) - before) / 10
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
        "comment_poll_nothing_new_requests": idle_requests,
        "scale": points,
        "targets": scale_targets(points),
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--comments", type=int, default=50)
    parser.add_argument("--scales", default=",".join(map(str, SCALES)),
                        help="comma-separated numbers of issues/comments")
    args = parser.parse_args()
    scales = tuple(int(n) for n in args.scales.split(",") if n.strip())
    print(json.dumps(asyncio.run(run(args.runs, args.comments, scales)), indent=2))


if __name__ == "__main__":
    main()
