"""The search index, tokenizer, windows, deletes and imports of the library (raw FCALL).

Every search is checked against the Python reference model in search_reference.py,
on an indexed session and on one written with NOINDEX (searched by a scan).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import RawSession
from redis_chat_history import library_source
from search_reference import ReferenceSession, parse_query, tokenize

TYPES = ["human", "ai", "tool", "system"]


def stored(text: Any, message_type: str = "human", message_id: str | None = None) -> str:
    """A stored-message JSON as LangChain writes it."""
    data = {"content": text, "type": message_type, "id": message_id, "additional_kwargs": {}}
    return json.dumps({"type": message_type, "data": data}, ensure_ascii=False)


SMALL_SIZES = {
    "PENDING_RECORDS": 3,
    "PENDING_BYTES": 400,
    "PAGE_MESSAGES": 2,
    "BLOCK_BYTES": 6,
    "SWEEP_FIELDS": 3,
    "SEARCH_JUDGED": 3,
    "SEARCH_ENTRIES": 5,
    "SEARCH_POSTINGS": 40,
    "BUILD_STEP": 4,
    "WRITE_BUILD_STEP": 2,
    "TRIM_STEP": 2,
}


def small_library() -> str:
    """The shipped library with tiny sizes, so that a few messages fold pending
    postings, share rare-term buckets, promote terms to heads, roll blocks and
    remove postings across blocks."""
    source = library_source()
    for name, value in SMALL_SIZES.items():
        source, count = re.subn(rf"local {name} = \d+", f"local {name} = {value}", source)
        assert count == 1, name
    return source


class Pair:
    """An indexed session and a NOINDEX session fed the same operations, with models."""

    def __init__(self, client: redis.Redis, name: str, trim_step: int = 256) -> None:
        self.trim_step = trim_step
        self.indexed = RawSession(client, "t:", f"{name}-index")
        self.scanned = RawSession(client, "t:", f"{name}-scan")
        self.models = {self.indexed: ReferenceSession(), self.scanned: ReferenceSession()}

    def append(self, jsons: list[str], max_messages: int | None = None) -> None:
        window = ["MAXLEN", max_messages] if max_messages else []
        for session, flag in ((self.indexed, []), (self.scanned, ["NOINDEX"])):
            ids = session.call("append", *window, *flag, "MESSAGES", *jsons)
            model = self.models[session]
            known = {stream_id for stream_id, _ in model.messages}
            added = 0
            for stream_id, text in zip(ids, jsons, strict=True):
                if stream_id.decode() not in known:
                    model.messages.append((stream_id.decode(), json.loads(text)))
                    added += 1
            if max_messages:  # a write removes at most TRIM_STEP more than it added
                excess = max(len(model.messages) - max_messages, 0)
                room = min(excess, self.trim_step + added, len(model.messages) - 1)
                del model.messages[:room]

    def delete_positions(self, positions: list[int]) -> None:
        for session, model in self.models.items():
            ids = [model.messages[p][0] for p in positions if p < len(model.messages)]
            if not ids:
                continue
            assert session.call("delete", "IDS", *ids) == len(set(ids))
            model.messages = [m for m in model.messages if m[0] not in ids]

    def check(self, query: str, **options: Any) -> None:
        args: list[Any] = [query, "LIMIT", options.get("limit", 10)]
        if options.get("mode", "all") != "all":
            args += ["MODE", options["mode"]]
        if options.get("message_type"):
            args += ["TYPE", options["message_type"]]
        for session, model in self.models.items():
            before = options.get("before_position")
            before_id = None
            if before is not None and before < len(model.messages):
                before_id = model.messages[before][0]
            extra = ["BEFORE", before_id] if before_id else []
            limit = options.get("limit", 10)
            mode = options.get("mode", "all")
            typed = ["TYPE", options["message_type"]] if options.get("message_type") else []
            paged = session.search_paged(query, *typed, limit=limit, mode=mode, before=before_id)
            got = [hit[0].decode() for hit in paged.hits]
            expected = model.search(
                query,
                limit=options.get("limit", 10),
                mode=options.get("mode", "all"),
                message_type=options.get("message_type"),
                before=before_id,
            )
            assert got == expected, (session.keys[0], query, options)
            try:
                reply = session.call("search", *args, *extra, read_only=True)
            except redis.ResponseError as error:  # a search longer than one call's budget
                assert "CHATHIST_BUDGET" in str(error) and paged.calls > 1
            else:
                assert [item.decode() for item in reply[0::2]] == expected


# -- the tokenizer -------------------------------------------------------------

LANGUAGES = {
    "english": ("The QUICK brown fox, 3.14!", ["the", "quick", "brown", "fox", "3", "14"]),
    "french": ("Ça va? L'élève ÉCOLE naïve", ["ça", "va", "l", "élève", "école", "naïve"]),
    "german": ("Straße GRÖSSE Über", ["straße", "grösse", "über"]),
    "russian": ("Привет, МИР! Ёлка", ["привет", "мир", "ёлка"]),
    "greek": ("ΣΊΣΥΦΟΣ σίσυφος", ["σίσυφοσ", "σίσυφοσ"]),
    "chinese": ("我喜欢中文。", ["我", "喜", "欢", "中", "文"]),
    "japanese": ("東京に行く、カタカナ", ["東", "京", "に", "行", "く", "カ", "タ", "カ", "ナ"]),
    "korean": ("한국어 텍스트", ["한", "국", "어", "텍", "스", "트"]),
    "emoji": ("party 🎉🎉 ok 👍🏽", ["party", "🎉", "🎉", "ok", "👍"]),
    "fullwidth": ("\uff21\uff22\uff23\uff11\uff12", ["abc12"]),  # fullwidth ABC12
}


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_reference_tokenizer_follows_the_documented_rules(language: str) -> None:
    text, tokens = LANGUAGES[language]
    assert tokenize(text) == tokens


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_token_of_every_language_finds_its_message(raw: RawSession, language: str) -> None:
    texts = [text for text, _ in LANGUAGES.values()]
    ids = [x.decode() for x in raw.call("append", "MESSAGES", *[stored(t) for t in texts])]
    text, tokens = LANGUAGES[language]
    for token in tokens:
        upper = token.upper()  # the same word in capitals, where Unicode round-trips it
        query = upper if upper.lower() == token and len(upper) == len(token) else token
        reply = raw.call("search", query, read_only=True)
        assert ids[texts.index(text)] in [x.decode() for x in reply[0::2]], token


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("中文", True),
        ("喜欢", True),
        ("欢喜", False),  # both characters are there, not in this order
        ("文中", False),
        ('"quick brown"', True),
        ('"brown quick"', False),
        ("quick brown", True),
        ("东京", False),  # simplified 东 is not 東
        ("東京", True),
        ("カタカナ", True),
        ("ÉLÈVE", True),
    ],
)
def test_phrases_quoted_and_cjk_runs(raw: RawSession, query: str, found: bool) -> None:
    raw.call("append", "MESSAGES", *[stored(t) for t, _ in LANGUAGES.values()])
    reply = raw.call("search", query, read_only=True)
    assert bool(reply) is found


def test_query_parsing_matches_the_reference() -> None:
    assert parse_query('hello "big world" 你好世界') == (
        ["hello", "big", "world", "你", "好", "世", "界"],
        [["big", "world"], ["你", "好", "世", "界"]],
    )


def test_a_long_word_is_cut_to_its_first_64_bytes_at_a_character(raw: RawSession) -> None:
    word = "a" * 63 + "é" + "b"  # é would end at byte 65: the token is the 63 a's
    assert tokenize(word) == ["a" * 63]
    raw.call("append", "MESSAGES", stored(word))
    assert raw.call("search", "a" * 63, read_only=True)
    assert not raw.call("search", "a" * 63 + "b", read_only=True)


def test_long_words_are_cut_to_64_bytes_on_both_sides(raw: RawSession) -> None:
    word = "a" * 100
    raw.call("append", "MESSAGES", stored(f"x {word} y"))
    assert raw.call("search", "a" * 64, read_only=True)
    assert raw.call("search", "a" * 80, read_only=True)
    assert not raw.call("search", "a" * 63, read_only=True)


# -- index against the reference model -----------------------------------------

WORDS = [
    "alpha",
    "Beta",
    "GAMMA",
    "delta",
    "ça",
    "Élève",
    "straße",
    "привет",
    "МИР",
    "中",
    "文",
    "你好",
    "東京",
    "カタ",
    "🎉",
    "42",
    "x" * 70,
]
SEPARATORS = [" ", ", ", "! ", "", "。", " - "]

texts = st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=8).map(
    lambda pairs: "".join(word + sep for word, sep in pairs)
)
contents = st.one_of(
    texts,
    st.lists(
        st.one_of(texts, texts.map(lambda t: {"type": "text", "text": t})), min_size=1, max_size=2
    ),
)
messages = st.builds(stored, contents, st.sampled_from(TYPES))
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.lists(messages, min_size=1, max_size=3),
            st.one_of(st.none(), st.integers(1, 6)),
        ),
        st.tuples(st.just("delete"), st.lists(st.integers(0, 8), min_size=1, max_size=3)),
        st.tuples(st.just("clear")),
        st.tuples(st.just("reindex")),
    ),
    min_size=1,
    max_size=12,
)
queries = st.tuples(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join),
    st.booleans(),
    st.sampled_from(["all", "any"]),
    st.one_of(st.none(), st.sampled_from(TYPES)),
    st.integers(0, 5),
    st.one_of(st.none(), st.integers(0, 8)),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations, st.lists(queries, min_size=1, max_size=6))
def test_index_and_scan_agree_with_the_reference_after_any_operations(
    loaded: redis.Redis, ops: list[tuple[Any, ...]], checks: list[tuple[Any, ...]]
) -> None:
    loaded.flushall()
    loaded.function_load(small_library(), replace=True)
    pair = Pair(loaded, "p", trim_step=SMALL_SIZES["TRIM_STEP"])
    for op in ops:
        if op[0] == "append":
            pair.append(op[1], op[2])
        elif op[0] == "delete":
            pair.delete_positions(op[1])
        elif op[0] == "clear":
            for session, model in pair.models.items():
                session.call("clear")
                model.messages.clear()
        else:
            for session in pair.models:
                session.call("reindex")
        for words, quoted, mode, message_type, limit, before in checks:
            query = f'"{words}"' if quoted else words
            pair.check(
                query,
                mode=mode,
                message_type=message_type,
                limit=limit,
                before_position=before,
            )


def long_text(i: int) -> str:
    words = ["common", f"w{i % 7}", f"rare{i}", "中文" if i % 50 == 0 else "", "🎉" * (i % 2)]
    return " ".join(words)


def test_a_long_session_folds_pages_and_rolls_blocks(loaded: redis.Redis) -> None:
    """With the shipped sizes: enough messages to fold pending postings into pages many
    times and fill several blocks; then deletes and trims reach into the folded index."""
    pair = Pair(loaded, "long")
    for i in range(0, 3000, 12):
        pair.append([stored(long_text(j), TYPES[j % 4]) for j in range(i, i + 12)])
    fields = loaded.hkeys(pair.indexed.keys[1])
    assert b"\0e" in fields  # pending postings were folded into the index
    assert sum(field.startswith(b"common\0") for field in fields) >= 2  # in several blocks
    for query in ["common", "w3", "rare17", "rare2999", "common w2", "中文", "🎉 w1", "missing"]:
        for mode in ("all", "any"):
            pair.check(query, mode=mode, limit=50)
            pair.check(query, mode=mode, message_type="ai", limit=7, before_position=1200)
    pair.delete_positions([0, 5, 100, 250, 1999, 2999])
    for query in ["common", "rare5", "rare120", "rare260", "w4 common", "rare2998"]:
        pair.check(query, limit=1000, before_position=1500)
        pair.check(query, mode="any", limit=1000)


def test_long_messages_fold_before_the_record_count_is_reached(loaded: redis.Redis) -> None:
    """With the shipped sizes: messages of a few KB each are folded once their JSON passes
    the byte threshold, long before 64 of them are pending, so a fold's work stays small."""
    pair = Pair(loaded, "long-messages")
    for i in range(24):
        words = " ".join(f"w{(i * 7 + k) % 500} topic{i}" for k in range(300))
        pair.append([stored(f"{words} common", TYPES[i % 4])])
    meta = loaded.hmget(pair.indexed.keys[1], ["\0n", "\0f", "\0e"])
    pending = int(meta[0].split()[0]) if meta[0] else 0
    assert meta[1] is not None and meta[2] is not None  # folded, and the fold recorded
    assert pending < 24
    for query in ["common", "topic3", "topic23", "w17 topic5", "missing"]:
        pair.check(query, limit=30)
        pair.check(query, mode="any", limit=5)


