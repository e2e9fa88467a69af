"""Masking: secrets never leave the coordinator in anything it shows, logs or sends.

Three rules, applied wherever a value could show — `coord info`, the UI's command line,
attempt details and log tail, alert and OpenLineage payloads, the coordinator's own log lines:

- a URL's password (`postgresql://user:PASS@host/db`, also inside a longer text) becomes ***;
- a value whose key looks secret (password, token, secret, key, sasl, credential... — a Spark
  `--conf k=v`, an environment `K=V`, a JSON `"k": "v"`, a YAML `k: v`, a mapping entry) is ***;
- every value the settings and the spec hold as a secret (SecretStr values, values under
  secret-looking keys, URL passwords) is replaced wherever it appears verbatim (`Masker`),
  which catches what the patterns cannot: a job that prints its password.

The job itself still gets the real values (its command line and environment); only what is
displayed or sent elsewhere is masked. Masking is by replacement, never by dropping the field,
so an operator sees that a value was there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, SecretStr

MASK = "***"
SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|pwd|token|secret|(^|[._-])key($|[._-])|apikey|api_key|sasl|credential|private"
    r"|auth(?!or)|signature|sig($|[._-])",
    re.IGNORECASE,
)
# scheme://user:password@host — the password is whatever lies between the first ':' after the
# scheme's '//' and the last '@' before the host (passwords may hold '@' when not encoded)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<pw>[^\s/]*)@(?=[^\s@]*(?:[/\s]|$))")
_QUERY_SECRET = re.compile(r"(?P<k>[?&;][^=&\s]+=)(?P<v>[^&\s#]*)")
# key=value, key: value, "key": "value", --key value forms in free text (logs, errors, argv)
_ASSIGN = re.compile(
    # the value is only looked at, not consumed: in "Error: password=x" the next key starts inside it
    r"""(?P<k>["']?(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)["']?\s*(?:=|:(?!//))\s*)(?=(?P<q>["']?)(?P<v>[^\s"',;&]+))"""
)
_BEARER = re.compile(r"\b(?P<k>Bearer|Basic)\s+(?P<v>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE)
# keys that end in "key" but name no secret
NOT_SECRET = frozenset({"partition_key", "primary_key", "sort_key", "key", "run_key", "dedupe_key"})
MIN_SECRET_LEN = 4  # shorter known values are not replaced verbatim (they would mask ordinary text)


def looks_secret(key: str) -> bool:
    return key.lower() not in NOT_SECRET and bool(SECRET_KEY.search(key))


def reveal(value: SecretStr | str | None) -> str | None:
    """The value in clear, whether it is held as a SecretStr or (a copied settings object) a str."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


def mask_url(url: str) -> str:
    """A URL (or text holding URLs) with its passwords and secret-looking query values masked."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m['k']}{MASK}" if looks_secret(m["k"][1:-1]) else m[0], text)


def mask_text(text: str) -> str:
    """Free text (a log line, an error, an argument) with URL passwords and `secretkey=value` masked."""
    text = _BEARER.sub(lambda m: f"{m['k']} {MASK}", mask_url(text))

    out, pos = [], 0
    for m in _ASSIGN.finditer(text):
        if m.start() < pos or not looks_secret(m["name"]) or m["v"] == MASK:
            continue
        out += [text[pos : m.start("v")], MASK]
        pos = m.end("v")
    return "".join(out) + text[pos:]


def mask_argv(argv: Iterable[str]) -> list[str]:
    """A command line for display: `--conf k=v`, `K=V`, URLs, and the value after `--password`."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        if arg.startswith("-") and "=" not in arg and looks_secret(arg.lstrip("-")):
            out.append(arg)
            hide_next = True
            continue
        out.append(mask_text(arg))
    return out


def mask_value(key: str, value: Any) -> Any:
    """A settings-like value under `key`, masked: secret keys entirely, else URLs and nested keys."""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(key, v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if looks_secret(key):
        return MASK
    return mask_text(str(value))


def mask_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): mask_value(str(k), v) for k, v in values.items()}


# ---------------------------------------------------------------------- known values
def secret_values(value: Any, key: str = "") -> set[str]:
    """Every secret a settings object, a spec's job settings or an environment holds: SecretStr
    values, values under secret-looking keys, URL passwords."""
    found: set[str] = set()
    if isinstance(value, SecretStr):
        found.add(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            found |= secret_values(getattr(value, name), name)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            found |= secret_values(v, str(k))
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        for i, v in enumerate(items):
            found |= secret_values(v, key)
            if isinstance(v, str) and v.startswith("-") and i + 1 < len(items):  # argv: --password X
                flag, eq, inline = v.lstrip("-").partition("=")
                if looks_secret(flag) and not eq and isinstance(items[i + 1], str):
                    found.add(items[i + 1])
            if isinstance(v, str) and "=" in v:  # argv or conf: KEY=VALUE, --password=VALUE
                name, _, inline = v.lstrip("-").partition("=")
                if looks_secret(name):
                    found.add(inline)
    elif isinstance(value, str):
        if looks_secret(key):
            found.add(value)
        for m in _URL_PASSWORD.finditer(value):
            found.add(m["pw"])
        for m in _QUERY_SECRET.finditer(value):
            if looks_secret(m["k"][1:-1]):
                found.add(m["v"])
    return {s for s in found if len(s) >= MIN_SECRET_LEN}


class Masker:
    """Masks the patterns, and every known secret verbatim (longest first, so one secret that
    contains another is masked whole)."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        values = sorted({k for k in known if len(k) >= MIN_SECRET_LEN}, key=len, reverse=True)
        self._known = re.compile("|".join(re.escape(v) for v in values)) if values else None

    @classmethod
    def of(cls, *holders: Any) -> Masker:
        """From settings objects, specs (their jobs' settings) and mappings."""
        known: set[str] = set()
        for holder in holders:
            jobs = getattr(holder, "jobs", None)
            if isinstance(jobs, Mapping):
                for job in jobs.values():
                    known |= secret_values(getattr(job, "settings", {}))
            else:
                known |= secret_values(holder)
        return cls(known)

    def text(self, text: str | None) -> str | None:
        if not text:
            return text
        if self._known is not None:
            text = self._known.sub(MASK, text)
        return mask_text(text)

    def argv(self, argv: Iterable[str] | None) -> list[str] | None:
        if argv is None:
            return None
        masked = mask_argv(argv)
        return [self.text(a) or a for a in masked]

    def value(self, value: Any, key: str = "") -> Any:
        """Any JSON-like value: strings masked as text, mapping entries by their keys too."""
        if isinstance(value, Mapping):
            return {k: MASK if looks_secret(str(k)) and isinstance(v, str) else self.value(v, str(k))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v, key) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value


class MaskingFilter(logging.Filter):
    """A logging filter that masks every record's message (patterns and known secrets) before any
    handler writes it: the coordinator's own log lines never carry a password or a token."""

    def __init__(self, masker: Masker | None = None) -> None:
        super().__init__()
        self.masker = masker or Masker()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.masker.text(message) or message
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.masker.text(record.exc_text)
        return True


def mask_logging(masker: Masker | None = None) -> MaskingFilter:
    """Install a MaskingFilter on every handler of the root logger (once); returns it, so the
    caller may give it the known secrets later (`filter.masker = Masker.of(...)`)."""
    root = logging.getLogger()
    for handler in root.handlers:
        for existing in handler.filters:
            if isinstance(existing, MaskingFilter):
                if masker is not None:
                    existing.masker = masker
                return existing
    installed = MaskingFilter(masker)
    for handler in root.handlers:
        handler.addFilter(installed)
    return installed
