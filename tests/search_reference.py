"""A reference model of the library's search, in plain Python.

The tokenizer follows docs/PROTOCOL.md rule by rule, and search is a brute-force
pass over a list of messages. Tests compare the library's answers (from its index
and from its scan) with this model's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_TOKEN_BYTES = 64
#: Bytes of a message's text that search looks at (the library's SEARCHABLE_BYTES).
SEARCHABLE_BYTES = 32768
WORD, SINGLE, SEPARATOR = 1, 2, 3
_RUN = re.compile(r"[A-Za-z0-9\u0080-\U0010ffff]+")


def classify(cp: int) -> int:
    """The tokenizer's class of a non-ASCII code point."""
    if cp < 0xC0:
        return WORD if cp in (0xAA, 0xB5, 0xBA) else SEPARATOR
    if cp in (0xD7, 0xF7):
        return SEPARATOR
    if cp < 0x0370:
        return WORD
    if cp < 0x0530:
        return SEPARATOR if cp in (0x037E, 0x0387, 0x0375, 0x0482) else WORD
    ranges = [
        (0x1100, WORD),
        (0x1200, SINGLE),
        (0x2000, WORD),
        (0x2600, SEPARATOR),
        (0x27C0, SINGLE),
        (0x2E80, SEPARATOR),
        (0x3000, SINGLE),
        (0x3040, SEPARATOR),
    ]
    for limit, kind in ranges:
        if cp < limit:
            return kind
    if cp == 0x30FB:
        return SEPARATOR
    for limit, kind in [
        (0xA000, SINGLE),
        (0xAC00, WORD),
        (0xD7B0, SINGLE),
        (0xF900, SEPARATOR),
        (0xFB00, SINGLE),
        (0xFE00, WORD),
        (0xFF10, SEPARATOR),
    ]:
        if cp < limit:
            return kind
    if cp < 0xFF1A or 0xFF21 <= cp < 0xFF3B or 0xFF41 <= cp < 0xFF5B:
        return WORD
    if 0xFF66 <= cp < 0xFFA0:
        return SINGLE
    if cp < 0x10000 or 0x1F3FB <= cp <= 0x1F3FF:
        return SEPARATOR
    if 0x1F000 <= cp < 0x1FB00 or 0x20000 <= cp < 0x32000:
        return SINGLE
    return SEPARATOR if cp >= 0xE0000 else WORD


def fold(cp: int) -> int:
    """The tokenizer's lower-case form of a letter (fixed-offset case folding)."""
    if cp < 0x100:
        return cp + 32 if 0x41 <= cp <= 0x5A or (0xC0 <= cp <= 0xDE and cp != 0xD7) else cp
    if cp < 0x180:
        if cp == 0x178:
            return 0xFF
        if cp < 0x138 or 0x14A <= cp < 0x178:
            return cp + 1 if cp % 2 == 0 else cp
        if 0x139 <= cp < 0x149 or 0x179 <= cp < 0x17F:
            return cp + 1 if cp % 2 == 1 else cp
        return cp
    if 0x386 <= cp < 0x3D0:
        if 0x391 <= cp <= 0x3AB and cp != 0x3A2:
            return cp + 32
        special = {0x386: 0x3AC, 0x38C: 0x3CC, 0x38E: 0x3CD, 0x38F: 0x3CE, 0x3C2: 0x3C3}
        if 0x388 <= cp <= 0x38A:
            return cp + 37
        return special.get(cp, cp)
    if 0x400 <= cp < 0x500:
        if cp < 0x410:
            return cp + 80
        if cp < 0x430:
            return cp + 32
        if 0x460 <= cp < 0x482 or 0x48A <= cp < 0x4C0 or cp >= 0x4D0:
            return cp + 1 if cp % 2 == 0 else cp
        if 0x4C1 <= cp < 0x4CF:
            return cp + 1 if cp % 2 == 1 else cp
        return cp
    if 0x1E00 <= cp < 0x1F00 and (cp < 0x1E96 or cp >= 0x1EA0):
        return cp + 1 if cp % 2 == 0 else cp
    if 0xFF21 <= cp <= 0xFF3A or 0xFF41 <= cp <= 0xFF5A:
        return cp - (0xFF21 if cp <= 0xFF3A else 0xFF41) + 0x61
    if 0xFF10 <= cp <= 0xFF19:
        return cp - 0xFF10 + 0x30
    return cp