def test_the_sweep_deletes_the_postings_of_trimmed_pages(loaded: redis.Redis) -> None:
    """A sliding window (MAXLEN on every append) keeps the index to the window: the
    terms of trimmed pages go, and search stays right throughout."""
    pair = Pair(loaded, "window")
    pair.append([stored(long_text(j), TYPES[j % 4]) for j in range(200)])
    index_key = pair.indexed.keys[1]
    full = loaded.hlen(index_key)
    for i in range(200, 1400):
        pair.append([stored(long_text(i), TYPES[i % 4])], max_messages=200)
        if i % 300 == 0:
            for query in ["common", "rare1000", f"rare{i - 150}", f"rare{i - 250}", "w5 common"]:
                pair.check(query, limit=20)
                pair.check(query, mode="any", limit=5)
    rare_terms = [f for f in loaded.hkeys(index_key) if f.startswith(b"rare")]
    assert len(rare_terms) <= 2 * 200 + 100  # not the 1,400 ever written
    assert loaded.hlen(index_key) < 2 * full  # the window, and terms the sweep has yet to visit


# -- index upkeep ----------------------------------------------------------------


def test_no_stale_hit_after_the_messages_key_is_evicted(raw: RawSession) -> None:
    raw.call("append", "MESSAGES", stored("secret plan"), stored("other"))
    raw.client.delete(raw.keys[0])  # as maxmemory eviction would
    assert raw.call("search", "secret", read_only=True) == []
    raw.call("append", "MESSAGES", stored("new secret"))
    reply = raw.call("search", "secret", read_only=True)
    assert [json.loads(x)["data"]["content"] for x in reply[1::2]] == ["new secret"]


