"""Secrets kept out of every line splade-os prints: each password and API key a settings object holds is
registered here, and `redact` replaces them (and any `user:pass@` inside a URL) with `***`."""

from __future__ import annotations

import re

_SECRETS: set[str] = set()
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def redact(text: str) -> str:
    """`text` with every secret this process was given, and any `user:pass@` in a URL, replaced by `***`."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_USERINFO.sub(r"\1***@", text)


def register_secret(value: str | None) -> None:
    if value and len(value) >= 3:  # a one- or two-character "secret" would blank out ordinary text
        _SECRETS.add(value)
