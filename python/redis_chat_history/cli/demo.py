"""The ``demo`` command: the seed notebook's flow, printed step by step."""

from __future__ import annotations

import click

from ._connect import friendly_errors, shown_url
from ._target import Target, command_options


@click.command()
@command_options(prefix=False)
@click.pass_obj
def demo(target: Target) -> None:
    """Store, read, search and clear a sample conversation, printing each step.

    Uses --url / $REDIS_URL when given, else a throwaway local redis-server.
    """
    from ..demo import run_demo  # LangChain is loaded only when the demo runs

    url = target.url if target.chosen else None
    with friendly_errors(shown_url(target.url) if url else "the local redis-server"):
        run_demo(url)
