"""The enforced checks and pure helpers of the analysis pipeline (seed 004).

Deterministic functions only: AnalysisWorkflow calls them inside the workflow, and
tests call them directly. None of them reads a source's text: whether a citation is
supported by its source is decided in an activity (``check_citation_support`` in
activities/analysis.py), where the texts are loaded from the artifact store.
Each ``validate_*`` returns the problems it found as sentences a model (or a
person) can act on; an empty list means valid.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import yaml

from activities.analysis import MAX_JUDGED, inline_citations
from models.analysis import (
    AnalystOutput,
    Catalogue,
    CitationMap,
    Outline,
    OutlinePoint,
    SourceDoc,
)

SOURCE_MARKER = re.compile(r"\s*\[Source:\s*analyst-[^\]]*\]")
T = TypeVar("T")
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


def judged(found: list[T], verdicts: list[dict[str, Any]]) -> list[T]:
    """The entries of ``found`` (flagged citations, numbered from 1 in the judge's
    prompt) the judge did not find supported (claims beyond
    MAX_JUDGED, or without a verdict, stay unsupported)."""
    ok = {int(v["claim"]) for v in verdicts if v.get("supported") is True}
    return [entry for n, entry in enumerate(found, 1) if n not in ok or n > MAX_JUDGED]


def support_problems(found: list[tuple[str, list[str]]]) -> list[str]:
    """The unsupported citations as problems a model can act on."""
    return [f"the sentence \"{sentence[:160]}\" cites {', '.join(ids)}, whose text does not "
            "support it (cite a source whose passage says this, or drop the citation; "
            "catalogue frameworks (L1) cannot be the only support)"
            for sentence, ids in found]


def uncited_sources(body: str, registry: list[SourceDoc]) -> list[str]:
    """Ids of the evidence sources (L0 loaded, L2 fetched) the report body never cites."""
    cited = set(inline_citations(body))
    return [s.id for s in registry if s.role == "evidence" and s.id not in cited]


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
