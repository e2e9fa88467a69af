"""`coord token create` and `coord token list`: scoped bearer tokens for the HTTP side.

    coord token create NAME --scope read [--scope operate ...] [--dataset 'fivetran.*' --producer fivetran]
                            [--append-to tokens.jsonl]
        prints the token once (it is stored nowhere) and the `{name, hash, scopes}` line to put
        in COORD_TOKENS (a JSON list of such objects) or as a line of COORD_TOKENS_FILE
    coord token list        the configured tokens: name, scopes, datasets, producer (never a hash)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from coordinator.cli.context import cli_settings
from coordinator.errors import CoordinatorError
from coordinator.tokens import SCOPES, TokenEntry, hash_token, new_token, read_tokens_file

app = typer.Typer(help="Scoped bearer tokens: create one, list the configured ones.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The token's name, which the audit records (A-Z a-z 0-9 _ -)")],
    scope: Annotated[list[str], typer.Option("--scope", "-s", help=f"{', '.join(SCOPES)}; repeatable")],
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", help="publish: a dataset pattern (fnmatch); repeatable")
    ] = None,
    producer: Annotated[str | None, typer.Option(help="publish: the producer its events must name")] = None,
    append_to: Annotated[
        Path | None, typer.Option("--append-to", help="also append the entry as a line of this tokens file")
    ] = None,
) -> None:
    """Make a token: print it once, and the entry (its hash) to configure."""
    bad = [s for s in scope if s not in SCOPES]
    if bad:
        raise CoordinatorError(f"unknown scope {bad[0]!r}: give one of {', '.join(SCOPES)}")
    token = new_token(name)
    fields = {"name": name, "hash": hash_token(token), "scopes": list(dict.fromkeys(scope))}
    if dataset:
        fields["datasets"] = list(dataset)
    if producer:
        fields["producer"] = producer
    try:
        entry = TokenEntry.model_validate(fields)
    except ValidationError as exc:
        problems = (e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise CoordinatorError("; ".join(problems)) from None
    line = json.dumps(entry.model_dump(exclude_defaults=True))
    if append_to is not None:
        if append_to.exists() and any(e.name == name for e in read_tokens_file(append_to)):
            raise CoordinatorError(f"{append_to} has a token named {name!r} already")
        with append_to.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
    typer.echo(f"token (shown once, keep it secret): {token}")
    where = f" (appended to {append_to})" if append_to else ""
    typer.echo(f"entry for COORD_TOKENS or a line of COORD_TOKENS_FILE{where}:")
    typer.echo(line)


@app.command("list")
def list_tokens() -> None:
    """The configured tokens (COORD_TOKENS, COORD_TOKENS_FILE, COORD_API_TOKEN) and their scopes."""
    settings = cli_settings()
    entries = list(settings.tokens)
    if settings.tokens_file is not None:
        entries += read_tokens_file(settings.tokens_file)
    if settings.api_token is not None:
        typer.echo("api  admin  (COORD_API_TOKEN)")
    for e in entries:
        bounds = f"  datasets {', '.join(e.datasets)} as {e.producer}" if e.datasets else ""
        typer.echo(f"{e.name}  {', '.join(e.scopes)}{bounds}")
    if not entries and settings.api_token is None:
        typer.echo("no tokens configured (COORD_TOKENS, COORD_TOKENS_FILE)")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="token")
