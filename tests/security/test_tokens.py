"""Tokens at rest: scrypt hashes, the tokens file, and `coord token create` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coordinator.api.app import create_app
from coordinator.errors import SettingsError
from coordinator.settings import Settings
from coordinator.store import StateStore
from coordinator.tokens import hash_token, read_tokens_file, verify
from tests.security.conftest import SPEC

COORD = [str(Path(sys.executable).parent / "coord")]


def test_a_hash_verifies_its_token_only() -> None:
    token = "coord.ci.0123456789abcdefghijklmnopqrstuvwxyzABCDE"
    stored = hash_token(token)
    assert stored.startswith("scrypt$16384$8$1$") and token not in stored
    assert verify(token, stored)
    assert hash_token(token) != stored  # salted
    assert not verify(token + "x", stored) and not verify(token[:-1], stored)
    algo, n, r, p, salt, digest = stored.split("$")
    # the first character: all six of its bits are the digest's (the one before "==" holds
    # padding bits too, so changing it may decode to the same bytes)
    flipped = ("A" if digest[0] != "A" else "B") + digest[1:]
    assert not verify(token, "$".join([algo, n, r, p, salt, flipped]))
    assert not verify(token, "scrypt$garbage") and not verify(token, "")


def test_the_tokens_file_is_read_line_by_line_with_clear_errors(tmp_path: Path) -> None:
    good = {"name": "ops", "hash": hash_token("coord.ops.x"), "scopes": ["operate"]}
    path = tmp_path / "tokens.jsonl"
    path.write_text(f"# the operators\n{json.dumps(good)}\n\n")
    assert [e.name for e in read_tokens_file(path)] == ["ops"]
    path.write_text(f"{json.dumps(good)}\n{{not json\n")
    with pytest.raises(SettingsError, match=rf"^COORD_TOKENS_FILE: {path}:2: not JSON"):
        read_tokens_file(path)
    path.write_text(json.dumps({**good, "scopes": ["root"]}) + "\n")
    with pytest.raises(SettingsError, match=rf"^COORD_TOKENS_FILE: {path}:1: scopes.0: Input should be"):
        read_tokens_file(path)
    path.write_text(json.dumps({**good, "hash": "plain-text-token"}) + "\n")
    with pytest.raises(SettingsError, match="not an scrypt hash"):
        read_tokens_file(path)
    with pytest.raises(SettingsError, match="cannot read"):
        read_tokens_file(tmp_path / "absent.jsonl")


def test_a_name_given_twice_stops_the_start(home: Path, tmp_path: Path) -> None:
    entry = {"name": "ops", "hash": hash_token("coord.ops.x"), "scopes": ["operate"]}
    path = tmp_path / "tokens.jsonl"
    path.write_text(json.dumps(entry) + "\n")
    settings = Settings(home=home, bus="local", tokens=[entry], tokens_file=path)
    with pytest.raises(SettingsError, match="token name 'ops' is given twice"):
        create_app(settings, spec=SPEC, store=None)


def test_coord_token_create_prints_the_token_once_and_its_entry_works(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "tokens.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COORD_")} | {"COORD_HOME": str(home)}
    done = subprocess.run([*COORD, "token", "create", "ci", "--scope", "read", "--scope", "operate",
                           "--append-to", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    entry = json.loads(lines[-1])
    assert token.startswith("coord.ci.") and entry["name"] == "ci" and entry["scopes"] == ["read", "operate"]
    assert token not in path.read_text() and json.loads(path.read_text()) == entry
    again = subprocess.run([*COORD, "token", "create", "ci", "-s", "read", "--append-to", str(path)],
                           capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 1 and "has a token named 'ci' already" in again.stderr
    bad = subprocess.run([*COORD, "token", "create", "x", "-s", "root"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1 and "unknown scope 'root'" in bad.stderr
    listed = subprocess.run([*COORD, "token", "list"], capture_output=True, text=True, timeout=60,
                            env={**env, "COORD_TOKENS_FILE": str(path)})
    assert listed.stdout.strip() == "ci  read, operate" and entry["hash"] not in listed.stdout

    settings = Settings(home=home, bus="local", tokens_file=path)
    with StateStore(settings.resolved_state_url()) as store, \
            TestClient(create_app(settings, spec=SPEC, store=store)) as c:
        assert c.get("/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert c.get("/api/audit", headers={"Authorization": f"Bearer {token}"}).status_code == 403
