"""Who may use the ops page, and proof that a form came from it.

Logins are ``OPS_USERS`` pairs, checked in constant time; a login lives in Flask's signed session
cookie (``WEB_SECRET_KEY``) with the moment it began and a fingerprint of the pair it used, so
changing or removing a pair in the settings ends that operator's sessions at the next request.
The CSRF token is a random value kept in the same session: a page of another site can make the
browser send the cookie (a top-level POST), but it cannot read a page of ours to learn the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from flask import request, session

from config.settings import Settings

CSRF_FIELD = "csrf_token"


def _bytes(text: str) -> bytes:
    # A form field can hold anything, lone surrogates included; compare_digest wants bytes.
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Users:
    pairs: tuple[tuple[str, str], ...]
    key: bytes
    ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Users:
        pairs = []
        for pair in settings.ops_users:
            name, _, password = pair.partition(":")
            # A malformed pair logs nobody in (production refuses to start on it: unsafe_settings).
            if name and password:
                pairs.append((name, password))
        return cls(tuple(pairs), _bytes(settings.web_secret_key), settings.ops_session_ttl_s)

    def _mac(self, label: str, name: str, password: str) -> bytes:
        message = b"\0".join((label.encode(), _bytes(name), _bytes(password)))
        return hmac.new(self.key, message, hashlib.sha256).digest()

    def check(self, name: str, password: str) -> str | None:
        """The operator's name when the pair is one of ours, else None.

        Both sides are MACed first, so every comparison is of 32 bytes, and every pair is
        compared whatever an earlier one gave: the time taken says neither which names exist nor
        how much of a password was right.
        """
        given = self._mac("login", name, password)
        found = None
        for user, expected in self.pairs:
            if hmac.compare_digest(given, self._mac("login", user, expected)) and found is None:
                found = user
        return found

    def fingerprint(self, name: str) -> str | None:
        """What a session holds of the pair it logged in with (a MAC: the cookie is signed, not
        encrypted, so it must not carry the password)."""
        for user, password in self.pairs:
            if user == name:
                return self._mac("session", user, password).hex()
        return None


def log_in(users: Users, name: str) -> None:
    # A fresh session: nothing from before the login (a planted CSRF token, say) survives it.
    session.clear()
    session.permanent = True
    session["user"] = name
    session["fp"] = users.fingerprint(name)
    session["since"] = int(time.time())
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def log_out() -> None:
    session.clear()


def current_user(users: Users) -> str | None:
    name, fingerprint, since = session.get("user"), session.get("fp"), session.get("since")
    if not isinstance(name, str) or not isinstance(fingerprint, str) or not isinstance(since, int):
        return None
    # The signature's own age check (Flask's max_age) restarts whenever the cookie is re-signed;
    # this one counts from the login.
    if time.time() - since > users.ttl_s:
        return None
    expected = users.fingerprint(name)
    if expected is None or not hmac.compare_digest(_bytes(fingerprint), _bytes(expected)):
        return None
    return name


def csrf_token() -> str:
    """The session's token (made on first use: the login form needs one before any login)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def csrf_ok() -> bool:
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD, "")
    return isinstance(expected, str) and bool(given) and hmac.compare_digest(_bytes(given), _bytes(expected))
