"""What every CLI command shares: settings, the client, error printing, output."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models.text import TITLE_MAX_CHARS, WORKFLOW_ID_MAX_BYTES, NotUtf8Error, decode_utf8
from settings import (
    PerformanceSettings,
    Settings,
    SettingsError,
    load_performance_settings,
    load_settings,
)
from temporal_plumbing.client import connect_client, temporal_connect_config
from temporal_plumbing.codec import PayloadDecryptionError
from temporal_plumbing.environments import TemporalSetupError

M = TypeVar("M", bound=BaseModel)
QUERY_TIMEOUT = timedelta(seconds=5)


class CliError(Exception):
    """A user-facing failure: printed as one line on stderr, exit code ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit code 2),
    naming the command and where its help is; subcommand parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        """Print ``error: PROG: MESSAGE (see PROG --help)`` and exit with code 2."""
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


class Context:
    """What a command gets: parsed arguments, settings and a lazily made client."""

    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.settings = settings
        self._client: Client | None = None

    @property
    def json(self) -> bool:
        """Whether output is JSON for scripts."""
        return bool(getattr(self.args, "json", False))

    async def client(self) -> Client:
        """The Temporal client (connected once)."""
        if self._client is None:
            try:
                self._client = await connect_client()
            except ConnectionError as err:
                raise CliError(str(err)) from None
        return self._client

    async def handle(self, workflow_id: str) -> WorkflowHandle[Any, Any]:
        """A handle on an existing workflow.

        Raises:
            CliError: no workflow has that ID.
        """
        client = await self.client()
        handle = client.get_workflow_handle(workflow_id)
        try:
            await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise CliError(f"no workflow with ID {workflow_id!r}; "
                               "`python starter.py list` shows the workflows") from None
            raise
        return handle

    def ui_link(self, workflow_id: str) -> str:
        """The web UI page of a workflow."""
        namespace = temporal_connect_config().get("namespace") or "default"
        return (f"{self.settings.temporal_ui_url.rstrip('/')}/namespaces/{namespace}"
                f"/workflows/{workflow_id}")

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        """Print ``data`` as JSON with ``--json``, else the human-readable ``text``."""
        if self.json:
            print(json.dumps(to_jsonable(data), indent=2, default=str))
        else:
            print(text() if callable(text) else text)


_VISIBILITY_VALUE = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,256}$")


def visibility_literal(value: str, what: str) -> str:
    """``value`` as a quoted string literal of a Temporal visibility (list filter)
    query, e.g. ``'SdlcWorkflow'``.

    Only letters, digits and ``_ . : / @ + -`` are accepted (every workflow type,
    workflow ID and search attribute value this tool makes); a quote, space or
    backslash could change the query's meaning, so it is refused rather than
    escaped.

    Raises:
        CliError: ``value`` holds another character; the message names ``what``
            (e.g. ``--type``).
    """
    if not _VISIBILITY_VALUE.match(value):
        raise CliError(f"{what} {value!r} is not a valid name: use letters, digits and "
                       "_ . : / @ + - only")
    return f"'{value}'"


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of a file named on the command line.

    Raises:
        CliError: the file cannot be read (names ``what``, e.g. ``--description-file``,
            the path and the reason) or is not UTF-8 (names the byte offset).
    """
    try:
        raw = Path(path).expanduser().read_bytes()
    except OSError as err:
        raise CliError(f"cannot read {what}: {err.strerror or err}: {path}", code=2) from None
    try:
        return decode_utf8(raw, f"{what} {path}")
    except NotUtf8Error as err:
        raise CliError(str(err), code=2) from None


def checked_title(title: str, what: str = "--title") -> str:
    """``title`` stripped, when it is usable as a workflow's title.

    Raises:
        CliError: it is blank, or longer than TITLE_MAX_CHARS characters.
    """
    title = title.strip()
    if not title:
        raise CliError(f"{what} is blank; give a one-line title", code=2)
    if len(title) > TITLE_MAX_CHARS:
        raise CliError(f"{what} is {len(title)} characters long; the limit is "
                       f"{TITLE_MAX_CHARS} (put the detail in the description)", code=2)
    return title


def checked_workflow_id(workflow_id: str) -> str:
    """``workflow_id`` when Temporal accepts its length.

    Raises:
        CliError: longer than WORKFLOW_ID_MAX_BYTES UTF-8 bytes (names the limit).
    """
    size = len(workflow_id.encode("utf-8"))
    if size > WORKFLOW_ID_MAX_BYTES:
        raise CliError(f"the workflow ID would be {size} bytes long; Temporal's limit is "
                       f"{WORKFLOW_ID_MAX_BYTES} (use shorter names)", code=2)
    return workflow_id


def positive_int(text: str) -> int:
    """argparse ``type=`` for counts that must be at least 1 (``--limit``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed: give 1 or more")
    return value


def to_jsonable(data: Any) -> Any:
    """Models and containers of models as plain JSON-compatible data."""
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list | tuple):
        return [to_jsonable(x) for x in data]
    if isinstance(data, dict):
        return {k: to_jsonable(v) for k, v in data.items()}
    if isinstance(data, datetime):
        return data.isoformat()
    return data


