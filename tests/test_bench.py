"""The benchmarks run end to end with tiny sizes and write JSON of the documented shape.

No timing is asserted (this is a shared, noisy machine): only that every workload ran,
the figures are numbers, the goals carry a status, and nothing of the benchmark's is
left on the server.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from benchmarks.__main__ import main
from benchmarks.compare import run_comparison
from benchmarks.corpus import Corpus, rare_and_common, word_tokens
from benchmarks.peers import peer_setup
from benchmarks.search_index import SearchSettings, run_search_bench
from benchmarks.workloads import Settings

TINY = Settings(
    repeats=1,
    min_seconds=0.0,
    read_sizes=(10, 30),
    latest_size=60,
    window=5,
    processes=1,
    load_sessions=3,
    load_seconds=0.2,
    turn_sessions=2,
)


def test_corpus_is_deterministic_realistic_chat_text() -> None:
    first, second = Corpus().messages(200), Corpus().messages(200)
    assert [m.content for m in first] == [m.content for m in second]
    assert [m.type for m in first[:4]] == ["human", "ai", "human", "ai"]
    words = [len(str(m.content).split()) for m in first]
    assert 25 <= sum(words) / len(words) <= 45
    stored = json.loads(Corpus().jsons(1)[0])
    assert stored["type"] == "human" and stored["data"]["content"] == first[0].content
    rare, common = rare_and_common(first)
    assert rare != common
    assert sum(rare in word_tokens(str(m.content)) for m in first) <= 5


def test_comparison_writes_every_workload(redis_url: str, tmp_path: Path) -> None:
    lines: list[str] = []
    document = run_comparison(redis_url, TINY, tmp_path, chart=True, load=True, echo=lines.append)
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["kind"] == "comparison" == document["kind"]
    stores = set(written["stores"])
    assert {"ours", "floor"} <= stores
    workloads = {row["workload"] for row in written["rows"]}
    assert workloads >= {
        "append_1",
        "append_turn",
        "runnable_turn",
        "read_10",
        "read_30",
        "read_latest",
        "search",
        "memory",
        "append_by_size",
    }
    for row in written["rows"]:
        if "median_us" in row:
            assert row["median_us"] > 0 and row["server_usec_per_op"] >= 0
            assert row["work_us"] >= row["server_usec_per_op"]
    rows = {(row["workload"], row["store"]): row for row in written["rows"]}
    assert rows["runnable_turn", "ours"]["commands_per_op"] == 2.0
    assert rows["runnable_turn", "floor"]["commands_per_op"] == 3.0
    assert set(written["load"]) == stores
    assert all(result["turns"] > 0 for result in written["load"].values())
    assert {goal["status"] for goal in written["goals"]} <= {"PASS", "FAIL", "n/a", "info"}
    assert len([g for g in written["goals"] if g["store"] == "ours"]) == 6
    if "langchain-community" not in stores:
        assert any("langchain-community not run" in note for note in written["notes"])
    assert any("langchain-redis" in note for note in written["notes"])
    assert "goals (medians)" in "\n".join(lines)
    assert (tmp_path / "bench.txt").read_text().startswith("workload / store")
    assert not redis.Redis.from_url(redis_url).keys("bench:*")


def test_search_benchmark_reports_each_goal(redis_url: str, tmp_path: Path) -> None:
    settings = SearchSettings(messages=200, window_sizes=(100, 200), calls=2, window=10)
    document = run_search_bench(redis_url, settings, tmp_path, echo=lambda _: None)
    written = json.loads((tmp_path / "search.json").read_text())
    assert written == json.loads(json.dumps(document, default=str))
    assert len(written["goals"]) == 7
    assert set(written["queries"]) == {"rare", "common", "two words"}
    assert written["search"]["index"]["rare"]["hits"] >= 1
    assert written["memory"]["index"]["ratio"] > 0
    if written["index_available"]:
        assert {g["status"] for g in written["goals"]} <= {"PASS", "FAIL"}
        assert set(written["append_usec"]) == {"index", "noindex"}
    else:
        assert {g["status"] for g in written["goals"]} == {"n/a"}
        assert any("index not available" in note for note in written["notes"])
    assert set(written["slowest_append_usec"]) == set(written["append_usec"])
    client = redis.Redis.from_url(redis_url)
    assert not client.keys("bench-search:*")
    assert client.config_get("slowlog-log-slower-than") == {"slowlog-log-slower-than": "10000"}


def test_command_line_refuses_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--sizes", "10,x"])
    assert stopped.value.code == 2
    assert re.search(r"not a comma-separated list", capsys.readouterr().err)


def test_comparison_with_peers_reports_them_on_the_same_server(tmp_path: Path) -> None:
    setup = peer_setup()
    if isinstance(setup, str):
        pytest.skip(f"langchain-redis peers not available: {setup}")
    document = run_comparison(
        None, TINY, tmp_path, chart=False, load=False, echo=lambda _: None, peers=True
    )
    assert "error" not in document["peers"], document["peers"]
    assert document["environment"]["valkey_server"].startswith("8.")
    rows = {(row["workload"], row["store"]): row for row in document["rows"]}
    for peer in ("langchain-redis", "langgraph-checkpoint-redis"):
        assert peer in document["stores"]
        for workload in ("append_1", "append_turn", "runnable_turn", "read_30", "search"):
            assert rows[workload, peer]["median_us"] > 0
        assert rows["memory", peer]["bytes_per_message"] > 0
    assert ("runnable_turn", "ours") in rows and ("read_30", "floor") in rows


def test_bounded_bench_measures_every_function_and_goal(redis_url: str, tmp_path: Path) -> None:
    from benchmarks.bounded import QUERIES, BoundedSettings, run_bounded_bench

    settings = BoundedSettings(
        sizes=(300,),
        repeats=1,
        neighbour_seconds=0.5,
        neighbour_size=200,
        append_calls=50,
        retry_state_messages=400,
    )
    lines: list[str] = []
    run_bounded_bench(redis_url, settings, tmp_path, echo=lines.append)
    written = json.loads((tmp_path / "bounded.json").read_text())
    functions = {row["function"] for row in written["worst"]}
    assert {label for label, _, _ in QUERIES} <= functions
    assert {"append a turn", "reindex (each step)", "trim to 10 (each write)"} <= functions
    assert all(row["worst_ms"] > 0 and row["calls"] > 0 for row in written["worst"])
    assert {"ours", "floor"} <= set(written["neighbour"])
    assert written["append"]["floor_us"] > 0 and written["append"]["retry_state_ratio"] >= 0
    assert written["read"]["ours_ms"] > 0
    text = (tmp_path / "bounded.txt").read_text()
    assert "Worst call per function" in text and "goal" in text
    assert not redis.Redis.from_url(redis_url).keys("bounded:*")