def test_a_session_indexed_by_1_1_is_scanned_then_rebuilt_by_its_next_write(
    raw: RawSession,
) -> None:
    """An index of format 1 (library 1.1: a posting per message, rare-term buckets,
    1.1.0's pending text) is never read: search scans, and the next write rebuilds it."""
    texts = [f"old {i} {'apple' if i % 3 == 0 else 'pear'}" for i in range(40)]
    raw.call("append", "TTL", 600, "MESSAGES", *map(stored, texts))
    raw.client.hset(raw.keys[1], mapping={"\0v": "1", "\x027": "\napple\01f,", "\0p": "x"})

    def found(query: str) -> list[str]:
        reply = raw.call("search", query, "LIMIT", 100, read_only=True)
        return [json.loads(x)["data"]["content"] for x in reply[1::2]]

    assert found("apple") == [t for t in texts if "apple" in t]
    raw.call("append", "MESSAGES", stored("new apple"))
    index = raw.client.hgetall(raw.keys[1])
    assert index[b"\0v"] == b"2"
    assert b"\x027" not in index and b"\0p" not in index
    assert 0 < raw.client.ttl(raw.keys[1]) <= 600
    assert found("apple") == [*[t for t in texts if "apple" in t], "new apple"]
    assert found("old 7") == ["old 7 pear"]


