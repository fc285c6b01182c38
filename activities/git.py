"""Git operations on local repositories (the git CLI), and their activities.

Every activity here is idempotent: a retry after a crash finds and reuses the
branch, worktree or commit a previous attempt made.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.processes import kill_fenced, run_sync
from activities.secrets import subprocess_env
from models.git import BranchRef, PrepareBranchInput, WorktreeInput

_BRANCH_NUMBER = re.compile(r"^(\d{3,})-")
# git config key (under branch.<name>.) that ties a branch to the workflow that made it
_OWNER_KEY = "orchestratorworkflow"
# committer identity when the repository and the user have none configured
FALLBACK_IDENTITY = {"user.name": "Durable Orchestrator", "user.email": "orchestrator@localhost"}
# seconds one local git command may take (well inside policies.GIT_TIMEOUT, which
# bounds a whole git activity); a hung git is killed with its process group
GIT_COMMAND_TIMEOUT = 30.0
# directory (inside a worktree's private git directory) of the process fences of
# activities.processes: never in the work tree, removed with the worktree
FENCE_DIR = "orchestrator-fences"


GIT_ENV: tuple[str, ...] = (
    "XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "SSH_AUTH_SOCK",
    "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSL_CAINFO", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")
"""Worker variables git gets besides ``activities.secrets.BASE_ENV`` (``PATH``, ``HOME``
...): where its configuration and committer identity come from, the ssh-agent socket,
TLS roots and proxies. None is a secret; nothing else of the worker's environment
reaches git or the hooks it runs (``GIT_DIR`` and the like included)."""


def git_env(own: Mapping[str, str] | None = None,
            environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a git subprocess: ``BASE_ENV`` and ``GIT_ENV`` variables of
    ``environ`` (default ``os.environ``), ``GIT_TERMINAL_PROMPT=0`` (a worker has no
    terminal to ask for credentials on), then ``own`` (e.g. a push's credential
    variable), built by :func:`activities.secrets.subprocess_env`."""
    return subprocess_env({"GIT_TERMINAL_PROMPT": "0", **(own or {})}, grants=GIT_ENV,
                          environ=environ)


class GitError(RuntimeError):
    """A git command failed; the message holds the command and git's stderr."""


