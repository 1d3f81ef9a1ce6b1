"""Secrets at rest: shop access tokens are stored encrypted with Fernet (AES-128-CBC + HMAC).

``MultiFernet`` over ``TOKEN_ENCRYPTION_KEYS``: the first key encrypts, every key decrypts, so a
key rotates in without downtime (put the new key first, run ``python -m workers.cli
rotate-token-key``, then drop the old key). The keys come from the environment and never reach
the database, so a dump of Postgres holds no usable token.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config import get_settings


class UndecryptableToken(Exception):
    """A stored token that none of the configured keys decrypts (a key was dropped too early)."""


@lru_cache(maxsize=4)
def _box(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    return _box(get_settings().token_encryption_keys)


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(ciphertext: str) -> str:
    try:
        return _current().decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise UndecryptableToken("no configured TOKEN_ENCRYPTION_KEYS key decrypts a stored token") from None


def reencrypt(ciphertext: str) -> str:
    """The same secret under the first key (key rotation)."""
    return _current().rotate(ciphertext.encode("ascii")).decode("ascii")
