"""The ``redis-chat-history`` command group: its options, and nothing registered by import."""

from __future__ import annotations

import click
from click.core import ParameterSource

from .. import _protocol as protocol
from ._target import Target, group_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@group_options
@click.version_option(
    package_name="redis-chat-history",
    message=f"%(prog)s %(version)s ({protocol.LIBRARY_NAME} library {protocol.LIBRARY_VERSION})",
)
@click.pass_context
def main(ctx: click.Context, url: str, retries: int, prefix: str) -> None:
    """Chat histories kept in Redis by the chathist Redis Functions library.

    --url, --retries and --prefix may come before or after the command.
    Errors are reported in one line on stderr with exit status 1 (2 for bad usage);
    a password in the URL is never printed.
    """
    source = ctx.get_parameter_source("url")
    chosen = source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    ctx.obj = Target(url=url, chosen=chosen, retries=retries, prefix=prefix)
