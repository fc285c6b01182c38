"""Lexical grounding: passages of source texts, their relevance to a query, and
whether a sentence is supported by a source.

Pure, deterministic functions (no I/O, no clock): the offline LLM provider ranks
passages with them, and the analysis citation-support check
(``activities.analysis.check_citation_support``, on the texts it loads from the
artifact store) scores support with them, so both sides agree on what
"supported" means.

* Relevance is Okapi BM25 (Robertson & Zaragoza (2009), "The Probabilistic
  Relevance Framework: BM25 and Beyond", Found. Trends Inf. Retr. 3(4)), computed
  by ``rank_bm25.BM25Okapi`` with its defaults k1 = 1.5, b = 0.75.
* Support is a unigram recall in the manner of ROUGE-1 recall (Lin (2004),
  "ROUGE: A Package for Automatic Evaluation of Summaries"): the share of the
  cited sentence's content terms that occur in one passage of the cited source
  (a passage is a window of up to three consecutive sentences). The score is in
  [0, 1]; a citation is supported when the best passage scores at least
  :data:`SUPPORT_THRESHOLD`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SUPPORT_THRESHOLD = 0.5
"""Minimum support score of a supported citation. A quotation scores 1.0 and a
close paraphrase (same nouns and figures, other function words) 0.6-0.9; a claim
about another subject that shares a few words with the source scores below 0.4 on
the fixtures of tests/fixtures/analysis."""

PASSAGE_SENTENCES = 3
"""Sentences per support passage (a claim may condense two or three sentences)."""

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been
before being below between both but by can could did do does doing down during each
few for from further had has have having he her here hers herself him himself his how
i if in into is it its itself just me more most my myself no nor not now of off on
once only or other our ours ourselves out over own same she should so some such than
that the their theirs them themselves then there these they this those through to too
under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves may must might shall one ones us
il lo la i gli le di da del della dei delle che e per con una uno non sono nel nella
""".split())

_WORD = re.compile(r"[0-9]+(?:[.,][0-9]+)*%?|[^\W\d_]+(?:['’-][^\W\d_]+)*")
# where one sentence ends and the next begins: after . ! ? and before a capital, a
# digit or a dotted name such as ``jwt.decode`` (a citation after the full stop stays)
SENTENCE_END = re.compile(
    r"(?<=[.!?])[\"'”’)]*\s+(?=[\"'“‘(]?(?:[A-Z0-9À-Ý]|[a-z_]\w*\.[a-z_]))")
_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*+]\s+|\d+[.)]\s+|>\s*)")


