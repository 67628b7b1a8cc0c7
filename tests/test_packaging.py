"""The wheel carries the Lua library, and the package's public names all import."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import redis_chat_history

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "redis_chat_history"


#: Every file the wheel may hold: the runtime modules, the type marker and the Lua library.
#: Benchmarks (benchmarks/) and test helpers (tests/) stay out of it.
WHEEL_PACKAGE_FILES = {
    "redis_chat_history/__init__.py",
    "redis_chat_history/_checkpoint_protocol.py",
    "redis_chat_history/_checkpoint_words.py",
    "redis_chat_history/checkpoint/__init__.py",
    "redis_chat_history/checkpoint/_ordering.py",
    "redis_chat_history/checkpoint/_payload.py",
    "redis_chat_history/checkpoint/_saver.py",
    "redis_chat_history/checkpoint/_shapes.py",
    "redis_chat_history/_clients.py",
    "redis_chat_history/_cluster.py",
    "redis_chat_history/_errors.py",
    "redis_chat_history/_jsonl.py",
    "redis_chat_history/_library.py",
    "redis_chat_history/_protocol.py",
    "redis_chat_history/_retry.py",
    "redis_chat_history/_transport.py",
    "redis_chat_history/_langchain.py",
    "redis_chat_history/agents.py",
    "redis_chat_history/cli/__init__.py",
    "redis_chat_history/cli/__main__.py",
    "redis_chat_history/cli/_connect.py",
    "redis_chat_history/cli/_group.py",
    "redis_chat_history/cli/_output.py",
    "redis_chat_history/cli/_target.py",
    "redis_chat_history/cli/demo.py",
    "redis_chat_history/cli/library.py",
    "redis_chat_history/cli/messages.py",
    "redis_chat_history/cli/sessions.py",
    "redis_chat_history/demo.py",
    "redis_chat_history/history.py",
    "redis_chat_history/local_server.py",
    "redis_chat_history/offline_model.py",
    "redis_chat_history/py.typed",
    "redis_chat_history/lua/chat_history.lua",
}
WHEEL_METADATA_FILES = {"METADATA", "WHEEL", "RECORD", "entry_points.txt"}


def test_wheel_holds_exactly_the_runtime_files(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path)]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-isolation")  # the backend is here: no download needed
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = tmp_path.glob("redis_chat_history-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        packaged = archive.read("redis_chat_history/lua/chat_history.lua")
        entry_points = archive.read(
            next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
        ).decode()
    metadata = {name for name in names if ".dist-info/" in name}
    assert names - metadata == WHEEL_PACKAGE_FILES
    assert {name.split("/", 1)[1] for name in metadata} == WHEEL_METADATA_FILES
    assert packaged == (ROOT / "lua" / "chat_history.lua").read_bytes()
    assert "redis-chat-history = redis_chat_history.cli:main" in entry_points


def test_library_source_is_the_repository_lua_file() -> None:
    expected = (ROOT / "lua" / "chat_history.lua").read_text(encoding="utf-8")
    assert redis_chat_history.library_source() == expected
    assert expected.startswith("#!lua name=chathist\n")


def test_every_public_name_imports() -> None:
    assert redis_chat_history.__all__
    assert len(set(redis_chat_history.__all__)) == len(redis_chat_history.__all__)
    for name in redis_chat_history.__all__:
        assert getattr(redis_chat_history, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from redis_chat_history import *", namespace)
    assert set(redis_chat_history.__all__) <= namespace.keys()


def test_public_errors_share_one_base() -> None:
    base = redis_chat_history.ChatHistoryError
    for name in redis_chat_history.__all__:
        value = getattr(redis_chat_history, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, base), name
    assert issubclass(redis_chat_history.InvalidInputError, ValueError)
    assert issubclass(redis_chat_history.RedisUnavailableError, ConnectionError)
    assert issubclass(redis_chat_history.LibraryIncompatibleError, redis_chat_history.LibraryError)


def imported_modules(code: str) -> list[str]:
    """The modules a fresh interpreter imports to run ``code`` (python -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]


def test_the_command_line_never_imports_langchain() -> None:
    modules = imported_modules("import redis_chat_history.cli")
    assert "redis_chat_history.cli" in modules
    assert not [name for name in modules if "langchain" in name]
    helped = imported_modules(
        "import sys\nfrom redis_chat_history.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert not [m for m in sys.modules if 'langchain' in m], sorted(sys.modules)"
    )
    assert not [name for name in helped if "langchain" in name]


def test_the_wire_layer_imports_only_the_standard_library() -> None:
    """_protocol does no I/O and knows no LangChain: it imports the standard library and
    the package's errors, nothing else."""
    tree = ast.parse((PACKAGE / "_protocol.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            imported.add("." * node.level + (module if node.level else module.split(".")[0]))
    assert imported <= {
        "__future__",
        "json",
        "re",
        "uuid",
        "collections",
        "dataclasses",
        "datetime",
        "typing",
        "._errors",
    }, imported


def test_langchain_names_are_imported_on_first_use() -> None:
    modules = imported_modules(
        "import redis_chat_history as r\nassert r.RedisChatMessageHistory.__name__"
    )
    assert "langchain_core.chat_history" in modules


def test_the_package_has_no_import_cycle() -> None:
    """No module of the package imports one that (directly or not) imports it back."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                target = f"{anchor}.{node.module}" if node.module else anchor
                graph[name] |= {f"{target}.{alias.name}" for alias in node.names}
                if node.module:
                    graph[name].add(target)
    graph = {name: {dep for dep in deps if dep in graph} for name, deps in graph.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, " -> ".join([*visiting[visiting.index(name) :], name])
        if name in done:
            return
        visiting.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