def with_defaults(model: type[M], defaults: dict[str, Any], fields: dict[str, Any]) -> M:
    """``model`` from ``defaults`` (the settings a command falls back on), each field
    given on the command line (not None) winning.

    Raises:
        pydantic.ValidationError: the merged values do not validate.
    """
    return model(**{**defaults, **{k: v for k, v in fields.items() if v is not None}})


def default_actor() -> str:
    """Who the CLI user is, for the audit log: the login name."""
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "cli"


def json_flag() -> argparse.ArgumentParser:
    """A parent parser that gives a subcommand the ``--json`` flag."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parent


def failure_message(err: BaseException) -> str:
    """The innermost useful message of a Temporal failure chain."""
    messages = []
    while err is not None:
        msg = getattr(err, "message", None) or str(err)
        if msg:
            messages.append(msg)
        err = err.__cause__  # type: ignore[assignment]
    return messages[-1] if messages else "unknown error"


Command = Callable[[Context], Awaitable[int]]


def run(command: Command, args: argparse.Namespace) -> int:
    """Run one command: every user mistake and unreachable server becomes one
    line on stderr and a non-zero exit code, never a traceback."""
    try:
        settings = load_settings()
        code = asyncio.run(command(Context(args, settings)))
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        return quiet_broken_pipe()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        expected = expected_error(err)
        if expected is None:
            raise
        message, code = expected
        print(f"error: {message}", file=sys.stderr)
        return code


def expected_error(err: Exception) -> tuple[str, int] | None:
    """The one-line message and exit code (1: failed or refused, 2: bad input) of an
    expected failure of a command; None for anything else (a bug: it keeps its
    traceback)."""
    if isinstance(err, CliError):
        return str(err), err.code
    if isinstance(err, TemporalSetupError):
        return str(err), 1
    if isinstance(err, PayloadDecryptionError):
        return f"cannot decode the workflow's data: {err}", 1
    if isinstance(err, SettingsError | NotUtf8Error):
        return str(err), 2
    if isinstance(err, ValidationError):
        return "invalid input: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()), 2
    if isinstance(err, WorkflowAlreadyStartedError):
        return (f"a workflow with ID {err.workflow_id!r} already exists; look at it with "
                f"`python starter.py status {err.workflow_id}`, or start it under another "
                "ID"), 1
    if isinstance(err, WorkflowUpdateFailedError):
        return f"refused: {failure_message(err)}", 1
    if isinstance(err, WorkflowQueryFailedError):
        return f"query failed: {err}", 1
    if isinstance(err, WorkflowFailureError):
        return f"workflow failed: {failure_message(err)}", 1
    if isinstance(err, RPCError):
        if err.status == RPCStatusCode.DEADLINE_EXCEEDED:
            return ("the workflow did not answer in time: is a worker running? "
                    "Start one with `python worker.py`"), 1
        return f"Temporal refused the request: {err.message}", 1
    if isinstance(err, UnicodeDecodeError):  # a file read without naming it
        return (f"a file is not UTF-8 text: byte 0x{err.object[err.start]:02x} at "
                f"offset {err.start} cannot be decoded"), 2
    if isinstance(err, OSError):  # a file named on the command line that cannot be read
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror or err}{where}", 2
    return None


def quiet_broken_pipe() -> int:
    """The reader of our output went away (``--json | head``): point stdout at
    /dev/null so nothing more is written (nor a flush error at exit) and return
    141, the shell's code for a process ended by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


# -- Performance and recovery (issue 7) ---------------------------------------


def workflow_start_options(perf: PerformanceSettings | None = None) -> dict[str, Any]:
    """Keyword arguments every orchestration's start passes to ``Client.start_workflow``
    (through :func:`start_orchestration`), from ``perf`` (default: the environment):
    ``task_timeout``, so a workflow task held by a worker that was killed is
    retried elsewhere after WORKFLOW_TASK_TIMEOUT instead of the server's 10 s."""
    perf = perf or load_performance_settings()
    return {"task_timeout": perf.workflow_task_timeout}


async def start_orchestration(client: Client, run: Callable[..., Awaitable[Any]], arg: Any, *,
                              id: str, settings: Settings,
                              search_attributes: TypedSearchAttributes | None = None,
                              static_summary: str | None = None) -> WorkflowHandle[Any, Any]:
    """Start a workflow through its class's ``run`` (``SdlcWorkflow.run``: a rename
    fails at import, not at run time) with the options every orchestration's start
    shares: the task queue, ``REJECT_DUPLICATE`` IDs and :func:`workflow_start_options`.

    Raises:
        WorkflowAlreadyStartedError: a workflow with ``id`` exists (running or closed).
    """
    return await client.start_workflow(
        run, arg, id=id, task_queue=settings.temporal_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=search_attributes, static_summary=static_summary,
        **workflow_start_options())