def test_a_lost_index_falls_back_to_a_scan_and_reindex_restores_it(raw: RawSession) -> None:
    raw.call("append", "MESSAGES", stored("alpha one"), stored("beta two"))
    raw.client.delete(raw.keys[1])
    raw.call("append", "MESSAGES", stored("alpha three"))
    assert len(raw.call("search", "alpha", read_only=True)) == 4  # scanned
    assert raw.call("reindex") == 3
    assert raw.client.hexists(raw.keys[1], "\0v")
    # the rebuild counts as a fold: nothing is pending, so the next write does not fold
    assert raw.client.hget(raw.keys[1], "\0f") == b"0"
    assert len(raw.call("search", "alpha", read_only=True)) == 4  # indexed


def test_noindex_sessions_keep_no_postings_and_are_searched_by_scan(raw: RawSession) -> None:
    raw.call("append", "NOINDEX", "MESSAGES", stored("alpha"), stored("beta"))
    assert sorted(raw.client.hkeys(raw.keys[1])) == [b"\0M", b"\0b", b"\0v"]
    raw.call("append", "MESSAGES", stored("alpha again"))  # stays unindexed
    assert raw.client.hget(raw.keys[1], "\0v") == b"N"
    assert len(raw.call("search", "alpha", read_only=True)) == 4


