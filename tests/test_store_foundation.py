"""Given a migrated database, shops register idempotently and report missing scopes."""

from workers.store import shops


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
