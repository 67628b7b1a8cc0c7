"""A checkpoint record's payload: the serialized checkpoint, metadata, parent id and
small channel values, deflated with a preset dictionary.

Only clients read a payload (the library reads the record's header), so its form is
this module's business. A payload is a checkpoint's bookkeeping more than its data:
channel names, versions, node names and metadata keys that every record of a graph
repeats. Raw deflate with a dictionary of those words stores a create_agent record in
about a fifth of its serialized bytes; without a dictionary, deflate alone saves little
on a few hundred bytes. The dictionary is part of the format: ``MARK`` names it, and a
new dictionary needs a new mark (records stored with the old one must stay readable).
A payload without the mark (written before 1.5 of this package, or one that deflate
did not shrink) is the serialized bytes themselves.

The saver packs channel values stored on their own and pending writes the same way
(since 1.7 of the library), except lists of messages and values it may shape: those the
library reads or replaces by their SHA-1.
"""

from __future__ import annotations

import zlib

#: Starts a payload deflated with :data:`DICTIONARY_1` (written before 1.8 of the library);
#: serialized bytes start with a serde type name, never \x01.
MARK_1 = b"\x01z1\0"
#: Starts a payload deflated with :data:`DICTIONARY` (what :func:`pack` writes).
MARK = b"\x01z2\0"

#: The preset dictionary of ``MARK_1`` (fixed: records deflated with it depend on it).
#: Words LangGraph's checkpoints and metadata repeat, then a create_agent record's
#: serialized bytes (deflate finds matches best near the dictionary's end).
DICTIONARY_1 = (
    b"__interrupt____resume____error____scheduled____no_writes__~__pregel_push~__pregel_p"
    b"ullcheckpoint_nscheckpoint_idthread_idrun_idupdatefork\xa5error\xa6writesbranch:to:"
    b"\xa4json\xa6pickle\xa5empty\xa4null\x00msgpack\x00\x84\xa1c\x85\xa1v\x04\xa2ts\xd9 "
    b"2026-12-06T01:21:50.895094+00:00\xb0channel_versions\x84\xa9__start__\xb100000027.e"
    b"f516257\xa8messages\xb100000027.ef516257\xafbranch:to:model\xb100000027.ef516257"
    b"\xae__pregel_tasks\xb100000024.cb339aa2\xadversions_seen\x84\xa9__input__\x80\xa9__"
    b"start__\x81\xa9__start__\xb100000026.a86935d7\xa5model\x81\xafbranch:to:model\xb100"
    b"000024.cb339aa2\xa5tools\x80\xb0updated_channels\x92\xafbranch:to:model\xa8messages"
    b"\xa1m\x84\xa6source\xa4loop\xa4step\x19\xa7parents\x80\xaels_integration\xb6langcha"
    b"in_create_agent\xa1p\xd9$1f1f1136-9ebe-6f05-8018-28090defc1e6\xa1v\x82\xafbranch:to"
    b":model\xc4\x05null\x00\xae__pregel_tasks\xc4\tmsgpack\x00\x90msgpack\x00\x84\xa1c"
    b"\x85\xa1v\x04\xa2ts\xd9 2026-12-06T01:21:50.897973+00:00\xb0channel_versions\x84"
    b"\xa9__start__\xb100000027.ef516257\xa8messages\xb100000028.e7230e20\xafbranch:to:mo"
    b"del\xb100000028.e7230e20\xae__pregel_tasks\xb100000028.e7230e20\xadversions_seen"
    b"\x84\xa9__input__\x80\xa9__start__\x81\xa9__start__\xb100000026.a86935d7\xa5model"
    b"\x81\xafbranch:to:model\xb100000027.ef516257\xa5tools\x80\xb0updated_channels\x92"
    b"\xae__pregel_tasks\xa8messages\xa1m\x84\xa6source\xa4loop\xa4step\x1a\xa7parents"
    b"\x80\xaels_integration\xb6langchain_create_agent\xa1p\xd9$1f1f1136-9ec2-600a-8019-2"
    b"f3896049b8d\xa1v\x81\xae__pregel_tasks\xc4_msgpack\x00\x91\xc7S\x01\x93\xaflanggrap"
    b"h.types\xa4Send\x92\xa5tools\x91\x84\xa4name\xa6lookup\xa4args\x81\xa5query\xa2q5"
    b"\xa2id\xa6call_5\xa4type\xa9tool_call"
)

