"""Activities of the analysis pipeline: loading the user's source documents (L0),
checking that cited sources support what cites them, keeping reviewer feedback, and
writing the report and its citation map to the artifact store.

Source texts and feedback stay out of workflow history: ``load_sources`` writes each
text to the artifact store and returns a reference (``SourceDoc.text_ref``); the
support check and the LLM activity load the texts they need from the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts import ArtifactStore
from activities.grounding import (
    SENTENCE_END,
    SUPPORT_THRESHOLD,
    best_passage,
    sentences,
    strip_citations,
    support_score,
)
from models.analysis import (
    FeedbackInput,
    FlaggedCitation,
    LoadSourcesInput,
    MarkUnsupportedInput,
    OutlinePoint,
    ReportArtifacts,
    SourceDoc,
    SupportCheck,
    SupportCheckInput,
    SupportGroup,
    WriteReportInput,
)
from models.common import ArtifactRef

SOURCE_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}
CITATION_ID = re.compile(r"\bL[0-2]-\d+\b")
BRACKETED = re.compile(r"\[([^\[\]]*\bL[0-2]-\d+\b[^\[\]]*)\]")
BRACKETED_WS = re.compile(r"\s*\[([^\[\]]*\bL[0-2]-\d+\b[^\[\]]*)\]")
MAX_JUDGED = 20  # claims per judge call


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


# -- citation support (pure; the workflow of runs started before texts went by
# reference calls them in workflow code, newer runs through check_citation_support)
def citation_support(claim: str, cited: list[str], registry: list[SourceDoc]
                     ) -> tuple[list[str], list[str]]:
    """Split the ``cited`` source ids of one claim into (supported, unsupported).

    A citation of an evidence source (L0, L2) is supported when
    :func:`activities.grounding.support_score` of the claim (citations stripped)
    against the source's text is at least SUPPORT_THRESHOLD. A framework (a
    catalogue reference work, L1) is never evidence: it counts as supported only
    next to a supported evidence citation, so it is never the only support of a
    claim. An id not in ``registry`` is unsupported.
    """
    docs = {s.id: s for s in registry}
    text = strip_citations(claim)
    supported, unsupported, frameworks = [], [], []
    for sid in cited:
        doc = docs.get(sid)
        if doc is not None and doc.role == "framework":
            frameworks.append(sid)
        elif doc is not None and doc.text and support_score(text, doc.text) >= \
                SUPPORT_THRESHOLD:
            supported.append(sid)
        else:
            unsupported.append(sid)
    if supported:
        supported += frameworks
    else:
        unsupported += frameworks
    order = {sid: i for i, sid in enumerate(cited)}
    return (sorted(supported, key=order.__getitem__), sorted(unsupported, key=order.__getitem__))


def unsupported_map_citations(citations: dict[str, list[str]], points: list[OutlinePoint],
                              registry: list[SourceDoc]) -> dict[str, list[str]]:
    """Outline point id -> the ids its citation-map entry cites without supporting
    the point's claim (see :func:`citation_support`); fully supported points are left out."""
    claims = {p.id: p.claim for p in points}
    out = {}
    for pid, ids in citations.items():
        if pid in claims and ids:
            _, bad = citation_support(claims[pid], ids, registry)
            if bad:
                out[pid] = bad
    return out


def judge_claims(found: list[tuple[str, list[str]]], registry: list[SourceDoc]
                 ) -> tuple[str, str]:
    """The judge's view of lexically unsupported citations: (numbered text for the
    prompt, the same as JSON for the offline judge). Each claim lists, per cited
    evidence source, the passage that best matches it (:func:`best_passage`); a
    framework is shown as such, with no text."""
    docs = {s.id: s for s in registry}
    lines, items = [], []
    for n, (claim, ids) in enumerate(found[:MAX_JUDGED], 1):
        passages = {sid: best_passage(strip_citations(claim), docs[sid].text)
                    for sid in ids if sid in docs and docs[sid].role == "evidence"}
        lines.append(f"{n}. {strip_citations(claim)}")
        for sid in ids:
            doc = docs.get(sid)
            lines.append(f"   [{sid}] " + (f"\"{passages[sid]}\"" if sid in passages else
                                            f"framework, not evidence: {doc.title}" if doc
                                            else "not a loaded source"))
        items.append({"claim": strip_citations(claim), "passages": passages})
    return "\n".join(lines), json.dumps(items)


