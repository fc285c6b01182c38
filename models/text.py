"""Text helpers every entry point shares: readable slugs from titles in any script,
UTF-8 decoding that names the file and the byte offset of a bad byte, and excerpts
of long texts that say how long they were.

Pure functions (no I/O), so models, activities and the CLI can all use them.
"""

from __future__ import annotations

import hashlib
import re

from anyascii import anyascii

SLUG_MAX_CHARS = 60
"""Longest slug :func:`slugify` makes (characters); a workflow ID stays far below
Temporal's 1000-byte limit and a git branch name stays readable."""

TITLE_MAX_CHARS = 500
"""Longest title accepted on the command line (characters). The title is shown in
the web UI's summary and the issue; the workflow ID is built from its slug, so the
ID stays within Temporal's limit (:data:`WORKFLOW_ID_MAX_BYTES`) whatever the title."""

WORKFLOW_ID_MAX_BYTES = 1000
"""Temporal's default limit on a workflow ID (``limit.maxIDLength``), in UTF-8 bytes."""


def slugify(text: str, max_words: int = 6, max_chars: int = SLUG_MAX_CHARS) -> str:
    """A branch-safe slug of ``text``: lowercase ASCII words joined by ``-``.

    Text in any script is transliterated first (anyascii: ``"Café"`` -> ``cafe``,
    ``"日本語"`` -> ``ribenyu``, ``"Привет"`` -> ``privet``). At most ``max_words``
    words and ``max_chars`` characters (a word is cut, never the ``-``). When nothing
    is left (``"!!!"``, emoji only) the slug is ``t-`` and the first 8 hex digits of
    the text's SHA-256, so every non-blank title has a stable slug. ASCII titles
    give the same slug as before transliteration was added.

    ``"Add CSV export!"`` -> ``"add-csv-export"``.

    Raises:
        ValueError: ``text`` is empty or only whitespace.
    """
    if not text.strip():
        raise ValueError("cannot build a slug from an empty or blank text")
    ascii_text = text if text.isascii() else anyascii(text)
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())[:max_words]
    slug = "-".join(words)[:max_chars].strip("-")
    if not slug:
        slug = "t-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return slug


_EXCERPT_NOTE = re.compile(r"\.\.\. \[[0-9,]+ characters in all(?:: [^\]]*)?\]\Z")
"""The note :func:`excerpt` ends an excerpt with (the original length, and where the
whole text is when that was given)."""


def excerpt(text: str, limit: int, *, preview: int | None = None, where: str = "") -> str:
    """``text`` whole when at most ``limit`` characters, else its first ``preview``
    characters (default ``limit``) and how long it was: ``"abc... [12,345 characters
    in all]"``, or ``"abc... [12,345 characters in all: WHERE]"`` when ``where`` says
    where the whole text is. For user text that goes into a message, a state or a
    history that must stay small.

    Idempotent: an excerpt this function made (its kept part at most ``preview``
    characters, its note at the end) is returned as it is, so a text shortened again
    (e.g. carried over a second continue-as-new) keeps its original length and place.
    """
    keep = limit if preview is None else preview
    if len(text) <= limit:
        return text
    note = _EXCERPT_NOTE.search(text)
    if note is not None and note.start() <= keep:
        return text
    return f"{text[:keep]}... [{len(text):,} characters in all{': ' + where if where else ''}]"


class NotUtf8Error(ValueError):
    """A file is not UTF-8 text; the message names the file, the byte and its offset.

    Attributes:
        source: the file (as given).
        offset: offset of the first undecodable byte from the start of the file.
    """

    def __init__(self, source: str, offset: int, byte: int) -> None:
        self.source = source
        self.offset = offset
        super().__init__(f"{source} is not UTF-8 text: byte 0x{byte:02x} at offset {offset} "
                         "cannot be decoded; save the file as UTF-8")


def decode_utf8(raw: bytes, source: str) -> str:
    """``raw`` decoded as UTF-8 (a leading byte-order mark is dropped).

    Raises:
        NotUtf8Error: a byte sequence is not UTF-8; names ``source`` and the offset.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise NotUtf8Error(source, err.start, raw[err.start]) from None
