"""Secrets stay on the worker: subprocess environments from an allowlist, and
scrubbing of secret values from everything an activity returns, raises or writes.

* :func:`subprocess_env` builds the environment of every subprocess an activity
  starts (shell steps, the ``command`` and ``claude`` agent runners): a few
  harmless variables of the worker (``PATH``, ``HOME``, ``LANG``...), the
  variables the caller owns (``WORKSTREAM_*``, ``SDLC_*``), the tool's
  configured ``env`` and only the secret names the worker's configuration
  grants. Nothing else of the worker's environment is passed on.
* :class:`Scrubber` replaces every known secret value in text (and in nested
  JSON-like data and pydantic models) with ``***``.
* :class:`ScrubbingInterceptor` applies the scrubber to every activity's return
  value and to the message and details of every error it raises, so no secret
  value reaches workflow history. The artifact store scrubs what it writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

REDACTED = "***"

KNOWN_SECRET_ENV: tuple[str, ...] = (
    "ANTHROPIC_API_KEY", "GITHUB_TOKEN", "EXA_API_KEY", "TEMPORAL_API_KEY")
"""Environment variables whose values are secrets on every worker (SECRET_ENV adds more)."""

BASE_ENV: tuple[str, ...] = (
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")
"""Worker variables every subprocess gets (when set): what tools need to run at all."""

MIN_SECRET_LENGTH = 6
"""The shortest secret value the worker accepts. A shorter one could not be scrubbed
(replacing every "abc" in every output would mangle it) and is no real credential, so
the worker refuses to start with one (:func:`short_secrets`) rather than leak it; the
Scrubber ignores shorter values given to it directly."""


def subprocess_env(own: Mapping[str, str], *, tool_env: Mapping[str, str] | None = None,
                   grants: Iterable[str] = (), environ: Mapping[str, str] | None = None
                   ) -> dict[str, str]:
    """The environment of a subprocess an activity starts, built from an allowlist.

    Args:
        own: the caller's own variables (``WORKSTREAM_*``, ``SDLC_*``, a step's
            ``inputs.env``); they win over everything else.
        tool_env: the tool's configured ``env`` (router config of the worker).
        grants: names of worker variables the tool's configuration grants (e.g.
            ``ANTHROPIC_API_KEY`` for the ``claude`` runner); unset ones are skipped.
        environ: the worker's environment (default ``os.environ``).

    Returns:
        ``BASE_ENV`` variables of ``environ`` that are set, then the granted
        ones, then ``tool_env``, then ``own`` (later entries win). No other
        variable of the worker is passed on.
    """
    environ = os.environ if environ is None else environ
    env = {k: environ[k] for k in BASE_ENV if k in environ}
    env.update({k: environ[k] for k in grants if k in environ})
    env.update({k: str(v) for k, v in (tool_env or {}).items()})
    env.update({k: str(v) for k, v in own.items()})
    return env


def short_secrets(named: Iterable[tuple[str, str]]) -> list[str]:
    """The problems of secrets too short to scrub: one line per ``(name, value)`` whose
    value is set but shorter than ``MIN_SECRET_LENGTH`` characters, naming the variable
    and its length (never the value); empty when there is none."""
    short = dict.fromkeys((name, len(value)) for name, value in named
                          if value and len(value) < MIN_SECRET_LENGTH)
    return [f"{name} holds only {size} character(s): a secret needs at least "
            f"{MIN_SECRET_LENGTH}, or the worker could not scrub it from what it records "
            f"without mangling ordinary text; set the real value or unset {name}"
            for name, size in short]


def secret_names(extra: Iterable[str] = ()) -> list[str]:
    """``KNOWN_SECRET_ENV`` plus ``extra`` (the SECRET_ENV setting), without duplicates."""
    return list(dict.fromkeys([*KNOWN_SECRET_ENV, *(n.strip() for n in extra if n.strip())]))


class Scrubber:
    """Replaces known secret values with ``***``.

    Args:
        values: the secret values; empty ones and ones shorter than
            ``MIN_SECRET_LENGTH`` characters are ignored. Longer values are
            replaced first, so a secret containing another is removed whole.
    """

    def __init__(self, values: Iterable[str]) -> None:
        unique = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH}
        self.values: list[str] = sorted(unique, key=len, reverse=True)

    @classmethod
    def from_environment(cls, names: Iterable[str], environ: Mapping[str, str] | None = None,
                         extra_values: Iterable[str] = ()) -> Scrubber:
        """A scrubber of the values of ``names`` in ``environ`` (default ``os.environ``)
        and of ``extra_values`` (secrets read from elsewhere, e.g. a ``.env`` file)."""
        environ = os.environ if environ is None else environ
        return cls([*(environ.get(n, "") for n in names), *extra_values])

    def __bool__(self) -> bool:
        return bool(self.values)

    def found(self, text: str) -> bool:
        """Whether ``text`` holds any secret value."""
        return any(v in text for v in self.values)

    def text(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for v in self.values:
            if v in text:
                text = text.replace(v, REDACTED)
        return text

    def data(self, data: bytes) -> bytes:
        """``data`` (bytes, e.g. an artifact) with every secret value (UTF-8) replaced."""
        for v in self.values:
            raw = v.encode()
            if raw in data:
                data = data.replace(raw, REDACTED.encode())
        return data

    def value(self, obj: Any) -> Any:
        """``obj`` with secret values replaced in every string inside it: str, bytes,
        dict keys and values, list/tuple items and pydantic models (re-validated
        from their scrubbed JSON form; when a constraint refuses the scrubbed
        form, its JSON dict is returned, which serializes the same). Other
        objects are returned as they are."""
        if not self.values or obj is None or isinstance(obj, bool | int | float):
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, bytes):
            return self.data(obj)
        if isinstance(obj, BaseModel):
            if not self.found(obj.model_dump_json()):
                return obj
            clean = self.value(obj.model_dump(mode="json"))
            try:
                return type(obj).model_validate(clean)
            except ValidationError:
                return clean  # the same JSON on the wire; the workflow validates it
        if isinstance(obj, dict):
            return {self.value(k): self.value(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(self.value(v) for v in obj)
        return obj

    def error(self, err: BaseException) -> BaseException | None:
        """A copy of ``err`` without secret values, or None when it holds none.

        The message, the details of an ``ApplicationError`` and every exception of
        its ``__cause__``/``__context__`` chain are checked. The copy is an
        ``ApplicationError`` keeping the type name (the class name for other
        exceptions), ``non_retryable``, ``next_retry_delay`` and ``category``, so retry
        behaviour is unchanged; a chain that held a secret is dropped.
        """
        chain: list[BaseException] = []
        cur: BaseException | None = err
        while cur is not None and cur not in chain:
            chain.append(cur)
            cur = cur.__cause__ or cur.__context__

        def leaks(e: BaseException) -> bool:
            details = getattr(e, "details", ()) if isinstance(e, ApplicationError) else ()
            return self.found(str(e)) or self.found(repr(details))

        if not any(leaks(e) for e in chain):
            return None
        if isinstance(err, ApplicationError):
            clean = ApplicationError(
                self.text(err.message), *self.value(list(err.details)),
                type=err.type, non_retryable=err.non_retryable,
                next_retry_delay=err.next_retry_delay, category=err.category)
        else:
            clean = ApplicationError(self.text(str(err)), type=type(err).__name__)
        if not any(leaks(e) for e in chain[1:]):
            clean.__cause__ = err.__cause__
        return clean


class ScrubbingInterceptor(Interceptor):
    """Worker interceptor: every activity's return value and raised error pass
    through :class:`Scrubber` before the SDK records them in history.

    Args:
        scrubber: the worker's scrubber (values of the secrets it knows).
    """

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap ``next`` in the scrubbing inbound interceptor."""
        return _ScrubbingActivityInbound(next, self.scrubber)


class _ScrubbingActivityInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, scrubber: Scrubber) -> None:
        super().__init__(next)
        self.scrubber = scrubber

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            result = await super().execute_activity(input)
        except Exception as err:  # noqa: BLE001 - re-raised, scrubbed when it holds a secret
            clean = self.scrubber.error(err) if self.scrubber else None
            if clean is None:
                raise
            self._raise(clean)
        return self.scrubber.value(result)

    @staticmethod
    def _raise(clean: BaseException) -> NoReturn:
        raise clean from clean.__cause__
