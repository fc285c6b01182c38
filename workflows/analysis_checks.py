"""The enforced checks and pure helpers of the analysis pipeline (seed 004).

Deterministic functions only: AnalysisWorkflow calls them inside the workflow, and
tests call them directly. Each ``validate_*`` returns the problems it found as
sentences a model (or a person) can act on; an empty list means valid.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from activities.grounding import (
    SENTENCE_END,
    SUPPORT_THRESHOLD,
    best_passage,
    sentences,
    strip_citations,
    support_score,
)
from models.analysis import (
    AnalystOutput,
    Catalogue,
    CitationMap,
    Outline,
    OutlinePoint,
    SourceDoc,
)

SOURCE_MARKER = re.compile(r"\s*\[Source:\s*analyst-[^\]]*\]")
CITATION_ID = re.compile(r"\bL[0-2]-\d+\b")
BRACKETED = re.compile(r"\[([^\[\]]*\bL[0-2]-\d+\b[^\[\]]*)\]")
BRACKETED_WS = re.compile(r"\s*\[([^\[\]]*\bL[0-2]-\d+\b[^\[\]]*)\]")
CLOSE_SCORES = 0.2  # top two synthesizer scores closer than this -> clarify (seed 004)
_JSON_TYPES = {"string": str, "array": list, "object": dict, "number": (int, float),
               "integer": int, "boolean": bool}


def detect_language(text: str, markers: dict[str, list[str]], default: str = "en") -> str:
    """The language whose marker words occur most often in ``text`` (ties and no
    hits -> ``default``)."""
    words = re.findall(r"[a-zàèéìòù]+", text.lower())
    counts = {lang: sum(words.count(m) for m in ms) for lang, ms in markers.items()}
    best = max(counts.values(), default=0)
    winners = [lang for lang, n in counts.items() if n == best]
    return winners[0] if best > 0 and len(winners) == 1 else default


def keyword_scores(text: str, catalogue: Catalogue) -> dict[str, float]:
    """The keyword fallback scorer: each synthesizer's keyword hits in ``text``,
    divided by the best synthesizer's hits (so the best scores 1.0; none -> all 0)."""
    words = re.findall(r"\w+", text.lower())
    hits = {sid: sum(words.count(k.lower()) for k in s.keywords)
            for sid, s in catalogue.synthesizers.items()}
    top = max(hits.values(), default=0)
    return {sid: round(n / top, 3) if top else 0.0 for sid, n in hits.items()}


def ranked(scores: dict[str, float]) -> list[str]:
    """Synthesizer ids, best score first (ties by id, so the order is stable)."""
    return sorted(scores, key=lambda s: (-scores[s], s))


def needs_clarification(scores: dict[str, float]) -> bool:
    """Whether the top two scores are within CLOSE_SCORES of each other."""
    order = ranked(scores)
    return len(order) > 1 and scores[order[0]] - scores[order[1]] < CLOSE_SCORES


def split_frontmatter(text: str) -> tuple[dict[str, Any], str]:
    """``(frontmatter, body)`` of a markdown document that starts with ``---`` YAML.

    Raises:
        ValueError: no frontmatter block, invalid YAML, or not a mapping.
    """
    stripped = text.strip()
    if stripped.startswith("```"):  # a model that fenced the whole document
        stripped = stripped.split("\n", 1)[-1].rsplit("```", 1)[0].strip()
    if not stripped.startswith("---"):
        raise ValueError("the output must start with a YAML frontmatter block between "
                         "'---' lines")
    parts = stripped.split("\n---", 1)
    if len(parts) != 2:
        raise ValueError("the YAML frontmatter block is not closed by a '---' line")
    try:
        meta = yaml.safe_load(parts[0][3:])
    except yaml.YAMLError as err:
        raise ValueError(f"the frontmatter is not valid YAML: {err}".replace("\n", " ")) \
            from None
    if not isinstance(meta, dict):
        raise ValueError("the frontmatter must be a YAML mapping of field: value")
    return meta, parts[1].lstrip("-").strip()