def cited_sentences(body: str) -> list[tuple[str, list[str]]]:
    """Each sentence of a report body that carries inline citations, with the ids it
    cites (in order)."""
    out = []
    for sentence in sentences(body):
        ids = inline_citations(sentence)
        if ids:
            out.append((sentence, list(dict.fromkeys(ids))))
    return out


def unsupported_report_citations(body: str, registry: list[SourceDoc]
                                 ) -> list[tuple[str, list[str]]]:
    """(sentence, unsupported ids) of every cited sentence of ``body`` with at least
    one citation that does not support it (see :func:`citation_support`)."""
    out: dict[str, list[str]] = {}
    for sentence, ids in cited_sentences(body):
        _, bad = citation_support(sentence, ids, registry)
        if bad:
            out[sentence] = list(dict.fromkeys(out.get(sentence, []) + bad))
    return list(out.items())


def mark_unsupported(body: str, found: list[tuple[str, list[str]]]) -> str:
    """``body`` with each unsupported citation taken out of its sentence's brackets
    and noted after that sentence as ``(unsupported citation: L0-3)``, so a reader
    sees it and no check counts it as a citation; other sentences keep theirs."""
    lines = body.split("\n")
    for sentence, ids in found:
        probe = " ".join(strip_citations(sentence).split()[:8])
        for n, line in enumerate(lines):
            parts = SENTENCE_END.split(line)
            hit = next((i for i, part in enumerate(parts)
                        if probe and probe in " ".join(strip_citations(part).split())), None)
            if hit is None:
                continue

            def keep(match: re.Match[str], drop: list[str] = ids) -> str:
                kept = [i for i in CITATION_ID.findall(match.group(1)) if i not in drop]
                return f" [{'; '.join(kept)}]" if kept else ""

            parts[hit] = BRACKETED_WS.sub(keep, parts[hit]).rstrip() + \
                f" (unsupported citation: {', '.join(ids)})"
            lines[n] = " ".join(parts)
            break
    return "\n".join(lines)


def sections(body: str) -> list[str]:
    """The ``## `` sections of a report body (text before the first one included)."""
    return [part for part in re.split(r"(?m)^(?=## )", body) if part.strip()]


def inline_citations(body: str) -> list[str]:
    """Source ids cited inline as ``[L0-1]`` or ``[L0-1; L2-3]``, in order of appearance."""
    return [sid for group in BRACKETED.findall(body) for sid in CITATION_ID.findall(group)]