def test_an_indexed_session_ignores_noindex(raw: RawSession) -> None:
    raw.call("append", "MESSAGES", stored("alpha"))
    raw.call("append", "NOINDEX", "MESSAGES", stored("alpha beta"))
    assert raw.client.hexists(raw.keys[1], "\0v")
    assert len(raw.call("search", "beta", read_only=True)) == 2


# -- windows -------------------------------------------------------------------


def test_maxlen_keeps_the_newest_and_forgets_index_and_client_ids(raw: RawSession) -> None:
    for i in range(10):
        raw.call("append", "MAXLEN", 3, "MESSAGES", stored(f"m{i} common", message_id=f"id{i}"))
    reply = raw.call("range", read_only=True)
    assert [json.loads(x)["data"]["content"] for x in reply[1::2]] == [
        "m7 common",
        "m8 common",
        "m9 common",
    ]
    assert sorted(raw.client.hkeys(raw.keys[2])) == [b"id7", b"id8", b"id9"]
    assert raw.call("search", "m2", read_only=True) == []
    assert len(raw.call("search", "common", "LIMIT", 100, read_only=True)) == 6


def test_maxlen_far_below_the_length_rebuilds_the_index(raw: RawSession) -> None:
    raw.call("append", "MESSAGES", *[stored(f"old{i} x") for i in range(50)])
    raw.call("append", "MAXLEN", 2, "MESSAGES", stored("new x"))
    assert raw.call("len", read_only=True) == 2
    assert raw.call("search", "old10", read_only=True) == []
    assert len(raw.call("search", "x", read_only=True)) == 4


def test_maxbytes_trims_by_stored_json_bytes_and_keeps_the_newest(raw: RawSession) -> None:
    big = stored("y" * 500)
    raw.call("append", "MESSAGES", stored("a"), stored("b"), stored("c"))
    raw.call("append", "MAXBYTES", 600, "MESSAGES", big)
    assert raw.call("len", read_only=True) == 1  # the newest stays even when larger
    small = [stored(str(i)) for i in range(5)]
    raw.call("append", "MAXBYTES", 2 * len(small[0]) + 1, "MESSAGES", *small)
    assert raw.call("len", read_only=True) == 2
    assert int(raw.client.hget(raw.keys[1], "\0b")) == 2 * len(small[0])


# -- delete, import, ttl ---------------------------------------------------------


def test_delete_by_stream_ids_and_by_message_ids(raw: RawSession) -> None:
    ids = raw.call(
        "append",
        "MESSAGES",
        stored("one", message_id="a"),
        stored("two", message_id="b"),
        stored("three"),
    )
    assert raw.call("delete", "IDS", ids[2], "1-1") == 1
    assert raw.call("delete", "MESSAGEIDS", "a", "zzz") == 1
    reply = raw.call("range", read_only=True)
    assert [json.loads(x)["data"]["content"] for x in reply[1::2]] == ["two"]
    assert raw.client.hkeys(raw.keys[2]) == [b"b"]
    assert raw.call("search", "one", read_only=True) == []
    assert raw.call("delete", "MESSAGEIDS", "b") == 1
    assert raw.client.exists(*raw.keys) == 0  # the last message takes the session with it


@pytest.mark.parametrize(
    "args",
    [[], ["IDS"], ["NAMES", "x"], ["IDS", "not-an-id"], ["IDS", "1"], ["MESSAGEIDS", ""]],
)
def test_delete_refuses_bad_arguments_and_deletes_nothing(raw: RawSession, args: list[str]) -> None:
    raw.call("append", "MESSAGES", stored("keep"))
    with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG"):
        raw.call("delete", *args)
    assert raw.call("len", read_only=True) == 1


def test_import_keeps_ids_and_refuses_ids_out_of_order(raw: RawSession) -> None:
    ids = raw.call("import", "ENTRIES", "1000-0", stored("first"), "1000-5", stored("second"))
    assert ids == [b"1000-0", b"1000-5"]
    assert raw.call("search", "second", read_only=True)[0] == b"1000-5"
    for bad in (["999-0"], ["1000-5"], ["x"]):
        with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG"):
            raw.call("import", "ENTRIES", "2000-0", stored("ok"), bad[0], stored("no"))
    assert raw.call("len", read_only=True) == 2
    assert raw.call("append", "MESSAGES", stored("later"))[0] > b"1000-5"