def run_git(cwd: Path | str, *args: str, timeout: float = GIT_COMMAND_TIMEOUT,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``git <args>`` in ``cwd`` through the subprocess layer
    (:func:`activities.processes.run_sync`: own process group, under the supervisor),
    with the allowlisted environment of :func:`git_env` (``env``: more variables).

    Raises:
        GitError: git ran longer than ``timeout`` seconds (it was killed).
    """
    try:
        return run_sync(["git", *args], cwd=cwd, timeout=timeout, env=git_env(env))
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)} in {cwd} ran longer than {timeout:.0f} s "
                       "and was killed") from None


def git(cwd: Path | str, *args: str, check: bool = True,
        timeout: float = GIT_COMMAND_TIMEOUT) -> str:
    """Run ``git <args>`` in ``cwd`` and return stdout without the trailing newline.

    Raises:
        GitError: git exited non-zero (only when ``check``), or ran longer than
            ``timeout`` seconds.
    """
    proc = run_git(cwd, *args, timeout=timeout)
    if check and proc.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.rstrip("\n")


def fence_dir(worktree: Path | str) -> Path:
    """Where the process fences of ``worktree`` live: ``<its git directory>/
    orchestrator-fences`` (private to the worktree, outside the work tree)."""
    return Path(git(worktree, "rev-parse", "--absolute-git-dir")) / FENCE_DIR


def require_repo(path: str) -> Path:
    """The top level of the git repository at ``path``.

    Raises:
        ApplicationError: (non-retryable) ``path`` is not a git repository.
    """
    repo = Path(path)
    if not repo.is_dir():
        raise ApplicationError(
            f"repository path {path} does not exist; pass the path of a local git repository",
            type="InvalidRepository", non_retryable=True,
        )
    top = run_git(repo, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ApplicationError(
            f"{path} is not a git repository; run `git init` there or pass another path",
            type="InvalidRepository", non_retryable=True,
        )
    return Path(top.stdout.strip())


def commit_round(
    worktree: Path, relpath: str, subject: str, trailers: dict[str, str]
) -> str:
    """Commit ``relpath`` in ``worktree`` with ``trailers``; return the commit SHA.

    Idempotent per trailer set: when HEAD already carries exactly these
    trailers (a retried attempt), HEAD is reused if the file is unchanged and
    amended if it changed, so each round has one commit.

    Raises:
        GitError: git failed.
    """
    trailer_text = "\n".join(f"{k}: {v}" for k, v in trailers.items())
    message = f"{subject}\n\n{trailer_text}\n"
    git(worktree, "add", "--", relpath)
    head_has_round = False
    if git(worktree, "rev-parse", "--verify", "-q", "HEAD", check=False):
        head_trailers = git(
            worktree, "log", "-1", "--format=%(trailers:only,unfold)", "HEAD"
        )
        head_lines = set(head_trailers.splitlines())
        head_has_round = all(f"{k}: {v}" in head_lines for k, v in trailers.items())
    staged = run_git(worktree, "diff", "--cached", "--quiet").returncode != 0
    if head_has_round and not staged:
        return git(worktree, "rev-parse", "HEAD")
    args = ["commit", "-q", "-m", message]
    if head_has_round:
        args.append("--amend")
    elif not staged:
        args.append("--allow-empty")
    if not git(worktree, "config", "user.email", check=False):
        args = [a for k, v in FALLBACK_IDENTITY.items() for a in ("-c", f"{k}={v}")] + args
    git(worktree, *args)
    return git(worktree, "rev-parse", "HEAD")


def identity_args(cwd: Path) -> list[str]:
    """``-c user.name=... -c user.email=...`` when the repository and the user have
    no committer identity configured, else nothing."""
    if git(cwd, "config", "user.email", check=False):
        return []
    return [a for k, v in FALLBACK_IDENTITY.items() for a in ("-c", f"{k}={v}")]


def init_repository(path: Path, branch: str) -> None:
    """Make ``path`` a git repository on ``branch`` with one empty commit; a
    repository already there is left as it is (idempotent)."""
    path.mkdir(parents=True, exist_ok=True)
    if (path / ".git").exists():
        return
    git(path, "init", "-q", "-b", branch)
    git(path, *identity_args(path), "commit", "-q", "--allow-empty", "-m", "workspace created")


def find_commit(cwd: Path, rev: str, trailers: dict[str, str], depth: int = 20
                ) -> str | None:
    """The newest of the last ``depth`` commits reachable from ``rev`` that carries
    every one of ``trailers``, or None. (Bounded, so that a long history costs
    nothing: a retried activity looks for the commit it made moments ago.)"""
    for sha, found in reversed(trailer_log(cwd, rev, depth)):
        if all(found.get(k) == v for k, v in trailers.items()):
            return sha
    return None


def commit_file(worktree: Path, relpath: str, message: str) -> str:
    """Stage ``relpath`` and commit it alone with ``message``; return the commit SHA.
    Three git processes; no idempotency check (callers look first, see
    :func:`find_commit`).

    Raises:
        GitError: git failed (e.g. nothing to commit).
    """
    git(worktree, "add", "--", relpath)
    git(worktree, *identity_args(worktree), "commit", "-q", "-m", message, "--", relpath)
    return git(worktree, "rev-parse", "HEAD")


def trailer_log(cwd: Path, rev: str, limit: int | None = None
                ) -> list[tuple[str, dict[str, str]]]:
    """(commit SHA, trailers) of every commit reachable from ``rev`` (the newest
    ``limit`` when given), oldest first.

    Trailers are parsed by git (``%(trailers:only,unfold)``); a repeated key keeps
    its last value.
    """
    count = [f"-n{limit}"] if limit else []
    out = git(cwd, "log", *count, "--format=%H%x1f%(trailers:only,unfold)%x1e", rev)
    result: list[tuple[str, dict[str, str]]] = []
    for record in out.split("\x1e"):
        if not record.strip():
            continue
        sha, _, text = record.strip("\n").partition("\x1f")
        trailers = {}
        for line in text.splitlines():
            key, sep, value = line.partition(": ")
            if sep:
                trailers[key.strip()] = value.strip()
        result.append((sha.strip(), trailers))
    return result[::-1]


def merge_branch(repo: Path, branch: str, base: str, message: str) -> str:
    """Merge ``branch`` into ``base`` with a merge commit (``--no-ff``) and return
    the SHA of ``base`` afterwards. Idempotent: when ``branch`` is already in
    ``base``, nothing is done.

    The merge happens in the worktree that has ``base`` checked out (it must be
    clean), or in a temporary worktree when none has.

    Raises:
        GitError: the merge failed (e.g. a conflict; the merge is aborted first).
    """
    if run_git(repo, "merge-base", "--is-ancestor", branch, base).returncode == 0:
        return git(repo, "rev-parse", base)
    checked_out = git(repo, "worktree", "list", "--porcelain")
    where: Path | None = None
    path = ""
    for line in checked_out.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree "):]
        elif line == f"branch refs/heads/{base}":
            where = Path(path)
    temporary = where is None
    if where is None:
        where = repo / ".git" / f"merge-{branch.replace('/', '-')}"
        git(repo, "worktree", "add", "-q", str(where), base)
    try:
        try:
            git(where, *identity_args(where), "merge", "--no-ff", "-q", "-m", message, branch)
        except GitError:
            git(where, "merge", "--abort", check=False)
            raise
        return git(where, "rev-parse", "HEAD")
    finally:
        if temporary:
            git(repo, "worktree", "remove", "--force", str(where), check=False)


def _branch_owners(repo: Path) -> dict[str, str]:
    """Branch name -> workflow ID, from ``branch.<name>.orchestratorworkflow``."""
    out = git(repo, "config", "--get-regexp", rf"^branch\..*\.{_OWNER_KEY}$", check=False)
    owners: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        owners[key[len("branch."):-len(_OWNER_KEY) - 1]] = value
    return owners


BRANCH_LOCK = "orchestrator-branch-numbers.lock"  # in the repository's git directory


@contextmanager
def branch_number_lock(repo: Path) -> Iterator[None]:
    """Hold an exclusive lock (``flock``) on ``<git common dir>/orchestrator-branch-
    numbers.lock`` while a branch number is chosen and claimed, so two runs started
    at once on one repository (on any worker of this machine) never pick the same
    ``NNN``. The lock is released when the block ends or its process dies.

    Raises:
        GitError: the git directory cannot be found.
    """
    common = Path(git(repo, "rev-parse", "--git-common-dir"))
    path = (common if common.is_absolute() else repo / common) / BRANCH_LOCK
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class GitActivities:
    """Branches and worktrees of feature work.

    Args:
        worktree_root: directory under which worktrees are made, as
            ``<worktree_root>/<repository name>/<branch>``.
    """

    def __init__(self, worktree_root: Path) -> None:
        self.worktree_root = worktree_root

    @activity.defn(name="prepare_branch")
    def prepare_branch(self, inp: PrepareBranchInput) -> BranchRef:
        """Create the branch ``NNN-slug`` from the base branch, or return the one
        this workflow already made.

        NNN is one more than the highest ``NNN-`` branch (or number claimed in git
        config) in the repository, chosen and claimed under
        :func:`branch_number_lock`, so runs started at once get different numbers.
        The branch is tied to the workflow ID in git config *before* it is created,
        so a retry after a crash finds it.

        Raises:
            ApplicationError: (non-retryable) not a repository, or no such base branch.
        """
        repo = require_repo(inp.repo_path)
        base_commit = git(repo, "rev-parse", "--verify", "-q", f"{inp.base_branch}^{{commit}}",
                          check=False)
        if not base_commit:
            raise ApplicationError(
                f"base branch {inp.base_branch!r} does not exist in {repo}; "
                "pass --base with an existing branch",
                type="InvalidRepository", non_retryable=True,
            )
        with branch_number_lock(repo):
            owned = [b for b, wf in _branch_owners(repo).items() if wf == inp.workflow_id]
            if owned:
                name = owned[0]
            else:
                branches = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads")
                numbers = [int(m.group(1)) for b in branches.splitlines()
                           if (m := _BRANCH_NUMBER.match(b))]
                # numbers claimed in git config by a run whose branch is not made yet
                numbers += [int(m.group(1)) for b in _branch_owners(repo)
                            if (m := _BRANCH_NUMBER.match(b))]
                name = f"{max(numbers, default=0) + 1:03d}-{inp.slug}"
                git(repo, "config", f"branch.{name}.{_OWNER_KEY}", inp.workflow_id)
            if not git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{name}", check=False):
                git(repo, "branch", name, base_commit)
        activity.logger.info("branch %s ready in %s", name, repo)
        return BranchRef(
            name=name, number=int(name.split("-", 1)[0]), base=inp.base_branch,
            base_commit=base_commit,
        )

    def worktree_path(self, repo: Path, branch: str) -> Path:
        """Where the worktree of ``branch`` of ``repo`` lives."""
        return (self.worktree_root / repo.name / branch).resolve()

    @activity.defn(name="add_worktree")
    def add_worktree(self, inp: WorktreeInput) -> str:
        """Check out ``inp.branch`` in its own worktree; return the worktree's path.

        Reuses a worktree that already has the branch checked out.
        """
        repo = require_repo(inp.repo_path)
        for path, branch in _worktrees(repo):
            if branch == inp.branch:
                return path
        target = self.worktree_path(repo, inp.branch)
        if target.exists():  # left by an attempt that crashed inside `git worktree add`
            shutil.rmtree(target)
        git(repo, "worktree", "prune")
        target.parent.mkdir(parents=True, exist_ok=True)
        git(repo, "worktree", "add", "-q", str(target), inp.branch)
        return str(target)

    @activity.defn(name="remove_worktree")
    def remove_worktree(self, inp: WorktreeInput) -> None:
        """Kill the process groups still recorded in the worktree's fences (see
        :mod:`activities.processes`), then remove the worktree of ``inp.branch``;
        the branch and its commits stay. Nothing to remove is fine (idempotent)."""
        repo = require_repo(inp.repo_path)
        for path, branch in _worktrees(repo):
            if branch == inp.branch:
                killed = kill_fenced(fence_dir(path))
                if killed:
                    activity.logger.info("killed process groups %s in %s", killed, path)
                git(repo, "worktree", "remove", "--force", path)
        git(repo, "worktree", "prune")


def _worktrees(repo: Path) -> list[tuple[str, str]]:
    """(path, branch) of each linked worktree of ``repo`` that has a branch checked out.

    The main worktree (listed first by git) is left out: it is never ours to remove.
    """
    out = git(repo, "worktree", "list", "--porcelain")
    result: list[tuple[str, str]] = []
    path = ""
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree "):]
        elif line.startswith("branch refs/heads/"):
            result.append((path, line[len("branch refs/heads/"):]))
    return result[1:] if result and result[0][0] == str(repo) else result
