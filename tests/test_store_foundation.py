"""Given a migrated database, shops register idempotently and report missing scopes."""

import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from config import get_settings
from workers.store import crypto, db, shops
from workers.store import migrate as migrate_module
from workers.store.db import transaction


def test_register_shop_is_an_upsert_and_hides_the_token(clean_db: str) -> None:
    first = shops.register_shop("acme-nl.myshopify.com", "token-1")
    second = shops.register_shop("acme-nl.myshopify.com", "token-2", tag_language="nl")
    assert first.id == second.id
    assert shops.get_shop(first.id).access_token == "token-2"
    assert shops.get_shop(first.id).tag_language == "nl"
    assert "token" not in repr(second)


def test_missing_returns_scopes_mark_the_shop_for_reinstall(clean_db: str) -> None:
    shop = shops.register_shop("acme-nl.myshopify.com", "token-1")
    missing = shops.record_scopes(shop.id, ["read_orders", "write_orders"])
    assert missing == ("read_returns", "write_returns")
    assert shops.get_shop(shop.id).needs_reinstall
    # A new token (the reinstall) clears the mark until scopes are read again.
    shops.register_shop("acme-nl.myshopify.com", "token-2")
    assert not shops.get_shop(shop.id).needs_reinstall


def test_graphql_url_defaults_to_the_shopify_template(clean_db: str) -> None:
    shop = shops.register_shop("acme-nl.myshopify.com", "t")
    assert shop.graphql_url == "https://acme-nl.myshopify.com/admin/api/2026-07/graphql.json"
    local = shops.register_shop(
        "acme-nl.myshopify.com",
        "t",
        api_url="http://127.0.0.1:8081/shops/{shop}/admin/api/{version}/graphql.json",
    )
    assert local.graphql_url.startswith("http://127.0.0.1:8081/shops/acme-nl.myshopify.com/")


def _stored_ciphertext(domain: str) -> str:
    with transaction() as cur:
        cur.execute("SELECT * FROM shops WHERE domain = %s", (domain,))
        row = cur.fetchone()
    assert "access_token" not in row  # no plain-text column left
    return row["access_token_enc"]


def test_tokens_are_encrypted_at_rest_and_keys_rotate(clean_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    shops.register_shop("acme-nl.myshopify.com", "shpat_secret_value_1")
    stored = _stored_ciphertext("acme-nl.myshopify.com")
    assert "shpat_secret_value_1" not in stored
    old_key = get_settings().token_encryption_keys[0]
    new_key = Fernet.generate_key().decode()

    def keys(*values: str) -> None:
        monkeypatch.setenv("TOKEN_ENCRYPTION_KEYS", ",".join(values))
        get_settings.cache_clear()

    try:
        # A new key first: old ciphertexts still decrypt; re-encryption moves them to the new key.
        keys(new_key, old_key)
        assert shops.find_shop("acme-nl.myshopify.com").access_token == "shpat_secret_value_1"
        assert shops.reencrypt_tokens() == 1
        assert _stored_ciphertext("acme-nl.myshopify.com") != stored
        # Then the old key can go.
        keys(new_key)
        assert shops.find_shop("acme-nl.myshopify.com").access_token == "shpat_secret_value_1"
        # A key dropped too early is said, never a garbled token used.
        keys(Fernet.generate_key().decode())
        with pytest.raises(crypto.UndecryptableToken):
            shops.find_shop("acme-nl.myshopify.com")
    finally:
        monkeypatch.delenv("TOKEN_ENCRYPTION_KEYS")
        get_settings.cache_clear()


def test_the_migration_encrypts_the_tokens_stored_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    url = get_settings().database_url + "_enc"
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    db.close_pool()
    try:
        migrate_module.drop_database(url)
        migrate_module.ensure_database(url)
        # Given a database of the version before, with a plain-text token
        migrate_module.migrate(until="0002_typed_statuses")
        with transaction() as cur:
            cur.execute(
                "INSERT INTO shops (domain, access_token) VALUES ('old.myshopify.com', 'shpat_plain_old')"
            )
        # When migrated, the token is encrypted in place and still the same token
        assert migrate_module.migrate()[0] == "0003_encrypt_tokens"
        assert "shpat_plain_old" not in _stored_ciphertext("old.myshopify.com")
        assert shops.find_shop("old.myshopify.com").access_token == "shpat_plain_old"
    finally:
        db.close_pool()
        migrate_module.drop_database(url)
        monkeypatch.delenv("DATABASE_URL")
        get_settings.cache_clear()
        db.close_pool()


def test_register_shop_takes_the_token_from_stdin_never_from_argv(clean_db: str) -> None:
    cli = [sys.executable, "-m", "workers.cli", "register-shop", "cli.myshopify.com"]
    refused = subprocess.run([*cli, "--token", "shpat_on_argv"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--token" in refused.stderr
    done = subprocess.run(cli, input="shpat_from_stdin\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "shpat_from_stdin" not in done.stdout + done.stderr
    assert shops.find_shop("cli.myshopify.com").access_token == "shpat_from_stdin"