def validate_analyst_output(analyst: str, text: str, required: list[str], loaded: set[str]
                            ) -> tuple[AnalystOutput | None, list[str]]:
    """Check one analyst's output: frontmatter with every ``required`` field (an empty
    list counts as present), a non-empty body, and ``sources`` naming only loaded
    source ids (other works go in ``references``). Returns the parsed output (None
    when invalid) and the problems."""
    try:
        meta, body = split_frontmatter(text)
    except ValueError as err:
        return None, [str(err)]
    problems = [f"frontmatter field '{f}' is missing" for f in required
                if meta.get(f) in (None, "")]
    if not body:
        problems.append("the body after the frontmatter is empty")
    sources = [str(s) for s in _as_list(meta.get("sources"))]
    unknown = [s for s in sources if s not in loaded]
    if unknown:
        problems.append(f"'sources' names {', '.join(unknown)}, which are not loaded source "
                        f"ids ({', '.join(sorted(loaded)) or 'none'}); list other works "
                        "under 'references'")
    if problems:
        return None, problems
    references = [str(r).strip() for r in _as_list(meta.get("references")) if str(r).strip()]
    return AnalystOutput(analyst=analyst, frontmatter=meta, body=body, sources=sources,
                         references=references), []


def _as_list(value: Any) -> list[Any]:
    if value in (None, ""):
        return []
    return value if isinstance(value, list) else [value]


def remove_source_markers(text: str) -> str:
    """``text`` without the ``[Source: analyst-X]`` markers of the integration step."""
    return SOURCE_MARKER.sub("", text)


def parse_edited_outline(content: str, title: str) -> Outline:
    """An outline a reviewer edited: one point per ``- Heading: claim`` (or
    ``## Heading: claim``) line; a claim ending in ``(opinion)`` is not factual.

    Raises:
        ValueError: no point could be read.
    """
    points = []
    for line in content.splitlines():
        line = line.strip().lstrip("-*#").strip()
        if ":" not in line:
            continue
        heading, claim = (p.strip() for p in line.split(":", 1))
        if not heading or not claim:
            continue
        factual = not claim.lower().endswith("(opinion)")
        claim = claim[:-len("(opinion)")].strip() if not factual else claim
        points.append(OutlinePoint(id=f"P{len(points) + 1}", heading=heading, claim=claim,
                                   factual=factual))
    if not points:
        raise ValueError("the edited outline has no '- Heading: claim' lines")
    return Outline(title=title, points=points)


def validate_citation_map(cmap: CitationMap, outline: Outline, loaded: set[str]) -> list[str]:
    """The citation-map checkpoint: non-empty when the outline has factual content,
    every cited id a source that was loaded or fetched, every key an outline point."""
    problems = []
    point_ids = {p.id for p in outline.points}
    cited = [s for ids in cmap.citations.values() for s in ids]
    if any(p.factual for p in outline.points) and not cited:
        problems.append("the citation map is empty although the outline has factual points")
    for point, ids in cmap.citations.items():
        if point not in point_ids:
            problems.append(f"citation map names {point!r}, which is not an outline point")
        for sid in ids:
            if sid not in loaded:
                problems.append(f"{point} cites {sid!r}, which is not a loaded or fetched "
                                f"source (known: {', '.join(sorted(loaded)) or 'none'})")
    return problems


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


def unsupported_map_citations(cmap: CitationMap, outline: Outline, registry: list[SourceDoc]
                              ) -> dict[str, list[str]]:
    """Outline point id -> the ids its citation-map entry cites without supporting
    the point's claim (see :func:`citation_support`); fully supported points are left out."""
    claims = {p.id: p.claim for p in outline.points}
    out = {}
    for pid, ids in cmap.citations.items():
        if pid in claims and ids:
            _, bad = citation_support(claims[pid], ids, registry)
            if bad:
                out[pid] = bad
    return out


JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdicts": {"type": "array", "items": {
        "type": "object",
        "properties": {"claim": {"type": "integer", "minimum": 1},
                       "supported": {"type": "boolean"},
                       "reason": {"type": "string"}},
        "required": ["claim", "supported", "reason"]}}},
    "required": ["verdicts"],
}
MAX_JUDGED = 20  # claims per judge call


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


def judged(found: list[tuple[str, list[str]]], verdicts: list[dict[str, Any]]
           ) -> list[tuple[str, list[str]]]:
    """The entries of ``found`` the judge did not find supported (claims beyond
    MAX_JUDGED, or without a verdict, stay unsupported)."""
    ok = {int(v["claim"]) for v in verdicts if v.get("supported") is True}
    return [entry for n, entry in enumerate(found, 1) if n not in ok or n > MAX_JUDGED]


def sections(body: str) -> list[str]:
    """The ``## `` sections of a report body (text before the first one included)."""
    return [part for part in re.split(r"(?m)^(?=## )", body) if part.strip()]


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


def support_problems(found: list[tuple[str, list[str]]]) -> list[str]:
    """The unsupported citations as problems a model can act on."""
    return [f"the sentence \"{sentence[:160]}\" cites {', '.join(ids)}, whose text does not "
            "support it (cite a source whose passage says this, or drop the citation; "
            "catalogue frameworks (L1) cannot be the only support)"
            for sentence, ids in found]


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


