"""Activities of the analysis pipeline: loading the user's source documents (L0) and
writing the report and its citation map to the artifact store."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts import ArtifactStore
from models.analysis import LoadSourcesInput, ReportArtifacts, SourceDoc, WriteReportInput

SOURCE_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}


def _refuse(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidSource", non_retryable=True)


def _inside(link: Path, root: Path) -> None:
    """Refuse ``link`` when it is a symlink whose target lies outside ``root``."""
    if link.is_symlink():
        target = link.resolve()
        if not target.is_relative_to(root):
            raise _refuse(f"source {link} is a symlink to {target}, outside {root}; "
                          "copy the file into the directory instead")


def source_files(path: Path) -> list[Path]:
    """The markdown/text files of ``path`` (itself, or those under a directory, sorted).

    Symlinks are followed only while they stay inside the given directory (a file
    given by itself: inside its own directory); symlinked directories are not
    descended into.

    Raises:
        ApplicationError: (non-retryable, type ``InvalidSource``) the path does not
            exist, holds no such file, or a symlink leads outside the directory;
            the message names the file.
    """
    if path.is_symlink() or path.is_file():
        _inside(path, path.parent.resolve())
    if path.is_file():
        return [path]
    if path.is_dir():
        root = path.resolve()
        files = []
        for folder, dirs, names in os.walk(path):
            for name in [*dirs, *names]:
                _inside(Path(folder) / name, root)
            files += [Path(folder) / n for n in names
                      if Path(n).suffix.lower() in SOURCE_SUFFIXES
                      and (Path(folder) / n).is_file()]
        if files:
            return sorted(files)
        raise _refuse(f"{path} holds no markdown or text files "
                      f"({', '.join(sorted(SOURCE_SUFFIXES))})")
    raise _refuse(f"source {path} does not exist; pass an existing file or directory")


def read_source(path: Path, max_bytes: int) -> tuple[bytes, str]:
    """The bytes and text of one source file.

    Raises:
        ApplicationError: (non-retryable, type ``InvalidSource``) the file is over
            ``max_bytes``, not text (a NUL byte, or not UTF-8) or empty; the
            message names the file.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise _refuse(f"source {path} is {size:,} bytes, over the limit of {max_bytes:,}")
    data = path.read_bytes()[:max_bytes + 1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if b"\0" in data or (data and not text):
        raise _refuse(f"source {path} is not a text file (binary or not UTF-8)")
    if not text.strip():
        raise _refuse(f"source {path} is empty")
    return data, text


_RST_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}\s*$")  # a line of one punctuation
_MD_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def _rst_title(lines: list[str]) -> str | None:
    """The first section title of reStructuredText: a line underlined (and maybe
    overlined) with a repeated punctuation character (``=``, ``-``, ``~``, ``*``...)
    at least as long as the title (docutils' rule)."""
    for i in range(len(lines) - 1):
        title, under = lines[i].strip(), lines[i + 1].rstrip()
        if (title and not _RST_ADORNMENT.match(lines[i]) and _RST_ADORNMENT.match(under)
                and len(under) >= len(title)):
            return title
    return None


def _md_title(lines: list[str]) -> str | None:
    """The first level-1 markdown heading (``# Title``, or a setext ``Title`` over
    ``===``), outside fenced code and front matter; else the first heading of any
    level."""
    start = 0
    if lines and lines[0].strip() == "---":  # YAML front matter
        end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")),
                   None)
        start = end + 1 if end is not None else 0
    fenced, first_any = False, None
    for i in range(start, len(lines)):
        line = lines[i]
        if _MD_FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        atx = re.match(r"^\s{0,3}(#{1,6})\s+(.*?)(\s+#+)?\s*$", line)
        if atx and atx.group(2).strip():
            if len(atx.group(1)) == 1:
                return atx.group(2).strip()
            first_any = first_any or atx.group(2).strip()
        elif (i + 1 < len(lines) and line.strip() and re.match(r"^\s{0,3}=+\s*$", lines[i + 1])):
            return line.strip()
    return first_any


def title_of(path: Path, text: str) -> str:
    """The document's title: for ``.rst`` the first section title (underlined with
    ``=``, ``-``, ``~``...); otherwise the first ``# `` heading of markdown (then any
    heading level); else the file name."""
    lines = text.splitlines()
    title = _rst_title(lines) if path.suffix.lower() == ".rst" else _md_title(lines)
    return (title or path.name)[:200]


class AnalysisActivities:
    """Source loading and report writing.

    Args:
        store: the artifact store reports are written to.
    """

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    @activity.defn(name="load_sources")
    def load_sources(self, inp: LoadSourcesInput) -> list[SourceDoc]:
        """Read each file (or each markdown/text file under each directory) as an L0
        source ``L0-<n>``, numbered from ``inp.first_number``; text truncated to
        ``inp.max_chars``.

        Raises:
            ApplicationError: (non-retryable, ``InvalidSource``) a path is missing,
                a symlink leads outside its directory, or a file is empty, not
                text or over ``inp.max_bytes``; one line naming the file.
        """
        docs: list[SourceDoc] = []
        for raw in inp.paths:
            for path in source_files(Path(raw)):
                data, text = read_source(path, inp.max_bytes)
                docs.append(SourceDoc(
                    id=f"L0-{inp.first_number + len(docs)}", level="L0",
                    title=title_of(path, text), location=str(path.resolve()),
                    text=text[:inp.max_chars], sha256=hashlib.sha256(data).hexdigest()))
        return docs

    @activity.defn(name="write_analysis_report")
    def write_report(self, inp: WriteReportInput) -> ReportArtifacts:
        """Write ``analysis/<workflow id>/report.md`` and ``citation_map.json``
        (idempotent: the same content gives the same references)."""
        folder = f"analysis/{inp.workflow_id}"
        report = self.store.write(f"{folder}/report.md", inp.report_markdown)
        cmap = self.store.write(f"{folder}/citation_map.json",
                                json.dumps(inp.citation_map.model_dump(mode="json"), indent=2))
        return ReportArtifacts(report=report, citation_map=cmap)