class AnalysisActivities:
    """Source loading, the citation-support check, reviewer feedback and report writing.

    Args:
        store: the artifact store source texts, feedback and reports are written to.
    """

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def activities(self) -> list[Any]:
        """Every activity of the analysis pipeline (to register on a worker)."""
        return [self.load_sources, self.check_citation_support,
                self.mark_unsupported_citations, self.record_feedback, self.write_report]

    def _with_texts(self, sources: list[SourceDoc]) -> list[SourceDoc]:
        """``sources`` with the texts of those passed by reference loaded inline.

        Raises:
            ApplicationError: (non-retryable, ``DocumentUnavailable``) a text is
                outside the store, missing or changed since it was written.
        """
        out = []
        for doc in sources:
            if doc.text_ref is not None:
                text = self.store.read_text(doc.text_ref, f"the text of source {doc.id}")
                doc = doc.model_copy(update={"text": text})
            out.append(doc)
        return out

    def _group(self, inp: SupportCheckInput, what: str, found: list[FlaggedCitation],
               registry: list[SourceDoc]) -> SupportGroup:
        group = SupportGroup(what=what, found=found)
        if inp.judge and found:
            text, as_json = judge_claims([(f.text, f.ids) for f in found], registry)
            key = hashlib.sha256(as_json.encode()).hexdigest()[:16]
            folder = f"analysis/{inp.workflow_id}/judge"
            group.judge_claims = self.store.write(f"{folder}/{key}.txt", text)
            group.judge_claims_json = self.store.write(f"{folder}/{key}.json", as_json)
        return group

    @activity.defn(name="check_citation_support")
    def check_citation_support(self, inp: SupportCheckInput) -> SupportCheck:
        """Which citations are not supported by the text of the source they cite
        (:func:`citation_support`): of the citation map when ``inp.citations`` is
        set (one group), else of each section of ``inp.body`` (one group per
        section). Source texts are loaded from the artifact store here, so they
        never enter workflow history; with ``inp.judge`` each group's claims and
        best passages are written to the store for the judge's prompt.

        Raises:
            ApplicationError: (non-retryable, ``DocumentUnavailable``) a source's
                text cannot be read back from the store.
        """
        registry = self._with_texts(inp.sources)
        if inp.citations:
            claims = {p.id: p.claim for p in inp.points}
            bad = unsupported_map_citations(inp.citations, inp.points, registry)
            found = [FlaggedCitation(text=claims[pid], ids=ids, point=pid)
                     for pid, ids in bad.items()]
            return SupportCheck(groups=[self._group(inp, "the citation map", found, registry)])
        groups = []
        for section in sections(inp.body):
            found = [FlaggedCitation(text=sentence, ids=ids)
                     for sentence, ids in unsupported_report_citations(section, registry)]
            groups.append(self._group(inp, f"section '{section.splitlines()[0][:60]}'",
                                      found, registry))
        return SupportCheck(groups=groups)

    @activity.defn(name="mark_unsupported_citations")
    def mark_unsupported_citations(self, inp: MarkUnsupportedInput) -> str:
        """The report body with each citation of ``inp.found`` marked as unsupported
        (:func:`mark_unsupported`)."""
        return mark_unsupported(inp.body, [(f.text, f.ids) for f in inp.found])

    @activity.defn(name="record_analysis_feedback")
    def record_feedback(self, inp: FeedbackInput) -> ArtifactRef:
        """Write ``analysis/<workflow id>/feedback/<gate>-<round>.md``: the earlier
        rounds' feedback (read from ``inp.earlier``) and this round's comment as one
        more ``- `` line, so an LLM call can be given all of it by reference
        (idempotent: a retry writes the same file).

        Raises:
            ApplicationError: (non-retryable, ``DocumentUnavailable``) the earlier
                file cannot be read back from the store.
        """
        earlier = ""
        if inp.earlier is not None:
            earlier = self.store.read_text(inp.earlier, "earlier feedback")
        text = (earlier.rstrip("\n") + "\n" if earlier.strip() else "") + f"- {inp.comment}"
        return self.store.write(f"analysis/{inp.workflow_id}/feedback/{inp.gate}-"
                                f"{inp.round}.md", text)

    @activity.defn(name="load_sources")
    def load_sources(self, inp: LoadSourcesInput) -> list[SourceDoc]:
        """Read each file (or each markdown/text file under each directory) as an L0
        source ``L0-<n>``, numbered from ``inp.first_number``; text truncated to
        ``inp.max_chars``, written to the artifact store and passed by reference
        when ``inp.workflow_id`` is set (see LoadSourcesInput).

        Raises:
            ApplicationError: (non-retryable, ``InvalidSource``) a path is missing,
                a symlink leads outside its directory, or a file is empty, not
                text or over ``inp.max_bytes``; one line naming the file.
        """
        docs: list[SourceDoc] = []
        for raw in inp.paths:
            for path in source_files(Path(raw)):
                data, text = read_source(path, inp.max_bytes)
                doc = SourceDoc(
                    id=f"L0-{inp.first_number + len(docs)}", level="L0",
                    title=title_of(path, text), location=str(path.resolve()),
                    text=text[:inp.max_chars], sha256=hashlib.sha256(data).hexdigest())
                if inp.workflow_id:  # by reference: the text stays out of history
                    doc.text_ref = self.store.write(
                        f"analysis/{inp.workflow_id}/sources/{doc.id}.txt", doc.text)
                    doc.text = ""
                docs.append(doc)
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
