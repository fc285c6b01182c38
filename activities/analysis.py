"""Activities of the analysis pipeline: loading the user's source documents (L0) and
writing the report and its citation map to the artifact store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts import ArtifactStore
from models.analysis import LoadSourcesInput, ReportArtifacts, SourceDoc, WriteReportInput

SOURCE_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}


def source_files(path: Path) -> list[Path]:
    """The markdown/text files of ``path`` (itself, or those under a directory, sorted).

    Raises:
        ApplicationError: (non-retryable) the path does not exist or holds no such file.
    """
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and p.suffix.lower() in SOURCE_SUFFIXES)
        if files:
            return files
        raise ApplicationError(f"{path} holds no markdown or text files "
                               f"({', '.join(sorted(SOURCE_SUFFIXES))})",
                               type="InvalidSource", non_retryable=True)
    raise ApplicationError(f"source {path} does not exist; pass an existing file or directory",
                           type="InvalidSource", non_retryable=True)


def title_of(path: Path, text: str) -> str:
    """The first markdown heading of ``text``, else the file name."""
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip() or path.name
    return path.name


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
            ApplicationError: (non-retryable) a path is missing, empty or not UTF-8 text.
        """
        docs: list[SourceDoc] = []
        for raw in inp.paths:
            for path in source_files(Path(raw)):
                data = path.read_bytes()
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise ApplicationError(f"{path} is not UTF-8 text", type="InvalidSource",
                                           non_retryable=True) from None
                if not text.strip():
                    raise ApplicationError(f"{path} is empty", type="InvalidSource",
                                           non_retryable=True)
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