def test_ttl_and_expire(raw: RawSession) -> None:
    assert raw.call("ttl", read_only=True) == -2
    assert raw.call("expire", 100) == 0
    raw.call("append", "MESSAGES", stored("x", message_id="a"))
    assert raw.call("ttl", read_only=True) == -1
    assert raw.call("expire", 100) == 1
    assert all(0 < raw.client.ttl(key) <= 100 for key in raw.keys)
    assert raw.call("expire", "persist") == 1
    assert all(raw.client.ttl(key) == -1 for key in raw.keys)
    for bad in (["0"], ["-1"], ["abc"], [], ["1", "2"]):
        with pytest.raises(redis.ResponseError, match="CHATHIST_BADARG"):
            raw.call("expire", *bad)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["x", "MODE", "SOME"], "MODE must be ALL or ANY"),
        (["x", "TYPE", ""], "TYPE must be"),
        (["x", "BEFORE", "yesterday"], "BEFORE must be"),
        ([" ".join(f"w{i}" for i in range(65))], "over the limit of 64"),
        (["x", "LIMIT", "1001"], "LIMIT must be"),
    ],
)
def test_search_refuses_bad_options(raw: RawSession, args: list[str], text: str) -> None:
    with pytest.raises(redis.ResponseError, match=re.escape(text)):
        raw.call("search", *args, read_only=True)


def test_any_mode_ranks_by_matched_words_then_recency(raw: RawSession) -> None:
    ids = raw.call(
        "append",
        "MESSAGES",
        stored("red green blue"),
        stored("red"),
        stored("green blue"),
        stored("nothing"),
        stored("blue"),
    )
    reply = raw.call("search", "red green blue", "MODE", "any", read_only=True)
    assert reply[0::2] == [ids[0], ids[2], ids[4], ids[1]]


def test_type_filter_and_paging_to_older_matches(raw: RawSession) -> None:
    ids = raw.call("append", "MESSAGES", *[stored(f"hit {i}", TYPES[i % 2]) for i in range(10)])
    page = raw.call("search", "hit", "TYPE", "ai", "LIMIT", 2, read_only=True)[0::2]
    assert page == [ids[7], ids[9]]
    older = raw.call("search", "hit", "TYPE", "ai", "LIMIT", 2, "BEFORE", page[0], read_only=True)
    assert older[0::2] == [ids[3], ids[5]]


def test_json_with_escaped_or_fullwidth_letters_is_found(raw: RawSession) -> None:
    """Search reads past JSON escapes: a word whose letters a client wrote as \\u escapes,
    or in fullwidth form, is found like any other, in folded pages too."""
    escaped = (
        '{"type":"human","data":{"content":"\\u0041pple caf\\u00e9 ok","type":"human",'
        '"id":null,"additional_kwargs":{}}}'
    )
    jsons = [stored(f"filler {i}") for i in range(40)]
    jsons[7], jsons[20] = escaped, stored("\uff21\uff50\uff50\uff4c\uff45 fullwidth")
    raw.call("append", "MESSAGES", *jsons)
    expected = {"apple": (2, 2), "café": (1, 1), "apple ok": (1, 2), "fullwidth apple": (1, 2)}
    for query, counts in expected.items():
        for mode, count in zip(("ALL", "ANY"), counts, strict=True):
            reply = raw.call("search", query, "MODE", mode, read_only=True)
            assert len(reply) // 2 == count, (query, mode)


def test_a_short_session_does_not_keep_its_text_twice(loaded: redis.Redis) -> None:
    """The index's pending records (the messages not yet folded, here all 40) are their
    stream ids: the index of a short session takes a fraction of its stream, and searches and
    the fold read the text from the stream (the same hits before and after the fold)."""
    import json as json_module

    from redis_chat_history import session_keys

    keys = session_keys("chat:", "short")
    texts = [f"message {i} about the weather in Paris " * 8 for i in range(40)]
    for text in texts:
        stored = json_module.dumps({"type": "human", "data": {"content": text}})
        loaded.fcall("chathist_append", 3, *keys, "MESSAGES", stored)
    stream = loaded.memory_usage(keys[0], samples=0)
    index = loaded.memory_usage(keys[1], samples=0)
    assert index < 0.5 * stream, (index, stream)
    assert all(
        len(value) < 32 for field, value in loaded.hscan_iter(keys[1]) if field.startswith(b"\0r")
    )
    before = loaded.fcall_ro("chathist_search", 3, *keys, "message 7", "LIMIT", 50)
    for i in range(40, 70):  # past 64 pending: a fold
        stored = json_module.dumps({"type": "human", "data": {"content": f"later {i}"}})
        loaded.fcall("chathist_append", 3, *keys, "MESSAGES", stored)
    after = loaded.fcall_ro("chathist_search", 3, *keys, "message 7", "LIMIT", 50)
    assert before == after and len(before) > 0


