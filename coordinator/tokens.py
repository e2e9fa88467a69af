"""Bearer tokens at rest: the configured entries, their scrypt hashes, and the tokens file.

A token is `coord.<name>.<secret>`: the name finds its entry (so one hash is checked, not one per
entry), the secret is 32 random bytes (`secrets.token_urlsafe`). Only `{name, hash, scopes}` (plus
`datasets` and `producer` for a publish token) is configured, in COORD_TOKENS or COORD_TOKENS_FILE.

Hashing is scrypt from the standard library (no new dependency): memory-hard, its parameters
written into the hash so they can be raised later without invalidating old entries; the digest
is compared in constant time. Kept apart from auth.py (the HTTP check) so that the settings,
which validate entries, load without FastAPI.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from coordinator.errors import SettingsError

Scope = Literal["read", "publish", "operate", "admin"]
SCOPES: tuple[str, ...] = ("read", "publish", "operate", "admin")
PREFIX = "coord"
LEGACY_NAME = "api"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class TokenEntry(BaseModel):
    """One configured token: what settings and the tokens file hold (never the token itself)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    hash: str = Field(min_length=1)
    scopes: tuple[Scope, ...] = Field(min_length=1)
    datasets: tuple[str, ...] = ()  # publish: fnmatch patterns of the datasets it may publish
    producer: str | None = None  # publish: the producer its events must name

    @model_validator(mode="after")
    def _publish_is_bounded(self) -> TokenEntry:
        if "publish" in self.scopes and (not self.datasets or not self.producer):
            raise ValueError(f"token {self.name!r}: a publish token needs `datasets` patterns and a producer")
        if not self.hash.startswith("scrypt$"):
            raise ValueError(f"token {self.name!r}: not an scrypt hash (`coord token create` makes one)")
        return self


# ---------------------------------------------------------------------- tokens and hashes
def new_token(name: str) -> str:
    return f"{PREFIX}.{name}.{secrets.token_urlsafe(32)}"


def hash_token(token: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, **_SCRYPT)
    b64 = base64.urlsafe_b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify(token: str, stored: str) -> bool:
    """Whether `token` matches the stored scrypt hash (constant-time comparison)."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        want = base64.urlsafe_b64decode(digest)
        got = hashlib.scrypt(
            token.encode(), salt=base64.urlsafe_b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(want)
        )
    except (ValueError, TypeError):
        return False
    return algo == "scrypt" and hmac.compare_digest(got, want)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------- the configured set
def read_tokens_file(path: Path) -> list[TokenEntry]:
    """A tokens file: one JSON object per line (what `coord token create` prints), or a JSON list.
    Blank lines and lines starting with # are skipped. SettingsError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"COORD_TOKENS_FILE: cannot read {path}: {exc.strerror or exc}") from None
    if text.lstrip().startswith("["):
        items = [(1, item) for item in _json(text, path, 1)]
    else:
        items = [
            (n, _json(line, path, n))
            for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    entries = []
    for n, item in items:
        try:
            entries.append(TokenEntry.model_validate(item))
        except ValidationError as exc:
            raise SettingsError(f"COORD_TOKENS_FILE: {path}:{n}: {_first(exc)}") from None
    return entries


def _json(text: str, path: Path, line: int) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"COORD_TOKENS_FILE: {path}:{line}: not JSON ({exc.msg})") from None


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


