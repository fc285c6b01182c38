"""Vendor a trimmed copy of GitHub's OpenAPI description for the contract tests.

``python tests/contract/trim_openapi.py [--version V] [--source FILE] [--check]`` downloads
``@octokit/openapi@V`` with ``npm pack`` (or reads ``FILE``, the package's
``generated/api.github.com.json``), keeps only the operations in :data:`OPERATIONS`
(the REST calls ``activities/github.py`` makes) and every component they reference,
transitively, and writes ``tests/contract/github-openapi.json``. The output records
the package, its version and the SHA-256 of the full description under
``info.x-trimmed-from``, so a reviewer can regenerate and diff it.

To follow GitHub's API: bump :data:`PACKAGE_VERSION`, re-run, run the contract tests.
``--check`` writes nothing and exits 1 when the vendored copy differs from what the
package gives (``.ci/run`` runs it where npm is reachable).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = "@octokit/openapi"
PACKAGE_VERSION = "23.0.2"
MEMBER = "package/generated/api.github.com.json"
OUTPUT = Path(__file__).with_name("github-openapi.json")

# (path template, method): every REST operation the GitHub tracker may send
OPERATIONS: list[tuple[str, str]] = [
    ("/repos/{owner}/{repo}", "get"),
    ("/repos/{owner}/{repo}/issues", "get"),
    ("/repos/{owner}/{repo}/issues", "post"),
    ("/repos/{owner}/{repo}/issues/{issue_number}", "get"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/comments", "get"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/comments", "post"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/labels", "get"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/labels", "post"),
    ("/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}", "delete"),
    ("/repos/{owner}/{repo}/labels", "post"),
    ("/repos/{owner}/{repo}/labels/{name}", "get"),
    ("/repos/{owner}/{repo}/collaborators/{username}/permission", "get"),
    ("/repos/{owner}/{repo}/pulls", "get"),
    ("/repos/{owner}/{repo}/pulls", "post"),
]


def _refs(node: Any) -> set[str]:
    """Every ``$ref`` string inside ``node``."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("$ref"), str):
                found.add(item["$ref"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def trim(full: dict[str, Any], source_sha256: str, version: str) -> dict[str, Any]:
    """The description ``full`` cut down to :data:`OPERATIONS` and the components they
    reference (``#/components/<kind>/<name>`` refs, followed to a fixed point).

    Raises:
        KeyError: an operation of :data:`OPERATIONS` is not in ``full``.
    """
    paths: dict[str, dict[str, Any]] = {}
    for template, method in OPERATIONS:
        item = full["paths"][template]
        kept = paths.setdefault(template, {k: v for k, v in item.items()
                                           if k in ("parameters", "summary", "description")})
        kept[method] = item[method]
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        top, kind, name = ref.removeprefix("#/").split("/", 2)
        if top != "components":
            raise KeyError(f"unexpected reference {ref}")
        target = full["components"][kind][name]
        components.setdefault(kind, {})[name] = target
        pending |= _refs(target) - seen
    info = dict(full["info"])
    info["x-trimmed-from"] = {"package": PACKAGE, "version": version, "file": MEMBER,
                              "sha256": source_sha256,
                              "script": "tests/contract/trim_openapi.py"}
    return {"openapi": full["openapi"], "info": info, "servers": full["servers"],
            "paths": paths,
            "components": {kind: dict(sorted(items.items()))
                           for kind, items in sorted(components.items())}}


def download(version: str, into: Path) -> Path:
    """``npm pack PACKAGE@version`` into ``into``; returns the extracted description."""
    subprocess.run(["npm", "pack", "--silent", f"{PACKAGE}@{version}"], cwd=into,
                   check=True, capture_output=True)
    tarball = next(into.glob("*.tgz"))
    with tarfile.open(tarball) as tar:
        tar.extract(MEMBER, into, filter="data")
    return into / MEMBER


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=PACKAGE_VERSION)
    parser.add_argument("--source", type=Path,
                        help="an extracted generated/api.github.com.json (skips npm)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the vendored copy instead of writing it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or download(args.version, Path(tmp))
        raw = source.read_bytes()
        full = json.loads(raw)
        trimmed = trim(full, hashlib.sha256(raw).hexdigest(), args.version)
    text = json.dumps(trimmed, indent=1, sort_keys=False) + "\n"
    if args.check:
        same = OUTPUT.read_text() == text
        print(f"{OUTPUT}: {'matches' if same else 'DIFFERS from'} {PACKAGE}@{args.version}")
        raise SystemExit(0 if same else 1)
    OUTPUT.write_text(text)
    print(f"{OUTPUT}: {len(trimmed['paths'])} paths, "
          f"{sum(len(v) for v in trimmed['components'].values())} components, "
          f"{OUTPUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
