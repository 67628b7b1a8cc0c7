"""The saver's compact task ids and task paths: every name reads back as it was sent, none
holds a NUL (the library refuses one in a task id), and LangGraph's names shrink."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redis_chat_history._checkpoint_words import WORDS, decode_name, encode_name
from redis_chat_history._errors import ChatHistoryError

NAMES = st.one_of(
    st.text(),
    st.sampled_from(WORDS).flatmap(lambda word: st.text().map(lambda rest: word + rest)),
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.text().map(lambda rest: "\x02" + rest),
)


@given(NAMES)
def test_every_name_reads_back_and_holds_no_nul_it_did_not(name: str) -> None:
    stored = encode_name(name)
    assert decode_name(stored) == name
    assert (b"\0" in stored) == ("\0" in name)


def test_langgraph_names_shrink() -> None:
    task_id = str(uuid.uuid4())
    assert len(encode_name(task_id)) == 19
    assert encode_name("~__pregel_pull, model") == b"\x02" + bytes(
        [3 + WORDS.index("~__pregel_pull, model")]
    )
    assert (
        encode_name("~__pregel_pull, writer")
        == b"\x02" + bytes([3 + WORDS.index("~__pregel_pull, ")]) + b"writer"
    )
    assert encode_name("task1") == b"task1"  # another name as it is


@pytest.mark.parametrize(
    "stored",
    [b"\x02\x02" + b"\x01" * 16, b"\x02\x02" + b"\xff" * 17, b"\x02\xfe", b"\x02\x02\x00" * 17],
)
def test_a_malformed_stored_name_is_an_error(stored: bytes) -> None:
    with pytest.raises(ChatHistoryError):
        decode_name(stored)
