"""Standard Webhooks signatures (standardwebhooks.com) over the raw body bytes, with secret rotation.

The ``standardwebhooks`` package decodes the shared secrets (``whsec_`` + base64) and provides the
HMAC primitive; the check itself is done here, over the body *bytes*, because the package's
``Webhook.verify``
- decodes the body as UTF-8 first, so a correctly signed body that is not UTF-8 could never reach
  the 400 the contract gives it (signature first, parsing after),
- json-parses the body and raises ValueError/binascii.Error/UnicodeDecodeError on malformed
  headers, which would be indistinguishable from a bad signature or turn into 500s,
- hard-codes a 5-minute tolerance and signs ``floor(float(timestamp))`` instead of the header text.
``tests/web/test_signatures.py`` checks that what ``sign`` produces verifies with the package's
own ``Webhook.verify`` and the reverse, so both sides speak the same scheme.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from standardwebhooks.webhooks import Webhook, hmac_data

# Bounds the work an attacker can make us do per request (one HMAC per secret, compare per entry).
MAX_SIGNATURES = 16
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIG_B64 = re.compile(r"[A-Za-z0-9+/]{43}=")  # exactly one base64 SHA-256 digest


SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class SignatureError(Exception):
    """Any reason a request is not provably from the producer; the message is safe to return."""


@dataclass(frozen=True)
class Verifier:
    keys: tuple[bytes, ...]
    tolerance_s: int

    @classmethod
    def from_secrets(cls, secrets: Sequence[str], tolerance_s: int) -> Verifier:
        """Decode every configured secret once; a malformed one is a deployment error, raised now."""
        keys = tuple(_decode_secret(secret) for secret in secrets)
        if not keys:
            raise ValueError("no ingest secret configured (INGEST_SECRETS)")
        return cls(keys=keys, tolerance_s=tolerance_s)

    def verify(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> str:
        """Check the headers against the raw body; return the webhook-id or raise SignatureError."""
        msg_id = headers.get("webhook-id") or ""
        msg_ts = headers.get("webhook-timestamp") or ""
        msg_sig = headers.get("webhook-signature") or ""
        if not (msg_id and msg_ts and msg_sig):
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
        if not _TIMESTAMP.fullmatch(msg_ts):
            raise SignatureError("webhook-timestamp must be unix seconds")
        current = time.time() if now is None else now
        age = current - int(msg_ts)
        if age > self.tolerance_s:
            raise SignatureError("webhook-timestamp is too old")
        if -age > self.tolerance_s:
            raise SignatureError("webhook-timestamp is in the future")

        candidates = _parse_signatures(msg_sig)
        if not candidates:
            raise SignatureError("webhook-signature has no v1 signature")
        # Header values come to us as latin-1 decoded text (WSGI); get the bytes back as sent.
        signed = msg_id.encode("latin-1", "replace") + b"." + msg_ts.encode() + b"." + body
        for key in self.keys:
            expected = hmac_data(key, signed)
            # Compare against every candidate (no early exit per key) so timing says nothing useful.
            if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
                return msg_id
        raise SignatureError("no valid signature")


def _decode_secret(secret: str) -> bytes:
    try:
        # The package's b64decode drops stray characters silently; a typo'd secret must fail here.
        base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        key = Webhook(secret)._whsecret  # the package's own reading of "whsec_<base64>"
    except (binascii.Error, ValueError, RuntimeError):
        # Never echo the secret: the message names the problem only.
        raise ValueError("an ingest secret is not whsec_<base64>") from None
    if not key:
        raise ValueError("an ingest secret decodes to an empty key")
    return key


def _parse_signatures(header: str) -> list[bytes]:
    out: list[bytes] = []
    for entry in header.split()[:MAX_SIGNATURES]:
        version, _, value = entry.partition(",")
        # Other versions (e.g. v1a, asymmetric) are allowed by the spec and skipped, not errors.
        if version != "v1" or not _SIG_B64.fullmatch(value):
            continue
        out.append(base64.b64decode(value))
    return out


def sign(body: bytes, event_id: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers a producer sends for ``body`` (CLI, tests, benchmarks)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    key = _decode_secret(secret)
    digest = hmac_data(key, event_id.encode() + b"." + ts.encode() + b"." + body)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