def uncited_sources(body: str, registry: list[SourceDoc]) -> list[str]:
    """Ids of the evidence sources (L0 loaded, L2 fetched) the report body never cites."""
    cited = set(inline_citations(body))
    return [s.id for s in registry if s.role == "evidence" and s.id not in cited]


def inline_citations(body: str) -> list[str]:
    """Source ids cited inline as ``[L0-1]`` or ``[L0-1; L2-3]``, in order of appearance."""
    return [sid for group in BRACKETED.findall(body) for sid in CITATION_ID.findall(group)]


def validate_report(text: str, fields: dict[str, str], loaded: set[str],
                    evidence: bool = True) -> tuple[dict[str, Any], str, list[str]]:
    """The frontmatter checkpoint of the full text: every field of ``fields`` present
    with its JSON-schema type, a non-empty body with at least one inline citation, and
    every inline citation a loaded or fetched source. Without ``evidence`` (the
    citation map cites nothing: no source supports any point) the report needs no
    inline citation and its ``sources`` may be an empty list. Returns (frontmatter,
    body, problems)."""
    try:
        meta, body = split_frontmatter(text)
    except ValueError as err:
        return {}, "", [str(err)]
    problems = []
    for name, kind in fields.items():
        value = meta.get(name)
        if value in (None, "") or value == [] and (evidence or name != "sources"):
            problems.append(f"frontmatter field '{name}' is missing or empty")
        elif not isinstance(value, _JSON_TYPES.get(kind, object)) or isinstance(value, bool) \
                and kind != "boolean":
            problems.append(f"frontmatter field '{name}' must be of type {kind}")
    if not body:
        problems.append("the report body is empty")
    cited = inline_citations(body)
    if body and not cited and evidence:
        problems.append("the report has no inline citations like [L0-1]")
    unknown = sorted({c for c in cited if c not in loaded})
    if unknown:
        problems.append(f"the report cites {', '.join(unknown)}, which are not loaded or "
                        "fetched sources")
    return meta, body, problems


def render_report(meta: dict[str, Any], body: str) -> str:
    """A markdown document with ``meta`` as YAML frontmatter."""
    head = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()
    return f"---\n{head}\n---\n\n{body.strip()}\n"


# -- JSON schemas of the structured LLM phases -----------------------------------
def parse_schema(catalogue: Catalogue) -> dict[str, Any]:
    """Problem parsing: a 0..1 score per synthesizer, a template, the source need,
    and optionally the analysts whose lens fits the problem."""
    return {
        "type": "object",
        "properties": {
            "scores": {"type": "object", "properties": {
                sid: {"type": "number", "minimum": 0, "maximum": 1}
                for sid in catalogue.synthesizers}, "required": list(catalogue.synthesizers)},
            "template": {"type": "string", "enum": list(catalogue.templates)},
            "source_need": {"type": "string", "enum": ["HIGH", "MEDIUM", "LOW"]},
            "source_need_reason": {"type": "string", "minLength": 1},
            "analysts": {"type": "array", "minItems": 1, "uniqueItems": True,
                         "items": {"type": "string", "enum": list(catalogue.analysts)}},
        },
        "required": ["scores", "template", "source_need", "source_need_reason"],
    }


QUESTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"questions": {"type": "array", "minItems": 1, "maxItems": 3,
                                 "items": {"type": "string", "minLength": 5}}},
    "required": ["questions"],
}

PROPOSAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"type": "string", "minLength": 1},
                   "rationale": {"type": "string", "minLength": 1}},
    "required": ["summary", "rationale"],
}

OUTLINE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "points": {"type": "array", "minItems": 1, "maxItems": 12, "items": {
            "type": "object",
            "properties": {"heading": {"type": "string", "minLength": 1},
                           "claim": {"type": "string", "minLength": 1},
                           "factual": {"type": "boolean"}},
            "required": ["heading", "claim", "factual"]}},
    },
    "required": ["title", "points"],
}


def citation_schema(point_ids: list[str], source_ids: list[str]) -> dict[str, Any]:
    """Citation enrichment: for each outline point, the ids of the sources that
    support it (possibly none: a gap)."""
    item = {"type": "string", "enum": source_ids} if source_ids else {"type": "string"}
    return {
        "type": "object",
        "properties": {"citations": {
            "type": "object",
            "properties": {pid: {"type": "array", "items": item, "maxItems": 4}
                           for pid in point_ids},
            "required": point_ids}},
        "required": ["citations"],
    }
