"""The commands that manage the library itself: ``load`` it, and tell its ``status``."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import _cluster as cluster
from .. import _protocol as protocol
from .._clients import cluster_unknown
from .._cluster import NodeLibrary
from ._connect import connected
from ._target import Target, command_options


def library_state(version: str | None) -> str:
    """``missing``, ``ok``, ``upgrade`` (older than this package: run ``load``) or
    ``incompatible`` (a newer major version, or not a version at all)."""
    if version is None:
        return "missing"
    try:
        return protocol.check_compatible(version)
    except ValueError:
        return "incompatible"


#: Which node's state a cluster's overall state takes: the first found in this order.
_WORST_FIRST = ("incompatible", "missing", "upgrade", "ok")


def status_report(where: str, nodes: list[NodeLibrary], cluster: bool) -> dict[str, Any]:
    """What ``status`` reports: the library on each node, and overall.

    Overall, ``state`` is the worst of the nodes' states and ``version`` the nodes'
    version when they all agree (else None).
    """
    states = [library_state(node.version) for node in nodes]
    state = next(worst for worst in _WORST_FIRST if worst in states)
    found = {node.version for node in nodes}
    version = found.pop() if len(found) == 1 else None
    return {
        "server": where,
        "library": protocol.LIBRARY_NAME,
        "loaded": all(node.version is not None for node in nodes),
        "version": version,
        "expected": protocol.LIBRARY_VERSION,
        "compatible": state == "ok",
        "state": state,
        "cluster": cluster,
        "nodes": [
            {"address": node.address, "role": node.role, "version": node.version, "state": each}
            for node, each in zip(nodes, states, strict=True)
        ],
    }


def node_line(node: dict[str, Any]) -> str:
    """One node of a cluster's status, for people."""
    text = _STATUS_TEXT[node["state"]].format(
        library=protocol.LIBRARY_NAME,
        version=node["version"],
        server=f"{node['address']} ({node['role']})",
        expected=protocol.LIBRARY_VERSION,
    )
    return text.split(", compatible with")[0]


_STATUS_TEXT = {
    "ok": "{library} {version} is loaded on {server}, compatible with this package "
    "({library} {expected})",
    "missing": "{library} is not loaded on {server}: run `redis-chat-history load`",
    "upgrade": "{library} {version} on {server} is older than this package's {expected}: "
    "run `redis-chat-history load`",
    "incompatible": "{library} {version} on {server} is not compatible with this package's "
    "{expected}: upgrade redis-chat-history",
}


def newer_than_shipped(version: str) -> bool:
    """Whether a server's library version is newer than the one this package ships."""
    try:
        return protocol.version_tuple(version) > protocol.version_tuple(protocol.LIBRARY_VERSION)
    except ValueError:
        return False


@click.command()
@command_options(prefix=False)
@click.option("--force", is_flag=True, help="Replace even a newer chathist library (a downgrade).")
@click.pass_obj
def load(target: Target, force: bool) -> None:
    """Load this package's chathist library into Redis (FUNCTION LOAD REPLACE).

    Safe to repeat. A newer version already on the server is left alone unless --force.
    On Redis Cluster the library goes to every primary (functions are not shared between
    shards; replicas get it from their primary), then every node, replicas included, is
    checked and listed with its version. A node that turns out to be a replica (READONLY)
    or stops answering mid-failover is passed over (noted on stderr) and the topology read
    again; a node still without the library after 10 s is an error.
    """
    with connected(target) as transport:
        nodes = transport.node_libraries(reachable=True)
        for node in nodes:
            if node.version is not None and newer_than_shipped(node.version) and not force:
                raise click.ClickException(
                    f"{node.address} runs {protocol.LIBRARY_NAME} {node.version}, newer than "
                    f"this package's {protocol.LIBRARY_VERSION}: upgrade redis-chat-history, "
                    "or pass --force to replace it anyway"
                )
        if not cluster.is_cluster(transport.client):
            transport.load()
            click.echo(
                f"loaded {protocol.LIBRARY_NAME} {protocol.LIBRARY_VERSION} on {transport.where}"
            )
            if cluster_unknown(target.url):
                click.echo(
                    "warning: this Redis user may not run INFO, so a Redis Cluster cannot be "
                    "told apart: on a cluster, allow INFO, CLUSTER NODES, CLUSTER SLOTS and "
                    "COMMAND too and run load again, or the other primaries lack the library",
                    err=True,
                )
            return
        deployment = transport.deploy()
    for node in deployment.nodes:
        click.echo(f"{node.address} {node.role} {protocol.LIBRARY_NAME} {node.version}")
    for skipped in deployment.skipped:
        click.echo(f"note: passed over {skipped.address}: {skipped.reason}", err=True)
    click.echo(
        f"loaded {protocol.LIBRARY_NAME} {protocol.LIBRARY_VERSION} on "
        f"{len(deployment.loaded)} primaries; {len(deployment.nodes)} nodes verified"
    )


@click.command()
@command_options(prefix=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Tell whether the chathist library is loaded, its version, and if it fits this package.

    On Redis Cluster: one line per node, primaries and replicas (--json: a `nodes` list).

    \b
    Exit status:
      0  the library is loaded and compatible with this package
      1  it is missing, older than this package (run `load`), of a newer
         major version (upgrade this package), or Redis did not answer
    """
    target: Target = ctx.obj
    with connected(target) as transport:
        is_cluster = cluster.is_cluster(transport.client)
        report = status_report(transport.where, transport.node_libraries(), is_cluster)
    if as_json:
        click.echo(json.dumps(report))
    elif is_cluster:
        for node in report["nodes"]:
            click.echo(node_line(node))
    else:
        click.echo(_STATUS_TEXT[report["state"]].format(**report))
    ctx.exit(0 if report["compatible"] else 1)