def test_pending_records_with_their_text_are_read_as_before(loaded: redis.Redis) -> None:
    """Pending records written by 1.5 hold their text (<id>\\0a<type>\\0<lower-cased text>):
    1.6 searches them and folds them as it does its own."""
    import json as json_module

    from redis_chat_history import session_keys

    keys = session_keys("chat:", "old-records")
    for i in range(10):
        stored = json_module.dumps({"type": "human", "data": {"content": f"Old Words {i}"}})
        loaded.fcall("chathist_append", 3, *keys, "MESSAGES", stored)
    for field, value in list(loaded.hscan_iter(keys[1])):
        if field.startswith(b"\0r") and b"\0" not in value:
            content = json_module.loads(loaded.xrange(keys[0], value, value)[0][1][b"m"])
            text = content["data"]["content"].lower().encode()
            loaded.hset(keys[1], field, value + b"\0ahuman\0" + text)
    hits = loaded.fcall_ro("chathist_search", 3, *keys, "words 3", "LIMIT", 50)
    assert len(hits) == 2 and b"Old Words 3" in hits[1]
    for i in range(60):  # a fold of old and new records together
        stored = json_module.dumps({"type": "human", "data": {"content": f"new {i}"}})
        loaded.fcall("chathist_append", 3, *keys, "MESSAGES", stored)
    assert loaded.fcall_ro("chathist_search", 3, *keys, "words 3", "LIMIT", 50) == hits


def test_a_pending_message_of_other_scripts_keeps_its_terms(loaded: redis.Redis) -> None:
    """A pending record of non-ASCII text keeps its terms (tokenizing them again at every
    search would cost far more than the search); an ASCII one is its stream id alone."""
    import json as json_module

    from redis_chat_history import session_keys

    keys = session_keys("chat:", "scripts")
    for text in ["天气很好 北京", "plain words here"]:
        stored = json_module.dumps({"type": "human", "data": {"content": text}}, ensure_ascii=False)
        loaded.fcall("chathist_append", 3, *keys, "MESSAGES", stored)
    records = sorted(v for f, v in loaded.hscan_iter(keys[1]) if f.startswith(b"\0r"))
    assert len(records) == 2
    assert sum(b"\0u\0" in value for value in records) == 1
    assert sum(b"\0" not in value for value in records) == 1
    assert len(loaded.fcall_ro("chathist_search", 3, *keys, "北京", "LIMIT", 5)) == 2
    assert len(loaded.fcall_ro("chathist_search", 3, *keys, "words", "LIMIT", 5)) == 2


def test_entries_added_around_the_library_are_found_after_a_reindex(loaded: redis.Redis) -> None:
    """As docs/PROTOCOL.md says: entries another client XADDs are never indexed, and a
    search may miss the library's messages stored just before them; a reindex finds all."""
    import json as json_module

    from redis_chat_history import RedisChatMessageHistory, session_keys

    keys = session_keys("chat:", "around")

    def stored(text: str) -> str:
        return json_module.dumps({"type": "human", "data": {"content": text}})

    loaded.fcall("chathist_append", 3, *keys, "MESSAGES", stored("alpha one"))
    for i in range(100):
        loaded.xadd(keys[0], {"m": stored(f"raw {i}")})
    for i in range(70):
        loaded.fcall("chathist_append", 3, *keys, "MESSAGES", stored(f"filler {i}"))
    pool = loaded.connection_pool.connection_kwargs
    history = RedisChatMessageHistory("around", redis_url=f"redis://{pool['host']}:{pool['port']}")
    history.reindex()
    assert len(loaded.fcall_ro("chathist_search", 3, *keys, "alpha", "LIMIT", 10)) == 2
    assert len(loaded.fcall_ro("chathist_search", 3, *keys, "raw", "LIMIT", 10)) == 20