#: The preset dictionary of ``MARK`` (fixed too): ``DICTIONARY_1`` without its timestamps
#: (a checkpoint's ``ts`` is stored as a number since), then what a create_agent thread
#: repeats now: the template of an input (a shaped ``{"messages": [{"role": "user",
#: "content": ...}]}``), and the bodies of an input checkpoint and of two loop steps as the
#: saver stores them. About 30% fewer bytes than ``DICTIONARY_1`` on an agent's records,
#: and a sixth of the bytes on templates.
DICTIONARY = (
    DICTIONARY_1.replace(b"\xa2ts\xd9 2026-12-06T01:21:50.895094+00:00", b"").replace(
        b"\xa2ts\xd9 2026-12-06T01:21:50.897973+00:00", b""
    )
) + (
    b"msgpack\x00\x81\xa8messages\x91\x82\xa4role\xa4user\xa7content\xb1\x00\x01chathist-t"
    b"ext:0msgpack\x00\x83\xa1c\x85\xa1v\x04\xb0channel_versions\x81\xa9__start__\xc0\xadv"
    b"ersions_seen\x81\xa9__input__\x80\xb0updated_channels\x91\xa9__start__\xa1t\xcf\x00"
    b"\x06a\xfel\xb3\x93\xa6\xa1m\x84\xa6source\xa5input\xa4step\xff\xa7parents\x80\xaels_"
    b"integration\xb6langchain_create_agent\xa1p\xc0msgpack\x00\x83\xa1c\x85\xa1v\x04\xb0c"
    b"hannel_versions\x84\xa9__start__\xa800000067\xa8messages\xa800000069\xafbranch:to:mo"
    b"del\xa800000069\xae__pregel_tasks\xa800000069\xadversions_seen\x84\xa9__input__\x80"
    b"\xa9__start__\x81\xa9__start__\xa800000066\xa5model\x81\xafbranch:to:model\xa8000000"
    b"67\xa5tools\x80\xb0updated_channels\x92\xafbranch:to:model\xa8messages\xa1t\xcf\x00"
    b"\x06a\xfel\xb7AK\xa1m\x84\xa6source\xa4loop\xa4stepC\xa7parents\x80\xaels_integratio"
    b"n\xb6langchain_create_agent\xa1v\x82\xafbranch:to:model\xc4\x05null\x00\xae__pregel_"
    b"tasks\xc4\x09msgpack\x00\x90msgpack\x00\x83\xa1c\x85\xa1v\x04\xb0channel_versions"
    b"\x84\xa9__start__\xa800000067\xa8messages\xa800000070\xafbranch:to:model\xa800000070"
    b"\xae__pregel_tasks\xa800000069\xadversions_seen\x84\xa9__input__\x80\xa9__start__"
    b"\x81\xa9__start__\xa800000066\xa5model\x81\xafbranch:to:model\xa800000069\xa5tools"
    b"\x80\xb0updated_channels\x91\xa8messages\xa1t\xcf\x00\x06a\xfel\xb7L\xf2\xa1m\x84"
    b"\xa6source\xa4loop\xa4stepD\xa7parents\x80\xaels_integration\xb6langchain_create_age"
    b"nt\xa1v\x81\xae__pregel_tasks\xc4\x09msgpack\x00\x90"
)
_DICTIONARIES = {MARK: DICTIONARY, MARK_1: DICTIONARY_1}

_WINDOW = -15  # raw deflate: no zlib header or checksum (the record is small)


def pack(serialized: bytes) -> bytes:
    """The payload of ``serialized`` (a serde-typed body): deflated with the dictionary
    when that is shorter, else as it is."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, _WINDOW, 9, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
    deflated = MARK + deflater.compress(serialized) + deflater.flush()
    return deflated if len(deflated) < len(serialized) else serialized


def unpack(payload: bytes) -> bytes:
    """The serialized body a payload holds (any form)."""
    dictionary = _DICTIONARIES.get(payload[: len(MARK)])
    if dictionary is None:
        return payload
    inflater = zlib.decompressobj(_WINDOW, dictionary)
    return inflater.decompress(payload[len(MARK) :]) + inflater.flush()
