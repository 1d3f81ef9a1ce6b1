"""Signatures: our verifier and signer agree with the standardwebhooks package, both ways."""

from __future__ import annotations

import time
from datetime import UTC

import pytest
from standardwebhooks.webhooks import Webhook

from config.settings import LOCAL_INGEST_SECRET
from web.signatures import SignatureError, Verifier, sign

OTHER = "whsec_" + "b3RoZXIta2V5LWZvci1yb3RhdGlvbi10ZXN0cw=="


def test_given_headers_from_sign_then_the_reference_library_verifies_them() -> None:
    body = b'{"id": "evt_1", "x": "\xc3\xa9"}'
    headers = sign(body, "evt_1", LOCAL_INGEST_SECRET)
    assert Webhook(LOCAL_INGEST_SECRET).verify(body, headers) == {"id": "evt_1", "x": "\u00e9"}


def test_given_headers_from_the_reference_library_then_we_verify_them() -> None:
    body = '{"id": "evt_2"}'
    now = int(time.time())
    from datetime import datetime

    signature = Webhook(LOCAL_INGEST_SECRET).sign("evt_2", datetime.fromtimestamp(now, tz=UTC), body)
    headers = {"webhook-id": "evt_2", "webhook-timestamp": str(now), "webhook-signature": signature}
    verifier = Verifier.from_secrets([LOCAL_INGEST_SECRET], 300)
    assert verifier.verify(body.encode(), headers) == "evt_2"


def test_given_two_configured_secrets_then_a_signature_by_either_is_accepted() -> None:
    verifier = Verifier.from_secrets([OTHER, LOCAL_INGEST_SECRET], 300)
    for key in (OTHER, LOCAL_INGEST_SECRET):
        assert verifier.verify(b"{}", sign(b"{}", "evt_3", key)) == "evt_3"


def test_given_a_signature_over_a_non_utf8_body_then_it_verifies_on_the_raw_bytes() -> None:
    """The library would crash decoding this; we verify bytes and let parsing say 400 later."""
    body = b"\xff\xfe not utf-8"
    verifier = Verifier.from_secrets([LOCAL_INGEST_SECRET], 300)
    assert verifier.verify(body, sign(body, "evt_4", LOCAL_INGEST_SECRET)) == "evt_4"


def test_given_a_configured_tolerance_then_it_is_honoured_both_ways() -> None:
    verifier = Verifier.from_secrets([LOCAL_INGEST_SECRET], 60)
    now = 1_800_000_000
    assert verifier.verify(b"{}", sign(b"{}", "e", LOCAL_INGEST_SECRET, now - 60), now=now) == "e"
    for ts in (now - 61, now + 61):
        with pytest.raises(SignatureError):
            verifier.verify(b"{}", sign(b"{}", "e", LOCAL_INGEST_SECRET, ts), now=now)


def test_given_a_malformed_configured_secret_then_startup_fails_without_echoing_it() -> None:
    with pytest.raises(ValueError) as failure:
        Verifier.from_secrets(["whsec_not*base64*at*all==="], 300)
    assert "not*base64" not in str(failure.value)
    with pytest.raises(ValueError):
        Verifier.from_secrets([], 300)
