"""Deterministic, realistic chat text for the benchmarks.

Messages are built from a seeded RNG: about 35 words each, drawn from a vocabulary of
word-like strings with Zipf-like frequencies (a few words everywhere, most words rare),
plus numbers and punctuation; human and AI turns alternate. The stored form is
LangChain's stored-message JSON (``message_to_dict``), exactly what the stores write,
so sizes, parsing and search work are those of a real chat session.
"""

from __future__ import annotations

import itertools
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from redis_chat_history._langchain import encode_message

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"
_PUNCTUATION = (",", ",", ".", "?", "!", ":", ";", " -")
_TOKEN = re.compile(r"[a-z0-9]+")
#: Distinct message texts; larger sessions repeat them (with new ids).
DISTINCT = 10000


def word_tokens(text: str) -> list[str]:
    """The ASCII word tokens of ``text``, as the library finds them (letter/digit runs)."""
    return _TOKEN.findall(text.lower())


def _vocabulary(size: int, rng: random.Random) -> list[str]:
    """``size`` distinct pronounceable words of 1 to 4 syllables; short words come first."""
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        # Frequent words (the head of the Zipf list) are short, as in real text.
        syllables = 1 + min(3, int(rng.expovariate(1.0) * (1 + len(words) / size * 2)))
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        if rng.random() < 0.3:
            word += rng.choice(_CONSONANTS)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


@dataclass
class Corpus:
    """A seeded generator of chat messages; the same seed always gives the same messages."""

    seed: int = 7
    vocabulary_size: int = 8000
    mean_words: int = 35
    zipf_exponent: float = 1.07
    _cache: list[BaseMessage] = field(default_factory=list, repr=False)
    _json_cache: list[bytes] = field(default_factory=list, repr=False)
    _ids: list[str] = field(default_factory=list, repr=False)

    @cached_property
    def words(self) -> list[str]:
        """The vocabulary, most frequent word first."""
        return _vocabulary(self.vocabulary_size, random.Random(self.seed))

    @cached_property
    def _cum_weights(self) -> list[float]:
        weights = [1.0 / (rank**self.zipf_exponent) for rank in range(1, len(self.words) + 1)]
        return list(itertools.accumulate(weights))

    def _text(self, rng: random.Random) -> str:
        count = max(3, int(rng.gauss(self.mean_words, self.mean_words / 3)))
        words = rng.choices(self.words, cum_weights=self._cum_weights, k=count)
        parts: list[str] = []
        capital = True
        for word in words:
            if rng.random() < 0.04:
                word = str(rng.choice((rng.randint(0, 99), rng.randint(100, 99999))))
            parts.append(word.capitalize() if capital else word)
            capital = False
            if rng.random() < 0.1:
                mark = rng.choice(_PUNCTUATION)
                parts[-1] += mark
                capital = mark in ".?!"
        return " ".join(parts).rstrip(",.?!:; -") + rng.choice((".", "?", "!", "."))

    def messages(self, count: int) -> list[BaseMessage]:
        """The first ``count`` messages of the corpus (human first, then alternating)."""
        if len(self._cache) < count:
            rng = random.Random(f"{self.seed}:{len(self._cache)}")
            for position in range(len(self._cache), count):
                kind = HumanMessage if position % 2 == 0 else AIMessage
                self._cache.append(kind(content=self._text(rng)))
        return self._cache[:count]

    def jsons(self, count: int, ids: bool = True) -> list[bytes]:
        """The stored-message JSON of ``count`` messages, repeating the first ``DISTINCT`` texts.

        With ``ids``, each message carries a unique uuid4-shaped ``id`` (seeded), as this
        package stores messages (it gives every id-less message one); without, ``id``
        is null, as langchain-community stores messages created without one.
        """
        base = self._encoded(min(count, DISTINCT))
        if not ids:
            return [base[i % len(base)] for i in range(count)]
        return [
            base[i % len(base)].replace(b'"id":null', b'"id":"%s"' % self._id(i).encode(), 1)
            for i in range(count)
        ]

    def _encoded(self, count: int) -> list[bytes]:
        if len(self._json_cache) < count:
            new = self.messages(count)[len(self._json_cache) :]
            self._json_cache += [encode_message(message) for message in new]
        return self._json_cache[:count]

    def _id(self, position: int) -> str:
        while len(self._ids) <= position:
            rng = self._id_rng
            self._ids.append(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        return self._ids[position]

    @cached_property
    def _id_rng(self) -> random.Random:
        return random.Random(f"{self.seed}:ids")


def token_counts(texts: list[str]) -> Counter[str]:
    """In how many texts each token occurs."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(set(word_tokens(text)))
    return counts


def rare_and_common(messages: list[BaseMessage]) -> tuple[str, str]:
    """A rare word (in 2 to 5 messages) and the most common token of ``messages``."""
    counts = token_counts([str(message.content) for message in messages])
    common = counts.most_common(1)[0][0]
    rare = [t for t, n in counts.items() if 2 <= n <= 5 and not t.isdigit() and len(t) > 3]
    return (min(rare) if rare else counts.most_common()[-1][0]), common
