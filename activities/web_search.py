"""Web search (L2 sources of the analysis pipeline) through Exa's SDK, ``exa-py``.

The SDK is synchronous (requests), so the activity is a sync ``def`` run on the
worker's thread pool. Exa's client has no retries of its own; Temporal retries:
401/403 (bad key) and 400/404/422 are non-retryable, 429 and 5xx retryable.
"""

from __future__ import annotations

import re
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.analysis import WebResult, WebSearchInput

_STATUS = re.compile(r"status code (\d{3})")
EXCERPT_CHARS = 1500


def search_error(err: Exception) -> ApplicationError:
    """The Temporal failure for an exa-py error (it raises ValueError naming the status)."""
    match = _STATUS.search(str(err))
    status = int(match.group(1)) if match else None
    if status in (401, 403):
        return ApplicationError(f"Exa refused EXA_API_KEY ({status}); set a valid key or "
                                "unset it to turn web search off", type="WebSearchAuth",
                                non_retryable=True)
    if status in (400, 404, 422):
        return ApplicationError(f"Exa refused the search ({status}): {err}",
                                type="WebSearchInvalid", non_retryable=True)
    return ApplicationError(f"web search failed (retried): {err}", type="WebSearchFailed")


class WebSearchActivities:
    """The ``web_search`` activity.

    Args:
        client: an ``exa_py.Exa`` client, or None when EXA_API_KEY is unset (the
            activity then fails non-retryably saying so).
    """

    def __init__(self, client: Any | None) -> None:
        self.client = client

    @activity.defn(name="web_search")
    def web_search(self, inp: WebSearchInput) -> list[WebResult]:
        """Search the web for ``inp.query``; up to ``inp.num_results`` hits with a
        text excerpt each.

        Raises:
            ApplicationError: web search is not configured or Exa failed (see module).
        """
        if self.client is None:
            raise ApplicationError("web search is off: set EXA_API_KEY on the worker",
                                   type="WebSearchUnavailable", non_retryable=True)
        try:
            response = self.client.search(
                inp.query, num_results=inp.num_results,
                contents={"text": {"max_characters": EXCERPT_CHARS}})
        except ValueError as err:
            raise search_error(err) from err
        except OSError as err:  # requests' connection errors
            raise ApplicationError(f"cannot reach Exa (retried): {err}",
                                   type="WebSearchFailed") from err
        return [WebResult(url=r.url, title=r.title or r.url, text=(r.text or "")[:EXCERPT_CHARS])
                for r in response.results]


def build_exa_client(api_key: str | None, base_url: str | None) -> Any | None:
    """An ``exa_py.Exa`` client, or None without a key."""
    if not api_key:
        return None
    from exa_py import Exa

    return Exa(api_key=api_key, **({"base_url": base_url} if base_url else {}))
