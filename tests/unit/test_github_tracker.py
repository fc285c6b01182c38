"""GitHubIssueTracker: the real PyGithub against the local GitHub server, real git."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from github import Auth, Github, GithubException
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.github import GitHubIssueTracker, parse_command, rate_limit_delay
from models.common import MAX_GATE_TEXT_BYTES, Verdict
from models.issues import CommentInput, CommentPollInput, PullRequestInput
from models.sdlc import IssueRef, OpenIssueInput, PhaseLabelInput, SdlcPhase
from tests.conftest import git
from tests.github_server import FakeGitHub, GitHubServer


@pytest.fixture
def server() -> Iterator[GitHubServer]:
    with GitHubServer() as srv:
        yield srv


def tracker_for(server: GitHubServer, token: str | None = None, repository: str = "octo/shop",
                **kw) -> GitHubIssueTracker:
    return GitHubIssueTracker(token or server.gh.token, repository, api_url=server.api_url,
                              **kw)


@pytest.fixture
def tracker(server: GitHubServer) -> GitHubIssueTracker:
    return tracker_for(server)


RUN_START = datetime.now(UTC) - timedelta(minutes=1)


def open_input(wf: str = "sdlc-shop-add-csv") -> OpenIssueInput:
    return OpenIssueInput(workflow_id=wf, repo_path="/unused", title="Add CSV export",
                          body="Export results as CSV.", since=RUN_START)


def test_parse_command():
    assert parse_command("/approve") == (Verdict.APPROVE, "")
    assert parse_command("  /revise name the\ncolumns ") == (Verdict.REVISE, "name the\ncolumns")
    assert parse_command("/reject too vague") == (Verdict.REJECT, "too vague")
    assert parse_command("/approved") is None
    assert parse_command("I /approve") is None


def test_a_retry_after_a_crash_reuses_the_issue(server, tracker):
    server.gh.fail_next("POST", r"/issues$", "drop")
    with pytest.raises(ApplicationError) as crash:
        tracker.open_issue(open_input())
    assert not crash.value.non_retryable
    assert len(server.gh.issues) == 1  # the crashed attempt created it
    ref = tracker.open_issue(open_input())
    again = tracker.open_issue(open_input())
    other = tracker.open_issue(open_input("sdlc-shop-other"))
    assert ref == again and ref.number == 1 and ref.provider == "github"
    assert ref.url == "https://github.example/octo/shop/issues/1"
    assert other.number == 2 and len(server.gh.issues) == 2
    assert "durable-orchestrator:workflow-id=sdlc-shop-add-csv" in server.gh.issues[1]["body"]


def test_labels_are_reconciled_and_drift_repaired(server, tracker):
    ref = tracker.open_issue(open_input())
    assert tracker.sync_phase_label(PhaseLabelInput(repo_path="/unused", issue=ref,
                                                    phase=SdlcPhase.PHASE_1)) == ["sdlc:phase-1"]
    assert server.gh.labels["sdlc:phase-1"]["color"] == "c5def5"
    assert server.gh.labels["sdlc:phase-1"]["description"].startswith("SDLC:")
    tracker.sync_phase_label(PhaseLabelInput(repo_path="/unused", issue=ref,
                                             phase=SdlcPhase.GATE_1))
    assert server.gh.issue_labels(1) == ["sdlc:gate-1"]
    # a person drifts the issue by hand: a stale phase label, the right one removed,
    # an unrelated label and a look-alike that is no phase label
    server.gh.set_issue_labels(1, ["bug", "sdlc:phase-1", "sdlc:done", "sdlc:priority"])
    labels = tracker.sync_phase_label(PhaseLabelInput(repo_path="/unused", issue=ref,
                                                      phase=SdlcPhase.GATE_1))
    assert labels == ["bug", "sdlc:priority", "sdlc:gate-1"]
    assert server.gh.issue_labels(1) == labels


def test_a_phase_label_deleted_from_the_repository_is_made_again(server, tracker):
    """The tracker does not trust that a label it once made still exists: a person who
    deletes the repository's phase label gets it back, with its colour and description,
    at the next sync (not GitHub's grey label made on the fly)."""
    ref = tracker.open_issue(open_input())
    gate = PhaseLabelInput(repo_path="/unused", issue=ref, phase=SdlcPhase.GATE_1)
    tracker.sync_phase_label(gate)
    assert server.gh.labels["sdlc:gate-1"]["color"] == "fbca04"
    server.gh.delete_label("sdlc:gate-1")
    assert server.gh.issue_labels(1) == []
    assert tracker.sync_phase_label(gate) == ["sdlc:gate-1"]
    assert server.gh.issue_labels(1) == ["sdlc:gate-1"]
    assert server.gh.labels["sdlc:gate-1"]["color"] == "fbca04"
    assert server.gh.labels["sdlc:gate-1"]["description"].startswith("SDLC: waiting")
    # the issue already carries it: one request, the label list
    before = len(server.gh.requests)
    tracker.sync_phase_label(gate)
    assert [r.method for r in server.gh.requests[before:]] == ["GET"]


def test_label_prefix_is_configurable_and_may_hold_a_slash(server):
    """``flow/phase-1`` travels as one path segment (``flow%2Fphase-1``): unescaped,
    the request matches no route of GitHub's description and the server fails the test."""
    tracker = tracker_for(server, label_prefix="flow/")
    ref = tracker.open_issue(open_input())
    for phase in (SdlcPhase.PHASE_1, SdlcPhase.DONE):
        tracker.sync_phase_label(PhaseLabelInput(repo_path="/unused", issue=ref, phase=phase))
    assert server.gh.issue_labels(1) == ["flow/done"]
    deletes = [r for r in server.gh.requests if r.method == "DELETE"]
    assert [(r.path, r.status) for r in deletes] == [
        ("/repos/octo/shop/issues/1/labels/flow/phase-1", 200)]
    assert server.gh.violations == []


def test_poll_accepts_writers_and_answers_others_once(server, tracker):
    ref = tracker.open_issue(open_input())
    gh = server.gh
    gh.permissions.update({"alice": "write", "boss": "admin", "mallory": "read"})
    opened = datetime.now(UTC) - timedelta(seconds=5)
    gh.add_comment(1, "mallory", "/approve")
    gh.add_comment(1, "alice", "Looks close.")
    gh.add_comment(1, "alice", "/revise list the columns")
    gh.add_comment(1, "stranger", "/approve")
    inp = CommentPollInput(issue=ref, after_id=0, not_before=opened, gate="GATE_1")
    poll = tracker.poll_comments(inp)
    assert [(c.author, c.verdict, c.text) for c in poll.commands] == [
        ("alice", Verdict.REVISE, "list the columns")]
    assert poll.ignored == 2
    replies = [c["body"] for c in gh.comments_on(1) if c["user"]["login"] == "orchestrator-bot"]
    assert len(replies) == 2
    assert "@mallory" in replies[0] and "write permission" in replies[0] and "read" in replies[0]
    assert "@stranger" in replies[1] and "none" in replies[1]
    # the same poll again (a retried activity): no second reply
    tracker.poll_comments(inp)
    assert len(gh.comments_on(1)) == 6
    # a later poll starts after the last seen comment and ignores the replies
    later = tracker.poll_comments(inp.model_copy(update={"after_id": poll.last_seen_id}))
    assert later.commands == [] and later.ignored == 0
    assert later.last_seen_id == max(c["id"] for c in gh.comments_on(1))


def test_a_command_posted_before_the_gate_opened_is_answered(server, tracker):
    ref = tracker.open_issue(open_input())
    server.gh.permissions["alice"] = "write"
    server.gh.add_comment(1, "alice", "/approve")
    poll = tracker.poll_comments(CommentPollInput(
        issue=ref, not_before=datetime.now(UTC) + timedelta(seconds=5), gate="GATE_1"))
    assert poll.commands == [] and poll.ignored == 1
    assert "posted before GATE_1 opened" in server.gh.comments_on(1)[-1]["body"]


def test_a_command_over_the_size_limit_is_answered_and_not_returned(server, tracker):
    ref = tracker.open_issue(open_input())
    server.gh.permissions["alice"] = "write"
    server.gh.add_comment(1, "alice", "/reject " + "x" * (MAX_GATE_TEXT_BYTES + 1))
    poll = tracker.poll_comments(CommentPollInput(
        issue=ref, not_before=datetime.now(UTC) - timedelta(seconds=5), gate="GATE_1"))
    assert poll.commands == [] and poll.ignored == 1  # its text stays out of history
    reply = server.gh.comments_on(1)[-1]["body"]
    assert "@alice" in reply and f"{MAX_GATE_TEXT_BYTES + 1:,} bytes, over the limit" in reply


def test_comment_is_posted_once_per_key(server, tracker):
    ref = tracker.open_issue(open_input())
    first = tracker.post_comment(CommentInput(issue=ref, body="Reminder 1", key="r-1"))
    assert tracker.post_comment(CommentInput(issue=ref, body="Reminder 1", key="r-1")) == first
    tracker.post_comment(CommentInput(issue=ref, body="Reminder 2", key="r-2"))
    assert [c["body"].split("\n")[0] for c in server.gh.comments_on(1)] == [
        "Reminder 1", "Reminder 2"]


@pytest.mark.parametrize(("status", "message", "error_type", "needle"), [
    (401, "Bad credentials", "GitHubUnauthorized", "GITHUB_TOKEN"),
    (403, "Resource not accessible by personal access token", "GitHubForbidden",
     "Issues: read and write"),
    (422, "Validation Failed", "GitHubError", "422"),
])
def test_permanent_errors_are_non_retryable_and_say_what_to_do(server, tracker, status, message,
                                                               error_type, needle):
    tracker.open_issue(open_input("sdlc-warm-up"))  # the repository check is done
    server.gh.fail_next("POST", r"/issues$", "status", status=status, message=message)
    with pytest.raises(ApplicationError) as err:
        tracker.open_issue(open_input())
    assert err.value.non_retryable and err.value.type == error_type
    assert needle in err.value.message


def test_a_bad_token_names_the_token(server):
    with pytest.raises(ApplicationError) as err:
        tracker_for(server, token="wrong").open_issue(open_input())
    assert err.value.non_retryable and "GITHUB_TOKEN" in err.value.message


def test_an_unknown_repository_is_named(server):
    with pytest.raises(ApplicationError) as err:
        tracker_for(server, repository="octo/nope").open_issue(open_input())
    assert err.value.non_retryable and err.value.type == "GitHubNotFound"
    assert "octo/nope" in err.value.message and "GITHUB_REPOSITORY" in err.value.message


def test_server_errors_are_retryable(server, tracker):
    server.gh.fail_next("GET", r"/issues$", "status", status=502, message="Bad Gateway")
    with pytest.raises(ApplicationError) as err:
        tracker.open_issue(open_input())
    assert not err.value.non_retryable


def test_rate_limits_wait_for_the_reset(server, tracker):
    tracker.open_issue(open_input("sdlc-warm-up"))
    server.gh.fail_next("POST", r"/issues$", "rate_limit", seconds=120)
    with pytest.raises(ApplicationError) as primary:
        tracker.open_issue(open_input())
    assert not primary.value.non_retryable and primary.value.type == "GitHubRateLimited"
    assert 118 <= primary.value.next_retry_delay.total_seconds() <= 121
    server.gh.fail_next("GET", r"/labels/", "secondary", seconds=7)
    ref = tracker.open_issue(open_input())
    with pytest.raises(ApplicationError) as secondary:
        tracker.sync_phase_label(PhaseLabelInput(repo_path="/x", issue=ref,
                                                 phase=SdlcPhase.PHASE_1))
    assert secondary.value.next_retry_delay == timedelta(seconds=7)
    assert len(server.gh.issues) == 2  # the warm-up's and this one


@pytest.mark.parametrize("kind", ["secondary_403", "abuse"])
def test_a_secondary_limit_as_403_without_retry_after_is_retried(server, tracker, kind):
    server.gh.fail_next("GET", r"/issues$", kind)
    with pytest.raises(ApplicationError) as err:
        tracker.open_issue(open_input())
    assert not err.value.non_retryable and err.value.type == "GitHubRateLimited"
    assert err.value.next_retry_delay == timedelta(minutes=1)
    assert tracker.open_issue(open_input()).number == 1


def test_repeated_secondary_limits_wait_longer_in_the_activity(server, tracker):
    """Inside an activity, the wait doubles with the attempt (activity.info().attempt);
    the issue search then starts at the activity's first scheduling (no ``since``)."""
    env = ActivityEnvironment()
    waits = []
    for attempt in (1, 2, 3):
        env.info = dataclasses.replace(ActivityEnvironment.default_info(), attempt=attempt,
                                       scheduled_time=datetime.now(UTC))
        server.gh.fail_next("GET", r"/issues$", "abuse")
        with pytest.raises(ApplicationError) as err:
            env.run(tracker.open_issue, open_input().model_copy(update={"since": None}))
        waits.append(err.value.next_retry_delay)
    assert waits == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    search = [r for r in server.gh.requests if r.path == "/repos/octo/shop/issues"][-1]
    assert datetime.fromisoformat(search.query["since"]) > datetime.now(UTC) - timedelta(
        minutes=6)


def test_rate_limit_delay_rules():
    now = 1_000_000.0
    reset = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1000060"}
    assert rate_limit_delay(403, reset, "API rate limit exceeded", now) == timedelta(seconds=60)
    assert rate_limit_delay(429, {"retry-after": "30"}, "", now) == timedelta(seconds=30)
    assert rate_limit_delay(403, {}, "You have exceeded a secondary rate limit", now) == \
        timedelta(minutes=1)
    # retry-after first, then the reset, then growing waits for repeated secondary limits
    assert rate_limit_delay(429, {"retry-after": "30", **reset}, "", now, attempt=5) == \
        timedelta(seconds=30)
    assert rate_limit_delay(403, reset, "", now, attempt=5) == timedelta(seconds=60)
    abuse = "You have triggered an abuse detection mechanism."
    assert [rate_limit_delay(403, {}, abuse, now, attempt=n) for n in (1, 2, 3, 4)] == [
        timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert rate_limit_delay(429, {}, "", now, attempt=30) == timedelta(minutes=30)
    assert rate_limit_delay(403, {"x-ratelimit-remaining": "10"}, "Forbidden", now) is None
    assert rate_limit_delay(500, {"retry-after": "3"}, "", now) is None


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    return bare


def test_pull_request_pushes_the_branch_and_is_opened_once(git_repo, remote):
    git(git_repo, "remote", "add", "origin", str(remote))
    git(git_repo, "push", "-q", "origin", "main")
    git(git_repo, "checkout", "-q", "-b", "001-add-csv")
    (git_repo / "spec.md").write_text("spec\n")
    git(git_repo, "add", ".")
    git(git_repo, "commit", "-q", "-m", "spec")
    with GitHubServer(FakeGitHub(remote=remote)) as server:
        tracker = tracker_for(server)
        ref = tracker.open_issue(open_input())
        inp = PullRequestInput(repo_path=str(git_repo), issue=ref, branch="001-add-csv",
                               base="main", title="Add CSV export", body="Spec.",
                               workflow_id="sdlc-shop-add-csv")
        server.gh.fail_next("POST", r"/pulls$", "drop")
        with pytest.raises(ApplicationError):
            tracker.open_pull_request(inp)
        pull = tracker.open_pull_request(inp)
        assert tracker.open_pull_request(inp) == pull
        assert len(server.gh.pulls) == 1
        made = server.gh.pulls[0]
        assert made["head"]["ref"] == "001-add-csv" and made["base"]["ref"] == "main"
        assert "Closes #1" in made["body"] and pull.url.endswith(f"/pull/{pull.number}")
    assert git(remote, "rev-parse", "001-add-csv") == git(git_repo, "rev-parse", "001-add-csv")


def test_pull_request_without_the_remote_says_how_to_add_it(git_repo, server, tracker):
    ref = IssueRef(number=1, provider="github")
    with pytest.raises(ApplicationError) as err:
        tracker.open_pull_request(PullRequestInput(
            repo_path=str(git_repo), issue=ref, branch="main", base="main", title="t"))
    assert err.value.non_retryable and "git remote add origin" in err.value.message


def test_a_rejected_push_is_non_retryable_and_opens_no_pull_request(git_repo, remote, tmp_path):
    git(git_repo, "remote", "add", "origin", str(remote))
    git(git_repo, "push", "-q", "origin", "main:001-add-csv")  # someone else's branch
    git(git_repo, "checkout", "-q", "--orphan", "001-add-csv")
    git(git_repo, "commit", "-q", "-m", "unrelated")
    with GitHubServer(FakeGitHub(remote=remote)) as server:
        tracker = tracker_for(server)
        ref = tracker.open_issue(open_input())
        with pytest.raises(ApplicationError) as err:
            tracker.open_pull_request(PullRequestInput(
                repo_path=str(git_repo), issue=ref, branch="001-add-csv", base="main",
                title="t"))
        assert err.value.non_retryable and "commits the local one lacks" in err.value.message
        assert server.gh.pulls == []


# -- scale: requests counted on the contract-checked server ------------------------------

def test_open_issue_among_500_issues_and_prs_costs_two_requests_and_one_on_retry(server, tracker):
    """500 older issues and pull requests, some updated during the run, and issues other
    people opened during the run: creating costs the search and the creation; the retry
    after a crash finds the issue in one request, without fetching any issue again."""
    gh = server.gh
    long_ago = RUN_START - timedelta(days=30)
    for i in range(500):
        if i % 5 == 0:
            gh.add_pull(f"feature-{i}", body=f"PR {i}", at=long_ago + timedelta(minutes=i))
        else:
            gh.add_issue(f"Old {i}", f"Issue {i}", at=long_ago + timedelta(minutes=i))
    for number in (3, 7, 11):  # old issues people comment on during the run
        gh.add_comment(number, "alice", "still relevant")
    gh.add_issue("Someone else's", "Unrelated.")
    gh.fail_next("POST", r"/issues$", "drop")
    with pytest.raises(ApplicationError):
        tracker.open_issue(open_input())
    gh.add_issue("Another one", "Opened meanwhile.")
    before = len(gh.requests)
    ref = tracker.open_issue(open_input())
    retry = gh.requests[before:]
    assert ref.number == 502 and "workflow-id=sdlc-shop-add-csv" in gh.issues[502]["body"]
    assert [(r.method, r.path) for r in retry] == [("GET", "/repos/octo/shop/issues")]
    assert retry[0].query["per_page"] == "100" and "since" in retry[0].query
    assert len(gh.issues) == 403  # 400 old, 2 by others, ours once
    assert gh.count("GET", r"/issues/\d+$") == 0
    assert [(r.method, r.path) for r in gh.requests] == [
        ("GET", "/repos/octo/shop/issues"), ("POST", "/repos/octo/shop/issues"),
        ("GET", "/repos/octo/shop/issues")]


def test_an_issue_of_an_earlier_run_with_the_same_id_is_not_reused(server, tracker):
    server.gh.add_issue("Add CSV export", "<!-- durable-orchestrator:workflow-id="
                        "sdlc-shop-add-csv -->", login="orchestrator-bot",
                        at=RUN_START - timedelta(days=2))
    assert tracker.open_issue(open_input()).number == 2


def test_lists_are_paginated_with_link_headers_and_list_prs_among_issues(server):
    gh = server.gh
    for i in range(5):
        gh.add_issue(f"Issue {i}")
    gh.add_pull("feature")
    client = Github(auth=Auth.Token(gh.token), base_url=server.api_url, per_page=2, retry=None,
                    lazy=True)
    listed = list(client.get_repo("octo/shop").get_issues(state="all"))
    assert [i.number for i in listed] == [6, 5, 4, 3, 2, 1]
    pages = [r for r in gh.requests if r.path == "/repos/octo/shop/issues"]
    assert [r.query.get("page", "1") for r in pages] == ["1", "2", "3"]
    assert all(r.query["per_page"] == "2" for r in pages)
    headers, first = client.requester.requestJsonAndCheck(
        "GET", "/repos/octo/shop/issues", parameters={"per_page": 2})
    assert 'page=2>; rel="next"' in headers["link"] and 'page=3>; rel="last"' in headers["link"]
    assert "pull_request" in first[0] and "pull_request" not in first[1]


def test_the_contract_refuses_what_github_does_not_document(server):
    """PyGithub's own label calls send a bare JSON array and an unescaped label name;
    GitHub's description allows neither, so the server answers 422 and fails the test."""
    gh = server.gh
    gh.add_issue("An issue")
    issue = Github(auth=Auth.Token(gh.token), base_url=server.api_url, retry=None,
                   lazy=True).get_repo("octo/shop").get_issue(1)
    with pytest.raises(GithubException) as bare:
        issue.add_to_labels("bug")
    with pytest.raises(GithubException) as slash:
        issue.remove_from_labels("flow/gate-1")
    assert bare.value.status == slash.value.status == 422
    assert len(gh.violations) == 2
    assert "POST /repos/octo/shop/issues/1/labels" in gh.violations[0]
    assert "Path not found" in gh.violations[1] or "PathNotFound" in gh.violations[1]
    gh.violations.clear()  # seen: let the fixture's exit check pass


def test_the_server_fails_a_test_whose_client_leaves_the_description():
    with pytest.raises(AssertionError, match="OpenAPI description"), GitHubServer() as srv:
        client = Github(auth=Auth.Token(srv.gh.token), base_url=srv.api_url, retry=None)
        with pytest.raises(GithubException):
            client.requester.requestJsonAndCheck("GET", "/repos/octo/shop/issues",
                                                 parameters={"state": "everything"})


def test_an_empty_poll_is_one_request_whatever_the_history(server, tracker):
    ref = tracker.open_issue(open_input())
    gh = server.gh
    gh.permissions["alice"] = "write"
    opened = datetime.now(UTC) - timedelta(seconds=5)
    old = datetime.now(UTC) - timedelta(hours=3)
    for i in range(250):
        gh.add_comment(1, "bob", f"Note {i}", at=old + timedelta(seconds=i))
    inp = CommentPollInput(issue=ref, not_before=opened, gate="GATE_1")
    first = tracker.poll_comments(inp)
    assert gh.count("GET", "/comments$") == 3  # the whole history, once: 3 pages of 100
    assert first.commands == [] and first.since is not None
    for _ in range(3):
        before = len(gh.requests)
        idle = tracker.poll_comments(inp.advanced(first))
        assert len(gh.requests) - before == 1
        assert idle.commands == [] and idle.last_seen_id == first.last_seen_id
    gh.add_comment(1, "alice", "/approve")
    before = len(gh.requests)
    news = tracker.poll_comments(inp.advanced(first))
    assert [c.author for c in news.commands] == ["alice"]
    assert [r.path.rsplit("/", 1)[-1] for r in gh.requests[before:]] == ["comments",
                                                                          "permission"]
    again = tracker.poll_comments(inp.advanced(news))
    assert again.commands == [] and again.last_seen_id == news.last_seen_id


def test_a_comment_shown_late_is_still_read(server, tracker):
    """GitHub may list a comment only after a later one: the next poll re-reads the
    overlap before the newest comment seen, and comment IDs keep each read once."""
    ref = tracker.open_issue(open_input())
    gh = server.gh
    gh.permissions["alice"] = "write"
    opened = datetime.now(UTC) - timedelta(minutes=5)
    gh.add_comment(1, "bob", "Later note")
    inp = CommentPollInput(issue=ref, not_before=opened, gate="GATE_1")
    first = tracker.poll_comments(inp)
    late = gh.add_comment(1, "alice", "/approve", at=datetime.now(UTC) - timedelta(seconds=30))
    poll = tracker.poll_comments(inp.advanced(first))
    assert [c.comment_id for c in poll.commands] == [late["id"]]


@pytest.fixture
def branch_pushed(git_repo: Path, remote: Path) -> Path:
    """``git_repo`` with ``origin`` = ``remote`` and a committed branch ``001-add-csv``."""
    git(git_repo, "remote", "add", "origin", str(remote))
    git(git_repo, "push", "-q", "origin", "main")
    git(git_repo, "checkout", "-q", "-b", "001-add-csv")
    (git_repo / "spec.md").write_text("spec\n")
    git(git_repo, "add", ".")
    git(git_repo, "commit", "-q", "-m", "spec")
    return git_repo


def pr_input(repo: Path, wf: str = "sdlc-shop-add-csv") -> PullRequestInput:
    return PullRequestInput(repo_path=str(repo), issue=IssueRef(number=1, provider="github"),
                            branch="001-add-csv", base="main", title="Add CSV export",
                            workflow_id=wf)


def test_a_closed_pull_request_of_an_earlier_run_is_not_reused(branch_pushed, remote):
    with GitHubServer(FakeGitHub(remote=remote)) as server:
        old = server.gh.add_pull("001-add-csv", state="closed",
                                 body="<!-- durable-orchestrator:workflow-id=sdlc-shop-add-csv -->")
        pull = tracker_for(server).open_pull_request(pr_input(branch_pushed))
        assert pull.number != old["number"] and len(server.gh.pulls) == 2
        assert server.gh.pulls[-1]["state"] == "open"
        listed = [r for r in server.gh.requests if r.path == "/repos/octo/shop/pulls"
                  and r.method == "GET"]
        assert listed[0].query["state"] == "open"


def test_an_open_pull_request_of_another_run_is_not_taken(branch_pushed, remote):
    with GitHubServer(FakeGitHub(remote=remote)) as server:
        server.gh.add_pull("001-add-csv", body="Someone's own work.")
        with pytest.raises(ApplicationError) as err:
            tracker_for(server).open_pull_request(pr_input(branch_pushed))
        assert err.value.non_retryable and err.value.type == "GitHubPullRequestTaken"
        assert "another run" in err.value.message and len(server.gh.pulls) == 1
