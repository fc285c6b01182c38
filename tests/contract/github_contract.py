"""GitHub's published OpenAPI description as a contract for the fake GitHub server.

:class:`GitHubContract` validates a request the fake received, and the response it
sends, with ``openapi-core`` against ``github-openapi.json``: the operations the
tracker uses, trimmed from ``@octokit/openapi`` by ``trim_openapi.py`` (package and
version in the file's ``info.x-trimmed-from``). :func:`skeleton` builds the
smallest instance of a component schema (every required property, nothing else),
which the fake overlays with the fields it really keeps, so its answers carry
every field GitHub promises.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

SPEC_PATH = Path(__file__).with_name("github-openapi.json")
HOST = "https://api.github.com"  # the description's server; the fake's prefix is cut off


@cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def spec_version() -> str:
    """``@octokit/openapi@VERSION`` of the vendored description."""
    source = _spec()["info"]["x-trimmed-from"]
    return f"{source['package']}@{source['version']}"


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = _spec()["components"]["schemas"][name]
    return schema


_FORMATS = {"date-time": "2020-01-01T00:00:00Z", "uri": "https://github.example/",
            "email": "nobody@github.example", "uri-template": "https://github.example/{x}"}


def _instance(schema: dict[str, Any], depth: int = 0) -> Any:
    schema = _resolve(schema)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = _instance(part, depth)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return _instance(schema[key][0], depth)
    if schema.get("nullable") and depth > 0:
        return None
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _instance(props.get(name, {}), depth + 1)
                for name in schema.get("required", [])}
    if kind == "array":
        return []
    if kind == "string":
        return _FORMATS.get(schema.get("format", ""), "")
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


@cache
def _skeleton(name: str) -> str:
    return json.dumps(_instance(_spec()["components"]["schemas"][name]))


def skeleton(name: str, /, **fields: Any) -> dict[str, Any]:
    """The smallest valid instance of component schema ``name`` (required properties
    only; nullable ones null, strings empty or a sample of their format), updated with
    ``fields``.

    Raises:
        KeyError: no schema ``name`` in the description.
    """
    value = json.loads(_skeleton(name))
    value.update(copy.deepcopy(fields))
    return value


def _describe(error: Exception) -> str:
    parts = [type(error).__name__ + (f" {str(error)[:200]}" if str(error) else "")]
    cause = error.__cause__
    while cause is not None:
        details = getattr(cause, "schema_errors", None)
        if details:
            parts += [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300]
                      for e in details[:5]]
            break
        parts.append(str(cause)[:300])
        cause = cause.__cause__
    return "; ".join(parts)


class GitHubContract:
    """Validates requests to and responses of the fake GitHub against the description.

    Paths are the raw (still percent-encoded) request paths without the ``/api/v3``
    prefix, as GitHub routes them: ``labels/sdlc%2Fgate-1`` is one segment,
    ``labels/sdlc/gate-1`` is no route at all.
    """

    def __init__(self) -> None:
        self._api = OpenAPI.from_dict(_spec())

    @staticmethod
    def _request(method: str, path: str, query: dict[str, list[str]],
                 body: bytes) -> MockRequest:
        return MockRequest(HOST, method, path, args={k: v[-1] for k, v in query.items()},
                           data=body or None, content_type="application/json")

    def request_errors(self, method: str, path: str, query: dict[str, list[str]],
                       body: bytes) -> list[str]:
        """Why the request is outside the description (empty: it is inside)."""
        request = self._request(method, path, query, body)
        return [f"{method} {path}: {_describe(e)}"
                for e in self._api.iter_request_errors(request)]

    def response_errors(self, method: str, path: str, query: dict[str, list[str]],
                        body: bytes, status: int, payload: bytes) -> list[str]:
        """Why the response is outside the description (empty: it is inside)."""
        request = self._request(method, path, query, body)
        response = MockResponse(payload, status_code=status,
                                content_type="application/json; charset=utf-8")
        return [f"{method} {path} -> {status}: {_describe(e)}"
                for e in self._api.iter_response_errors(request, response)]