def tokenize(text: str, joined: set[int] | None = None) -> list[str]:
    """The tokens of text, in order; ``joined`` collects the indexes of single
    characters written right after another single character (implicit phrases)."""
    tokens: list[str] = []
    for run in _RUN.findall(text):
        if run.isascii():
            tokens.append(run.lower()[:MAX_TOKEN_BYTES])
            continue
        word, size, full, previous_single = "", 0, False, False
        for char in run:
            cp = ord(char)
            kind = WORD if cp < 0x80 else classify(cp)
            if kind == WORD:
                folded = chr(fold(cp))
                width = len(folded.encode("utf-8"))
                if not full and size + width <= MAX_TOKEN_BYTES:
                    word, size = word + folded, size + width
                else:
                    full = True
                previous_single = False
                continue
            if word:
                tokens.append(word)
            word, size, full = "", 0, False
            if kind == SINGLE:
                tokens.append(char)
                if joined is not None and previous_single:
                    joined.add(len(tokens) - 1)
            previous_single = kind == SINGLE
        if word:
            tokens.append(word)
    return tokens


def searchable_texts(stored: dict[str, Any]) -> list[str]:
    """A stored message's text pieces (string content, or string and text parts), cut so
    that together they hold at most SEARCHABLE_BYTES of UTF-8, each cut at a character."""
    content = stored["data"]["content"]
    if isinstance(content, str):
        pieces = [content]
    else:
        pieces = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                pieces.append(part["text"])
    texts, left = [], SEARCHABLE_BYTES
    for piece in pieces:
        if left <= 0:
            break
        encoded = piece.encode("utf-8")
        texts.append(encoded[:left].decode("utf-8", errors="ignore"))
        left -= len(encoded)
    return texts


def message_text_tokens(stored: dict[str, Any]) -> list[str]:
    """The tokens of a stored message's searchable text."""
    tokens: list[str] = []
    for text in searchable_texts(stored):
        tokens += tokenize(text)
    return tokens


def parse_query(query: str) -> tuple[list[str], list[list[str]]]:
    """Distinct query terms, and the phrases (quoted, or runs of CJK characters)."""
    terms: list[str] = []
    phrases: list[list[str]] = []
    for number, part in enumerate(query.split('"')):
        joined: set[int] = set()
        tokens = tokenize(part, joined)
        for token in tokens:
            if token not in terms:
                terms.append(token)
        if number % 2 == 1:
            if len(tokens) > 1:
                phrases.append(tokens)
            continue
        run: list[str] = []
        for index, token in enumerate(tokens):
            if index in joined:
                run.append(token)
            else:
                if len(run) > 1:
                    phrases.append(run)
                run = [token]
        if len(run) > 1:
            phrases.append(run)
    return terms, phrases


def id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


def _holds(tokens: list[str], phrase: list[str]) -> bool:
    width = len(phrase)
    return any(tokens[i : i + width] == phrase for i in range(len(tokens) - width + 1))


@dataclass
class ReferenceSession:
    """Messages of one session as (stream id, stored dict), oldest first."""

    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def search(
        self,
        query: str,
        limit: int = 10,
        mode: str = "all",
        message_type: str | None = None,
        before: str | None = None,
    ) -> list[str]:
        """The ids the library must reply, in its order."""
        terms, phrases = parse_query(query)
        if not terms or limit == 0:
            return []
        bound = None
        if before is not None:
            bound = id_key(before) if "-" in before else (int(before), -1)
        scored: list[tuple[int, tuple[int, int], str]] = []
        for stream_id, stored in self.messages:
            if bound is not None and id_key(stream_id) >= bound:
                continue
            if message_type is not None and stored["type"] != message_type:
                continue
            tokens = message_text_tokens(stored)
            present = set(tokens)
            score = sum(term in present for term in terms)
            if mode == "any":
                if score:
                    scored.append((score, id_key(stream_id), stream_id))
            elif score == len(terms) and all(_holds(tokens, p) for p in phrases):
                scored.append((score, id_key(stream_id), stream_id))
        if mode == "any":
            scored.sort(key=lambda hit: (hit[0], hit[1]), reverse=True)
            return [hit[2] for hit in scored[:limit]]
        return [hit[2] for hit in scored[-limit:]]
