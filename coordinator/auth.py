"""Who may do what over HTTP: scoped bearer tokens and the one FastAPI check every route uses.

Scopes, each allowing what it names and nothing else:

    read     the UI's /api reads, run logs and command lines, /metrics
    publish  POST /events, for datasets matching one of the token's `datasets` (fnmatch), and
             only events naming the token's `producer`
    operate  retry, rerun and cancel a run (backfill is the CLI's)
    admin    all of the above, and the whole audit log (/api/audit)

Tokens and their hashes: coordinator/tokens.py. The legacy COORD_API_TOKEN is one admin token
named "api". Reads need no token only when COORD_ANONYMOUS_READS is on *and* the server binds
to a loopback address (`coord demo`'s default). Answers: 401 when no token or an unknown one
is given, 403 naming the scope (or the dataset or producer) the token lacks, 503 when no token
is configured at all for a non-read scope. A verified token is remembered by its SHA-256 for
the process's life, so a polling UI does not pay scrypt on every request.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from coordinator.errors import SettingsError
from coordinator.tokens import LEGACY_NAME, PREFIX, TokenEntry, is_loopback, read_tokens_file, verify

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from coordinator.settings import Settings


@dataclass(frozen=True)
class Principal:
    """Who made a request: a token's name and what it may do (`anonymous` for open reads)."""

    name: str
    scopes: frozenset[str]
    datasets: tuple[str, ...] = ()
    producer: str | None = None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def may_publish(self, dataset: str, producer: str) -> str | None:
        """None when this principal may publish `dataset` as `producer`, else why not."""
        if "admin" in self.scopes:
            return None
        if not any(fnmatch.fnmatchcase(dataset, pattern) for pattern in self.datasets):
            return f"token {self.name!r} may not publish {dataset!r} (allowed: {', '.join(self.datasets)})"
        if producer != self.producer:
            return f"token {self.name!r} publishes as producer {self.producer!r}, not {producer!r}"
        return None


ANONYMOUS = Principal("anonymous", frozenset({"read"}))


class Authenticator:
    """The configured tokens, checked against a request's bearer token."""

    def __init__(
        self, entries: list[TokenEntry], legacy: str | None, anonymous_reads: bool, host: str = "127.0.0.1"
    ) -> None:
        self.entries: dict[str, TokenEntry] = {}
        for entry in entries:
            if entry.name in self.entries or (legacy is not None and entry.name == LEGACY_NAME):
                raise SettingsError(f"COORD_TOKENS: token name {entry.name!r} is given twice")
            self.entries[entry.name] = entry
        self.legacy = legacy
        self.host = host
        self.anonymous_reads = anonymous_reads and is_loopback(host)
        self._anonymous_refused = anonymous_reads and not self.anonymous_reads
        self._verified: dict[bytes, Principal] = {}

    @classmethod
    def from_settings(cls, settings: Settings, bound_host: str | None = None) -> Authenticator:
        """From the settings; `bound_host` is the address the server really binds (else api_host)."""
        entries = list(settings.tokens)
        if settings.tokens_file is not None:
            entries += read_tokens_file(settings.tokens_file)
        legacy = settings.api_token.get_secret_value() if settings.api_token is not None else None
        host = bound_host or settings.api_host
        return cls(entries, legacy, settings.anonymous_reads, host)

    @property
    def configured(self) -> bool:
        return bool(self.entries) or self.legacy is not None

    def identify(self, token: str) -> Principal | None:
        """The principal a presented token stands for, or None for an unknown or wrong one."""
        key = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(key)
        if known is not None:
            return known
        principal = None
        if self.legacy is not None and hmac.compare_digest(token.encode(), self.legacy.encode()):
            principal = Principal(LEGACY_NAME, frozenset({"admin"}))
        else:
            prefix, _, rest = token.partition(".")
            name, _, _ = rest.partition(".")
            entry = self.entries.get(name) if prefix == PREFIX else None
            if entry is not None and verify(token, entry.hash):
                principal = Principal(entry.name, frozenset(entry.scopes), entry.datasets, entry.producer)
        if principal is not None:
            self._verified[key] = principal
        return principal

    def verified(self, authorization: str | None) -> bool:
        """Whether this header's token was verified before (checking it again hashes nothing)."""
        _, _, token = (authorization or "").partition(" ")
        return hashlib.sha256(token.strip().encode()).digest() in self._verified

    def check(self, authorization: str | None, scope: str) -> Principal:
        """The principal allowed `scope` for this Authorization header, else the HTTPException."""
        scheme, _, token = (authorization or "").partition(" ")
        if not self.configured and scope != "read":
            raise HTTPException(
                503, detail={"reason": "not_configured", "detail": "set COORD_TOKENS or COORD_API_TOKEN"}
            )
        if not token.strip() or scheme.lower() != "bearer":
            if scope == "read" and self.anonymous_reads:
                return ANONYMOUS
            why = f"a bearer token with scope {scope!r} is required"
            if scope == "read" and self._anonymous_refused:
                why += f" (anonymous reads are allowed on loopback only; this server binds {self.host})"
            elif scope == "read":
                why += " (or COORD_ANONYMOUS_READS=true on a loopback address)"
            raise _unauthenticated(why)
        principal = self.identify(token.strip())
        if principal is None:
            raise _unauthenticated("unknown or wrong bearer token")
        if not principal.allows(scope):
            raise HTTPException(
                403,
                detail={"reason": "forbidden", "detail": f"token {principal.name!r} lacks scope {scope!r}"},
            )
        return principal


def _unauthenticated(detail: str) -> HTTPException:
    return HTTPException(
        401, detail={"reason": "unauthenticated", "detail": detail}, headers={"WWW-Authenticate": "Bearer"}
    )


def authenticator(request: Request) -> Authenticator:
    """The app's Authenticator (built by create_app), made from its settings on first use if not."""
    state = request.app.state
    found = getattr(state, "auth", None)
    if found is None:
        found = state.auth = Authenticator.from_settings(state.settings)
    return found


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: `principal: Principal = Depends(require("operate"))`."""

    async def dependency(request: Request) -> Principal:
        auth, header = authenticator(request), request.headers.get("authorization")
        if auth.verified(header):  # checked before: no scrypt, so no worker thread to wait for
            return auth.check(header, scope)
        return await run_in_threadpool(auth.check, header, scope)

    dependency.__name__ = f"require_{scope}"
    return dependency
