"""Which Redis the commands talk to, and how: the ``--url``, ``--retries`` and ``--prefix``
options, accepted before the command (on the group) or after it (on the command).

The group's options carry the defaults and ``REDIS_URL``; a command's copy of an option
has no default, and when given it replaces the group's value in the :class:`Target`
the command receives (``click.pass_obj``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from .._clients import DEFAULT_URL
from .._protocol import DEFAULT_KEY_PREFIX
from .._retry import DEFAULT_RETRY, MAX_RETRIES

F = TypeVar("F", bound=Callable[..., Any])

URL_HELP = "The Redis: redis://[[user]:password@]host[:port][/db], rediss://... or unix:///path."
RETRIES_HELP = (
    "Retries after a transient failure (connection lost, timeout, LOADING, BUSY, "
    "READONLY), with exponential backoff up to 1 s."
)
PREFIX_HELP = "Prefix of the sessions' keys (RedisChatMessageHistory's key_prefix)."


@dataclass(frozen=True, slots=True)
class Target:
    """The Redis the commands talk to, and whether the user named it (``--url`` or $REDIS_URL)."""

    url: str
    chosen: bool
    retries: int = DEFAULT_RETRY.retries
    prefix: str = DEFAULT_KEY_PREFIX


def group_options(function: F) -> F:
    """``--url`` (or $REDIS_URL), ``--retries`` and ``--prefix`` on the group, with defaults."""
    options = [
        click.option(
            "--url",
            envvar="REDIS_URL",
            default=DEFAULT_URL,
            show_default=True,
            show_envvar=True,
            metavar="URL",
            help=URL_HELP,
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, MAX_RETRIES),
            default=DEFAULT_RETRY.retries,
            show_default=True,
            help=RETRIES_HELP,
        ),
        click.option("--prefix", default=DEFAULT_KEY_PREFIX, show_default=True, help=PREFIX_HELP),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _override(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A connection option given after the command: it replaces the group's value."""
    if value is None or param.name is None:
        return
    target = ctx.find_object(Target)
    if target is None:  # the command was invoked on its own, without the group
        target = Target(url=DEFAULT_URL, chosen=False)
    changes: dict[str, Any] = {param.name: value}
    if param.name == "url":
        changes["chosen"] = True
    ctx.obj = dataclasses.replace(target, **changes)


def _after(*names: str, help: str, **settings: Any) -> Callable[[F], F]:
    return click.option(
        *names, default=None, expose_value=False, callback=_override, help=help, **settings
    )


def command_options(*, prefix: bool = True) -> Callable[[F], F]:
    """The group's connection options, also accepted after a command's name."""

    def decorate(function: F) -> F:
        options = [
            _after("--url", metavar="URL", help=f"{URL_HELP} [default: as before the command]"),
            _after(
                "--retries",
                type=click.IntRange(0, MAX_RETRIES),
                help="Retries after a transient failure [default: as before the command].",
            ),
        ]
        if prefix:
            options.append(
                _after("--prefix", help=f"{PREFIX_HELP} [default: {DEFAULT_KEY_PREFIX}]")
            )
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def session_command(function: F) -> F:
    """Add the SESSION argument and the connection options shared by commands on one session."""
    return click.argument("session")(command_options()(function))
