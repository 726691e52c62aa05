"""Signed, expiring session tokens: how a reload or a second tab stays signed in within the idle timeout.

Why a token at all: a Streamlit session lives in one browser tab's websocket; a reload or a
link opened in a new tab starts a new session, which would mean signing in again on every
shared link (``/patient?patient=ID``). The token says "this browser was signed in as
USERNAME until EXPIRES"; the app sets it as a cookie and reads it back
(``st.context.cookies``) when a new session starts (docs/governance.md says why a cookie and
not the URL).

- **Signed** with HMAC-SHA256 under a key derived from the store's secret (``app_secret``,
  ``pseudonyms.store_secret``) for this one purpose, so the key never leaves the store and a
  pseudonym key and a session key are never the same bytes. Anyone without the store cannot
  make or alter a token.
- **Expiring**: ``expires`` is the issue time plus the idle timeout; the app issues a new
  token as the user works, so the token dies at most one idle timeout after the last action,
  as the session does.
- **Revoked** by signing out: a token issued before the user's latest ``sign_out`` or
  ``session_timeout`` audit event is refused (``revoked``), so a copied cookie is worthless
  after sign-out even before it expires.
- **Carries no role**: the account is read again on resume, so a removed account or a
  changed role applies at once, and the same page checks follow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

from analytics.governance import pseudonyms

_PURPOSE = b"oncolens session token v1"
VERSION = 1


class TokenError(ValueError):
    """The token is malformed, forged, expired or revoked; the message says which (never the token)."""


@dataclass(frozen=True)
class Claims:
    username: str
    issued_at: float  # seconds since the epoch (UTC)
    expires_at: float


def session_key(con: duckdb.DuckDBPyConnection) -> bytes | None:
    """The store's session-token key (HMAC of the store secret and this purpose), None without a secret."""
    secret = pseudonyms.store_secret(con)
    return None if secret is None else hmac.new(secret, _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(key: bytes, username: str, now: float, lifetime_s: float) -> str:
    """A token for ``username`` valid from ``now`` for ``lifetime_s`` seconds (URL- and cookie-safe)."""
    if lifetime_s <= 0:
        raise ValueError("a session token needs a positive lifetime")
    payload = json.dumps(
        {
            "v": VERSION,
            "u": username,
            "iat": round(now, 3),
            "exp": round(now + lifetime_s, 3),
            "n": secrets.token_hex(8),  # two tokens issued in the same millisecond still differ
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    body = _b64(payload)
    return f"{body}.{_b64(hmac.new(key, body.encode('ascii'), hashlib.sha256).digest())}"


def read(key: bytes, token: str, now: float) -> Claims:
    """The claims of a genuine, unexpired token; ``TokenError`` otherwise."""
    body, dot, signature = (token or "").strip().partition(".")
    if not dot or not body or not signature:
        raise TokenError("not a session token")
    expected = hmac.new(key, body.encode("ascii", "replace"), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("not a session token") from exc
    if not hmac.compare_digest(expected, given):
        raise TokenError("the session token's signature does not match this store")
    if not isinstance(payload, dict) or payload.get("v") != VERSION:
        raise TokenError("a session token of another version")
    try:
        claims = Claims(str(payload["u"]), float(payload["iat"]), float(payload["exp"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError("an incomplete session token") from exc
    if now >= claims.expires_at:
        raise TokenError("the session token has expired")
    if claims.issued_at > now + 60:  # a clock far ahead: refuse rather than trust the future
        raise TokenError("the session token was issued in the future")
    return claims


def revoked(con: duckdb.DuckDBPyConnection, claims: Claims) -> bool:
    """True when the user signed out (or timed out) at or after the token was issued."""
    issued = datetime.fromtimestamp(claims.issued_at, timezone.utc).replace(tzinfo=None)
    row = con.execute(
        "SELECT count(*) FROM audit_event WHERE actor = ? AND action IN ('sign_out', 'session_timeout') "
        "AND occurred_at >= ?",
        [claims.username, issued],
    ).fetchall()
    return bool(row[0][0])
