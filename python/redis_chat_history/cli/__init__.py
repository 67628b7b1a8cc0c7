"""The ``redis-chat-history`` command: load the library, check it, read and manage sessions.

Every command is a small function in the module of its kind (``library``, ``messages``,
``sessions``, ``demo``) over three shared pieces: ``_target`` (which Redis, from
``--url`` / ``--retries`` / ``--prefix`` before or after the command), ``_connect`` (a
fresh client per run, errors as one line) and ``_output``. The commands are added to
:data:`main` here, explicitly; no module registers anything by being imported.
LangChain is not imported unless ``demo`` runs.
"""

from __future__ import annotations

from ._group import main
from .demo import demo
from .library import load, status
from .messages import clear, delete, reindex, search, show, ttl_command
from .sessions import export, import_sessions, list_sessions, tail

for _command in (
    load,
    status,
    show,
    search,
    reindex,
    clear,
    demo,
    list_sessions,
    export,
    import_sessions,
    tail,
    delete,
    ttl_command,
):
    main.add_command(_command)

__all__ = ["main"]
