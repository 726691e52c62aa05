"""analytics.governance.session_tokens: signed, expiring, revocable, and useless with another store's key."""

from __future__ import annotations

import time

import pytest

from analytics.governance import audit, pseudonyms, session_tokens, users
from analytics.governance.session_tokens import TokenError


@pytest.fixture
def key(tiny) -> bytes:
    pseudonyms.ensure_secret(tiny.con)
    k = session_tokens.session_key(tiny.con)
    assert k is not None and k != pseudonyms.store_secret(tiny.con)  # its own key, derived
    return k


def test_a_token_reads_back_until_it_expires(key):
    now = 1_800_000_000.0
    token = session_tokens.issue(key, "careteam", now, 1800)
    claims = session_tokens.read(key, token, now + 1799)
    assert (claims.username, claims.issued_at, claims.expires_at) == ("careteam", now, now + 1800)
    with pytest.raises(TokenError, match="expired"):
        session_tokens.read(key, token, now + 1800)
    assert session_tokens.issue(key, "careteam", now, 1800) != token  # a nonce in each
    assert "careteam" not in token.split(".")[1]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: t.split(".")[0][:-1] + "x." + t.split(".")[1],  # payload changed
        lambda t: t.replace(".", ""),  # no separator
        lambda t: "",
        lambda t: "not-a-token.at-all",
        lambda t: t + "' OR 1=1",
    ],
)
def test_a_changed_or_malformed_token_is_refused(key, tamper):
    token = session_tokens.issue(key, "careteam", time.time(), 600)
    with pytest.raises(TokenError):
        session_tokens.read(key, tamper(token), time.time())


def test_another_stores_key_cannot_read_it(key, tmp_path):
    from analytics import store

    other = store.connect(tmp_path / "other.duckdb", create=True)
    pseudonyms.ensure_secret(other)
    token = session_tokens.issue(key, "careteam", time.time(), 600)
    with pytest.raises(TokenError, match="signature"):
        session_tokens.read(session_tokens.session_key(other), token, time.time())


def test_signing_out_revokes_the_tokens_issued_before(tiny, key):
    users.add_user(tiny.con, "careteam", "care_team", email="c@clinic.example")
    issued = time.time() - 5
    claims = session_tokens.read(
        key, session_tokens.issue(key, "careteam", issued, 600), time.time()
    )
    assert not session_tokens.revoked(tiny.con, claims)
    with audit.chained_transaction(tiny.con):
        audit.append_event(tiny.con, actor="other", role="care_team", action="sign_out")
    assert not session_tokens.revoked(tiny.con, claims)  # someone else's sign-out
    with audit.chained_transaction(tiny.con):
        audit.append_event(tiny.con, actor="careteam", role="care_team", action="sign_out")
    assert session_tokens.revoked(tiny.con, claims)
    later = session_tokens.read(
        key, session_tokens.issue(key, "careteam", time.time() + 1, 600), time.time() + 2
    )
    assert not session_tokens.revoked(tiny.con, later)  # signed in again afterwards