def stem(word: str) -> str:
    """A light suffix stripper (plural and verb endings) so that "invoices",
    "invoicing" and "invoice" share a term; not a full Porter stemmer."""
    for suffix in ("ations", "ation", "ings", "ing", "ies", "es", "ed", "ly", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    return word.rstrip("e") if len(word) > 4 else word


def terms(text: str) -> list[str]:
    """The content terms of ``text``: lower-cased words and numbers, stop words
    dropped, stemmed (:func:`stem`); numbers keep their digits (``2028``, ``0.75``)."""
    out = []
    for raw in _WORD.findall(text.lower()):
        if raw in STOPWORDS or (len(raw) < 2 and not raw.isdigit()):
            continue
        out.append(raw if raw[0].isdigit() else stem(raw.replace("’", "'")))
    return out


def sentences(text: str, headings: bool = True, min_words: int = 4) -> list[str]:
    """The sentences of a markdown/plain text, markup (headings, list bullets,
    quote marks at line start, bold/italic stars) removed; a heading or a list item
    is a sentence of its own (headings left out when ``headings`` is False);
    sentences of fewer than ``min_words`` words are dropped. A bracketed citation after a
    full stop (``... 2028." [L0-1]``) stays with its sentence."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        units: list[str] = []  # paragraphs, list items and headings of the block
        for raw in block.splitlines():
            line = _MARKUP.sub("", raw).strip()
            if not line or line.startswith(("```", "|", "---")):
                continue
            if _MARKUP.match(raw) or not units or re.match(r"\s*#", units[-1]):
                units.append(("# " if re.match(r"\s*#", raw) else "") + line)
            else:
                units[-1] = f"{units[-1]} {line}"
        for unit in units:
            if unit.startswith("# ") and not headings:
                continue
            out.extend(SENTENCE_END.split(unit.removeprefix("# ").replace("**", "")))
    return [" ".join(s.split()) for s in out if len(s.split()) >= min_words]


@dataclass(frozen=True)
class Passage:
    """One sentence of a source: the source's id and title, its position in the
    source (0-based) and its text."""

    source_id: str
    title: str
    index: int
    text: str


def passages(source_id: str, title: str, text: str) -> list[Passage]:
    """The sentences of one source as passages."""
    return [Passage(source_id, title, i, s)
            for i, s in enumerate(sentences(text, headings=False))]


def rank(query: str, candidates: list[Passage], limit: int | None = None
         ) -> list[tuple[Passage, float]]:
    """``candidates`` by BM25 relevance to ``query``, best first, without those
    scoring 0 (no query term); ties keep the candidates' order."""
    if not candidates:
        return []
    from rank_bm25 import BM25Okapi  # here, not at the top: keeps numpy out of workflow code

    query_terms = terms(query)
    corpus = [terms(p.text) or ["\x00"] for p in candidates]
    scores = BM25Okapi(corpus).get_scores(query_terms) if query_terms else []
    # rank_bm25's IDF goes negative for a term in more than half the passages
    # (few passages); count such a match as a small positive relevance.
    ranked = []
    for i, p in enumerate(candidates):
        overlap = len(set(query_terms) & set(corpus[i]))
        if overlap:
            ranked.append((p, max(float(scores[i]), 0.0) + 0.01 * overlap, i))
    ranked.sort(key=lambda x: (-x[1], x[2]))
    return [(p, s) for p, s, _ in ranked[:limit]]


def support_score(claim: str, source_text: str) -> float:
    """How well ``source_text`` supports ``claim``, in [0, 1] (see the module
    docstring): the best share of the claim's distinct content terms found in one
    window of :data:`PASSAGE_SENTENCES` consecutive sentences. 0.0 when the claim
    has no content term or the source no text."""
    wanted = set(terms(claim))
    if not wanted:
        return 0.0
    sents = [set(terms(s)) for s in sentences(source_text)] or [set(terms(source_text))]
    best = 0.0
    for i in range(len(sents)):
        window = set().union(*sents[i:i + PASSAGE_SENTENCES])
        best = max(best, len(wanted & window) / len(wanted))
        if best >= 1.0:
            break
    return round(best, 3)


def best_passage(claim: str, source_text: str) -> str:
    """The window of PASSAGE_SENTENCES consecutive sentences of ``source_text`` that
    best supports ``claim`` (the one :func:`support_score` scores); its first
    sentences when no window shares a term with the claim."""
    wanted = set(terms(claim))
    sents = sentences(source_text)
    if not sents:
        return " ".join(source_text.split())[:600]
    best, where = -1.0, 0
    for i in range(len(sents)):
        window = set().union(*(set(terms(x)) for x in sents[i:i + PASSAGE_SENTENCES]))
        share = len(wanted & window) / len(wanted) if wanted else 0.0
        if share > best:
            best, where = share, i
    return " ".join(sents[where:where + PASSAGE_SENTENCES])


def strip_citations(sentence: str) -> str:
    """A sentence without bracketed citations (``[L0-1; L2-3]``), analyst markers
    and quotation marks, for scoring."""
    text = re.sub(r"\[[^\[\]]*\]", " ", sentence)
    return " ".join(text.replace('"', " ").replace("“", " ").replace("”", " ").split())


def title_of(text: str, limit: int = 90) -> str:
    """A title for a text: its first markdown heading, else its first sentence,
    cut at a word boundary to at most ``limit`` characters (an ellipsis marks a cut)."""
    for line in text.splitlines():
        if m := re.match(r"\s*#{1,6}\s+(.+)", line):
            candidate = m.group(1).strip()
            break
    else:
        found = sentences(text, min_words=1) or [" ".join(text.split())]
        candidate = found[0]
    candidate = candidate.strip().rstrip(".")
    if len(candidate) <= limit:
        return candidate
    return candidate[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"
