"""A LangGraph checkpointer on plain Redis 7+, whose threads are chat sessions.

Needs the ``langgraph`` extra (``pip install "redis-chat-history[langgraph]"``).
"""

from ._saver import RedisChatSaver

__all__ = ["RedisChatSaver"]
