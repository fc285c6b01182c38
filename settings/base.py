"""What every settings class shares: the error, the duration type, the loader."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from pydantic import BeforeValidator, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(ValueError):
    """The environment holds an invalid or missing setting; the message names it."""


def _seconds_or_duration(value: Any) -> Any:
    # "0.5" from the environment means seconds, as the README says of durations.
    try:
        return timedelta(seconds=float(value)) if isinstance(value, str) else value
    except ValueError:
        return value  # ISO 8601 (PT0.5S) and [HH:MM:]SS are pydantic's own


Seconds = Annotated[timedelta, BeforeValidator(_seconds_or_duration)]
"""A duration setting: plain seconds ("30", "0.5") or any form pydantic reads."""


def _name_list(value: Any) -> Any:
    # "A,B" or "A B" from the environment; a JSON list ('["A"]') works too.
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [v for v in re.split(r"[,\s]+", text) if v]
    return value


NameList = Annotated[list[str], NoDecode, BeforeValidator(_name_list)]
"""A list setting: comma- or space-separated names ("A,B"), or a JSON list."""


def _empty_is_unset(value: Any) -> Any:
    # docker-compose passes `${ANTHROPIC_API_KEY:-}` as an empty string: that is unset.
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return None if isinstance(value, str) and not value.strip() else value


OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_empty_is_unset)]
"""A secret setting (an API key, a token): an empty or blank value means unset, so
``ANTHROPIC_API_KEY=`` (as docker-compose passes a variable missing from ``.env``)
keeps the offline provider instead of calling the API with an empty key."""


class EnvSettings(BaseSettings):
    """Base of every settings class: each field is the environment variable of the
    same name in upper case (``temporal_task_queue`` <- ``TEMPORAL_TASK_QUEUE``),
    also read from a ``.env`` file in the working directory; values are frozen."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)


_S = TypeVar("_S", bound=BaseSettings)


def load(cls: type[_S], overrides: dict[str, Any]) -> _S:
    """``cls(**overrides)`` read from the environment and validated.

    Raises:
        SettingsError: a variable is invalid; the message names each one and why.
    """
    try:
        return cls(**overrides)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}"
            for e in err.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None
