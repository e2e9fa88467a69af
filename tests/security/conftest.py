"""Fixtures of the access tests: one token per scope, hashed as `coord token create` hashes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.spec import parse_spec
from coordinator.tokens import TokenEntry, hash_token, new_token

SPEC = parse_spec(
    """\
datasets:
  raw.a: {partitioning: daily}
  other.x: {partitioning: daily}
jobs:
  prep:
    kind: command
    inputs: [raw.a]
    outputs: [clean.a]
    settings: {command: [sh, -c, 'exit 3']}
"""
)


class Tokens:
    """A token of each scope, plus a publish token bounded to raw.* as producer `el`."""

    def __init__(self) -> None:
        self.plain: dict[str, str] = {}
        self.entries: list[TokenEntry] = []
        for name, scopes, extra in [
            ("reader", ["read"], {}),
            ("publisher", ["publish"], {"datasets": ["raw.*"], "producer": "el"}),
            ("operator", ["operate"], {}),
            ("administrator", ["admin"], {}),
        ]:
            token = new_token(name)
            self.plain[scopes[0]] = token
            self.entries.append(TokenEntry(name=name, hash=hash_token(token), scopes=scopes, **extra))

    def header(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plain[scope]}"}


@pytest.fixture(scope="session")
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("COORD_API_TOKEN", "COORD_TOKENS", "COORD_TOKENS_FILE", "COORD_ANONYMOUS_READS",
                 "COORD_STATE_URL", "COORD_API_HOST"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "home"
    path.mkdir()
    return path
