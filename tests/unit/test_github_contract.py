"""The vendored GitHub OpenAPI description and the script that trims it."""

from __future__ import annotations

import json

from tests.contract.github_contract import SPEC_PATH, GitHubContract, skeleton, spec_version
from tests.contract.trim_openapi import OPERATIONS, PACKAGE_VERSION, trim


def test_trim_keeps_the_operations_and_what_they_reference_transitively():
    answer = {"responses": {"200": {"content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/issue"}}}}}}
    paths: dict = {"/unused": {"get": {}}}
    for template, method in OPERATIONS:
        paths.setdefault(template, {})[method] = answer
    full = {
        "openapi": "3.0.3", "info": {"title": "GitHub", "version": "1"},
        "servers": [{"url": "https://api.github.com"}], "paths": paths,
        "components": {"schemas": {
            "issue": {"type": "object", "properties": {
                "user": {"$ref": "#/components/schemas/simple-user"}}},
            "simple-user": {"type": "object"}, "unused": {"type": "string"}}},
    }
    trimmed = trim(full, "abc", "9.9.9")
    assert "/unused" not in trimmed["paths"] and len(trimmed["paths"]) == 10
    assert set(trimmed["components"]["schemas"]) == {"issue", "simple-user"}
    assert trimmed["info"]["x-trimmed-from"]["version"] == "9.9.9"


def test_the_vendored_copy_records_its_source_and_covers_every_operation():
    spec = json.loads(SPEC_PATH.read_text())
    source = spec["info"]["x-trimmed-from"]
    assert spec_version() == f"@octokit/openapi@{PACKAGE_VERSION}"
    assert len(source["sha256"]) == 64
    for template, method in OPERATIONS:
        assert method in spec["paths"][template]


def test_skeletons_are_valid_answers_and_requests_are_checked():
    contract = GitHubContract()
    issue = skeleton("issue", number=1, title="t")
    assert contract.response_errors("GET", "/repos/o/r/issues", {}, b"", 200,
                                    json.dumps([issue]).encode()) == []
    assert contract.response_errors("GET", "/repos/o/r/issues", {}, b"", 200,
                                    json.dumps([{"number": 1}]).encode()) != []
    assert contract.request_errors("POST", "/repos/o/r/issues/1/labels", {},
                                   b'{"labels": ["a"]}') == []
    assert contract.request_errors("GET", "/repos/o/r/pulls", {"state": ["merged"]}, b"")
