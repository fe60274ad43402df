"""``precovery keys create|list|revoke``: the API's keys (docs/api.md).

The full key is printed once, by ``create``; the file keeps only a salted hash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipelines.cli import options
from pipelines.cli.console import console, fail
from pipelines.cli.options import STATE_DIR, StateDir
from predictor.errors import PrecoveryError

if TYPE_CHECKING:
    from serve.auth import KeyStore

keys_app = typer.Typer(
    name="keys",
    help="API keys: create (printed once), list, revoke.",
    no_args_is_help=True,
    add_completion=False,
)

KeysFile = Annotated[
    Path | None,
    typer.Option(
        "--keys-file",
        envvar="PRECOVERY_API__KEYS_FILE",
        help="Key file (default <state-dir>/api-keys.json)",
    ),
]


def _store(keys_file: Path | None, state_dir: Path) -> KeyStore:
    from serve.auth import KeyStore

    return KeyStore(keys_file or state_dir / "api-keys.json")


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who holds it, e.g. orchestrator-ny4")],
    role: Annotated[
        str, typer.Option(envvar="PRECOVERY_KEY_ROLE", help="read, operate or admin")
    ] = "read",
    rate: Annotated[
        float | None,
        typer.Option(
            envvar="PRECOVERY_KEY_RATE",
            help="Requests/s for this key (default: the setting)",
        ),
    ] = None,
    keys_file: KeysFile = None,
    state_dir: StateDir = STATE_DIR,
) -> None:
    """Create a key; prints it once (store it now: only its hash is kept)."""
    try:
        store = _store(keys_file, state_dir)
        record, secret = store.create(name, role, rate)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    console.print(f"created key {record.id} ({record.role}) for {record.name} in {store.path}")
    console.print("the key (shown once):", style="bold")
    typer.echo(secret)


@keys_app.command("list")
def list_keys(
    json_out: Annotated[bool, options.json_lines("As JSON lines")] = False,
    keys_file: KeysFile = None,
    state_dir: StateDir = STATE_DIR,
) -> None:
    """Keys with id, name, role, creation and revocation (never secrets or hashes)."""
    try:
        store = _store(keys_file, state_dir)
        keys = store.keys()
    except PrecoveryError as exc:
        raise fail(exc) from exc
    for k in keys:
        if json_out:
            typer.echo(json.dumps(k.public()))
        else:
            state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
            typer.echo(f"{k.id}  {k.role:<8} {k.name:<24} created {k.created_at}  {state}")
    if not keys and not json_out:
        console.print("no API keys: servers run open, on loopback only")


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (precovery keys list)")],
    keys_file: KeysFile = None,
    state_dir: StateDir = STATE_DIR,
) -> None:
    """Revoke a key: running servers refuse it within a second."""
    try:
        store = _store(keys_file, state_dir)
        k = store.revoke(key_id)
    except PrecoveryError as exc:
        raise fail(exc) from exc
    console.print(f"revoked key {k.id} ({k.role}, {k.name}) at {k.revoked_at}")
