"""``python -m redis_chat_history.cli``: the ``redis-chat-history`` command."""

from . import main

main()
