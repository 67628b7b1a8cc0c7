"""The seed notebook's code cells (langchain-redis's "Redis Chat Message History"), as a script.

A faithful copy, run by tests/test_demo.py as a subprocess with REDIS_URL set, to show
that this package is a drop-in for ``langchain_redis.RedisChatMessageHistory``. Every
change from the notebook is marked ``# SUBSTITUTION``:

1. ``from langchain_redis import RedisChatMessageHistory`` imports this package instead.
2. ``from langchain_openai import ChatOpenAI`` may fail (not installed): then ChatOpenAI
   is None, and 4. applies.
3. The API-key cell does not prompt with getpass when no key is set (there is no
   terminal in a test); it prints the notebook's first line and goes on without a key.
4. ``llm = ChatOpenAI()`` becomes the offline deterministic model when langchain-openai
   or the key is missing.

The notebook's first cell (``%pip install -qU langchain-redis langchain-openai redis``) is
IPython, not Python, and is left out.
"""
# ruff: noqa: E402  (imports stay where the notebook's cells put them)

import os

# Use the environment variable if set, otherwise default to localhost
REDIS_URL = os.getenv("REDIS_URL", "redis://localhost:6379")
print(f"Connecting to Redis at: {REDIS_URL}")

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, HumanMessage  # noqa: F401  (as in the notebook)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

# SUBSTITUTION 2: langchain-openai is optional here.
try:
    from langchain_openai import ChatOpenAI
except ImportError:
    ChatOpenAI = None

# SUBSTITUTION 1: was `from langchain_redis import RedisChatMessageHistory`.
from redis_chat_history import RedisChatMessageHistory

# Initialize RedisChatMessageHistory
history = RedisChatMessageHistory(session_id="user_123", redis_url=REDIS_URL)

# Add messages to the history
history.add_user_message("Hello, AI assistant!")
history.add_ai_message("Hello! How can I assist you today?")

# Retrieve messages
print("Chat History:")
for message in history.messages:
    print(f"{type(message).__name__}: {message.content}")

# SUBSTITUTION 3: `from getpass import getpass` and its prompt are left out.

# Check if OPENAI_API_KEY is already set in the environment
openai_api_key = os.getenv("OPENAI_API_KEY")

if not openai_api_key:
    print("OpenAI API key not found in environment variables.")
    # SUBSTITUTION 3: the notebook asks with getpass here, sets OPENAI_API_KEY and prints
    # "OpenAI API key has been set for this session."; this script goes on without a key.
else:
    print("OpenAI API key found in environment variables.")

# Create a prompt template
prompt = ChatPromptTemplate.from_messages(
    [
        ("system", "You are a helpful AI assistant."),
        MessagesPlaceholder(variable_name="history"),
        ("human", "{input}"),
    ]
)

# Initialize the language model
# SUBSTITUTION 4: was `llm = ChatOpenAI()`.
if ChatOpenAI is not None and os.getenv("OPENAI_API_KEY"):
    llm = ChatOpenAI()
else:
    from redis_chat_history.offline_model import OfflineChatModel

    llm = OfflineChatModel()

# Create the conversational chain
chain = prompt | llm


# Function to get or create a RedisChatMessageHistory instance
def get_redis_history(session_id: str) -> BaseChatMessageHistory:
    return RedisChatMessageHistory(session_id, redis_url=REDIS_URL)


# Create a runnable with message history
chain_with_history = RunnableWithMessageHistory(
    chain, get_redis_history, input_messages_key="input", history_messages_key="history"
)

# Use the chain in a conversation
response1 = chain_with_history.invoke(
    {"input": "Hi, my name is Alice."},
    config={"configurable": {"session_id": "alice_123"}},
)
print("AI Response 1:", response1.content)

response2 = chain_with_history.invoke(
    {"input": "What's my name?"}, config={"configurable": {"session_id": "alice_123"}}
)
print("AI Response 2:", response2.content)

# Initialize with custom Redis configuration
custom_history = RedisChatMessageHistory(
    "user_456",
    redis_url=REDIS_URL,
    key_prefix="custom_prefix:",
    ttl=3600,  # Set TTL to 1 hour
    index_name="custom_index",
)

custom_history.add_user_message("This is a message with custom configuration.")
print("Custom History:", custom_history.messages)

# Add more messages
history.add_user_message("Tell me about artificial intelligence.")
history.add_ai_message("Artificial Intelligence (AI) is a branch of computer science...")

# Search for messages containing a specific term
search_results = history.search_messages("artificial intelligence")
print("Search Results:")
for result in search_results:
    print(f"{result['type']}: {result['content'][:50]}...")

# Clear the chat history
history.clear()
print("Messages after clearing:", history.messages)
