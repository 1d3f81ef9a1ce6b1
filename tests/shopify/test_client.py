"""ShopifyClient against a real local HTTP server playing scripted Shopify answers.

Sleeps are captured (not slept) so the waits the client computes are asserted exactly, without any
wall-clock assertion.
"""

from __future__ import annotations

import random

import pytest

from config import get_settings
from tests.shopify.conftest import make_endpoint
from tests.shopify.scripted_server import Reply, closed_port, ok, scripted, throttled
from workers.shopify import client as client_module
from workers.shopify.client import (
    AccessDenied,
    CallRecord,
    NotFound,
    OutcomeUnknown,
    ShopifyClient,
    ShopifyGraphQLError,
    ShopifyUnavailable,
    Throttled,
    Unauthorized,
)
from workers.shopify.documents import RETURN_CLOSE, RETURN_CREATE, RETURN_DETAILS

pytestmark = pytest.mark.usefixtures("small_settings")

TOKEN = "shpat_secret_token_value"
QUERY = RETURN_DETAILS
MUTATION = RETURN_CREATE
ORDER_DATA = {"order": {"id": "gid://shopify/Order/1", "name": "#1001"}}


class Harness:
    def __init__(self, url_template: str, max_throttle_wait_s: float = 30.0) -> None:
        self.records: list[CallRecord] = []
        self.sleeps: list[float] = []
        self.client = ShopifyClient(
            make_endpoint(url_template, TOKEN),
            on_call=self.records.append,
            max_throttle_wait_s=max_throttle_wait_s,
            sleep=self.sleeps.append,
            rng=random.Random(7),
        )

    @property
    def outcomes(self) -> list[str]:
        return [record.outcome for record in self.records]


def test_a_query_returns_data_and_sends_the_token_as_json() -> None:
    with scripted([ok(ORDER_DATA, cost=12, available=1988)]) as server:
        harness = Harness(server.url_template)
        data = harness.client.execute(QUERY, {"id": "gid://shopify/Order/1"})

    assert data == ORDER_DATA
    [request] = server.received
    assert request.path == "/admin/api/2026-07/graphql.json"
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
    assert request.headers["Content-Type"] == "application/json"
    assert request.body["query"] == QUERY
    assert request.body["variables"] == {"id": "gid://shopify/Order/1"}
    assert request.body["operationName"] == "ReturnDetails"
    [record] = harness.records
    assert (record.operation, record.outcome, record.http_status) == ("ReturnDetails", "ok", 200)
    assert (record.requested_cost, record.actual_cost) == (12, 12)
    assert record.duration_ms >= 0


def test_user_errors_are_returned_in_the_data_and_recorded_as_such() -> None:
    user_error = {"field": ["id"], "message": "Return status is invalid.", "code": "INVALID_STATE"}
    answer = {"returnClose": {"return": None, "userErrors": [user_error]}}
    with scripted([ok(answer)]) as server:
        harness = Harness(server.url_template)
        data = harness.client.execute(RETURN_CLOSE, {"id": "gid://shopify/Return/1"})

    assert data == answer
    assert harness.outcomes == ["user_errors"]
    assert "Return status is invalid." in (harness.records[0].detail or "")


def test_throttled_waits_for_the_requested_cost_to_refill_then_retries() -> None:
    # 82 points wanted, 32 available, 100/s restored: (82 - 32) / 100 = 0.5 s.
    with scripted([throttled(requested=82, available=32, rate=100), ok(ORDER_DATA)]) as server:
        harness = Harness(server.url_template)
        data = harness.client.execute(QUERY, {"id": "gid://shopify/Order/1"})

    assert data == ORDER_DATA
    assert harness.sleeps == [pytest.approx(0.5)]
    assert harness.outcomes == ["throttled", "ok"]
    assert harness.records[0].requested_cost == 82
    assert len(server.received) == 2 and server.received[0].body == server.received[1].body


def test_a_throttled_mutation_is_retried_since_shopify_did_not_run_it() -> None:
    answer = {"returnCreate": {"return": {"id": "gid://shopify/Return/9"}, "userErrors": []}}
    with scripted([throttled(requested=15, available=5, rate=50), ok(answer)]) as server:
        harness = Harness(server.url_template)
        assert harness.client.execute(MUTATION, {"returnInput": {}}) == answer

    assert harness.sleeps == [pytest.approx(0.2)]
    assert len(server.received) == 2


def test_a_throttle_wait_beyond_the_bound_is_handed_back_to_the_caller() -> None:
    # 1,000 points at 50/s is 20 s; with a 5 s bound the client must not sleep it.
    with scripted([throttled(requested=1000, available=0, rate=50)]) as server:
        harness = Harness(server.url_template, max_throttle_wait_s=5.0)
        with pytest.raises(Throttled) as raised:
            harness.client.execute(QUERY, {"id": "gid://shopify/Order/1"})

    assert raised.value.retry_after_s == pytest.approx(20.0)
    assert harness.sleeps == []
    assert len(server.received) == 1
    assert harness.outcomes == ["throttled"]


def test_throttle_waits_add_up_towards_the_bound() -> None:
    replies = [throttled(100, 0, 50), throttled(100, 0, 50), ok(ORDER_DATA)]  # 2 s each
    with scripted(replies) as server:
        harness = Harness(server.url_template, max_throttle_wait_s=3.0)
        with pytest.raises(Throttled):
            harness.client.execute(QUERY, {"id": "gid://shopify/Order/1"})

    assert harness.sleeps == [pytest.approx(2.0)]
    assert len(server.received) == 2


def test_http_429_honours_retry_after() -> None:
    replies = [
        Reply(429, {"errors": "Exceeded 2 calls per second"}, headers={"Retry-After": "2.0"}),
        ok(ORDER_DATA),
    ]
    with scripted(replies) as server:
        harness = Harness(server.url_template)
        data = harness.client.execute(MUTATION, {"returnInput": {}})

    assert data == ORDER_DATA
    assert harness.sleeps == [2.0]
    assert harness.outcomes == ["throttled", "ok"]
    assert harness.records[0].http_status == 429


def test_5xx_on_a_query_backs_off_with_jitter_then_succeeds() -> None:
    with scripted(
        [Reply(502, "bad gateway"), Reply(503, {"errors": "unavailable"}), ok(ORDER_DATA)]
    ) as server:
        harness = Harness(server.url_template)
        data = harness.client.execute(QUERY, {"id": "gid://shopify/Order/1"})

    assert data == ORDER_DATA
    settings = get_settings()
    # Full jitter: attempt n sleeps uniformly in [0, min(cap, base * 2^(n-1))].
    assert len(harness.sleeps) == 2
    for attempt, slept in enumerate(harness.sleeps, start=1):
        ceiling = min(settings.shopify_backoff_cap_s, settings.shopify_backoff_base_s * 2 ** (attempt - 1))
        assert 0.0 <= slept <= ceiling
    assert harness.outcomes == ["http_error", "http_error", "ok"]
    assert [r.http_status for r in harness.records] == [502, 503, 200]


def test_5xx_on_a_query_until_the_attempts_run_out_raises_unavailable() -> None:
    max_attempts = get_settings().shopify_max_attempts
    with scripted([Reply(503, "down")] * (max_attempts + 2)) as server:
        harness = Harness(server.url_template)
        with pytest.raises(ShopifyUnavailable) as raised:
            harness.client.execute(QUERY, {"id": "gid://shopify/Order/1"})

    assert not isinstance(raised.value, OutcomeUnknown)
    assert len(server.received) == max_attempts
    assert len(harness.sleeps) == max_attempts - 1
    assert harness.outcomes == ["http_error"] * max_attempts


def test_5xx_on_a_mutation_is_not_retried_the_outcome_is_unknown() -> None:
    with scripted([Reply(502, "bad gateway"), ok({})]) as server:
        harness = Harness(server.url_template)
        with pytest.raises(OutcomeUnknown):
            harness.client.execute(MUTATION, {"returnInput": {}})

    assert len(server.received) == 1
    assert harness.sleeps == []


def test_a_read_timeout_on_a_mutation_is_not_retried() -> None:
    # The answer is held back beyond the 0.3 s read timeout: Shopify may well have run it.
    with scripted([Reply(body={"data": {}}, delay_s=5.0), ok({})]) as server:
        harness = Harness(server.url_template)
        with pytest.raises(OutcomeUnknown):
            harness.client.execute(MUTATION, {"returnInput": {}})

    assert len(server.received) == 1
    assert harness.outcomes == ["timeout"]


def test_a_read_timeout_on_a_query_is_retried() -> None:
    with scripted([Reply(body={"data": {}}, delay_s=5.0), ok(ORDER_DATA)]) as server:
        harness = Harness(server.url_template)
        assert harness.client.execute(QUERY, {"id": "gid://shopify/Order/1"}) == ORDER_DATA

    assert len(server.received) == 2
    assert harness.outcomes == ["timeout", "ok"]


def test_a_connection_dropped_after_sending_a_mutation_is_not_retried() -> None:
    with scripted([Reply(drop=True), ok({})]) as server:
        harness = Harness(server.url_template)
        with pytest.raises(OutcomeUnknown):
            harness.client.execute(MUTATION, {"returnInput": {}})

    assert len(server.received) == 1
    assert harness.outcomes == ["connection_error"]


def test_a_mutation_that_never_connected_is_retried_then_unavailable() -> None:
    # Connection refused: Shopify never saw it, so retrying a mutation is safe.
    url = f"http://127.0.0.1:{closed_port()}/admin/api/{{version}}/graphql.json"
    harness = Harness(url)
    with pytest.raises(ShopifyUnavailable) as raised:
        harness.client.execute(MUTATION, {"returnInput": {}})

    assert not isinstance(raised.value, OutcomeUnknown)
    assert harness.outcomes == ["connection_error"] * get_settings().shopify_max_attempts


def test_access_denied_names_the_missing_scope() -> None:
    denied = {
        "errors": [
            {
                "message": "Access denied for returns field. Required access: `read_returns` access scope.",
                "locations": [{"line": 9, "column": 5}],
                "path": ["order", "returns"],
                "extensions": {
                    "code": "ACCESS_DENIED",
                    "documentation": "https://shopify.dev/api/usage/access-scopes",
                    "requiredAccess": "`read_returns` access scope.",
                },
            }
        ],
        "data": {"order": None},
    }
    with scripted([Reply(body=denied)]) as server:
        harness = Harness(server.url_template)
        with pytest.raises(AccessDenied) as raised:
            harness.client.execute(QUERY, {"id": "gid://shopify/Order/1"})

    assert raised.value.required_scopes == ("read_returns",)
    assert harness.outcomes == ["access_denied"]
    assert len(server.received) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_an_invalid_token_is_unauthorized_and_not_retried(status: int) -> None:
    body = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    with scripted([Reply(status, body), ok({})]) as server:
        harness = Harness(server.url_template)
        with pytest.raises(Unauthorized) as raised:
            harness.client.execute(QUERY, {"id": "gid://shopify/Order/1"})

    assert raised.value.http_status == status
    assert len(server.received) == 1
    assert TOKEN not in str(raised.value)


def test_resource_not_found_is_not_found() -> None:
    # As captured: a GID of the wrong type gives a top-level RESOURCE_NOT_FOUND and a null field.
    body = {
        "errors": [
            {
                "message": "Invalid id: gid://shopify/Return/15264809266",
                "locations": [{"line": 2, "column": 3}],
                "path": ["reverseDeliveryCreateWithShipping"],
                "extensions": {"code": "RESOURCE_NOT_FOUND"},
            }
        ],
        "data": {"reverseDeliveryCreateWithShipping": None},
    }
    with scripted([Reply(body=body)]) as server:
        harness = Harness(server.url_template)
        with pytest.raises(NotFound):
            harness.client.execute(QUERY, {"id": "gid://shopify/Return/15264809266"})
    assert harness.outcomes == ["graphql_error"]


def test_a_validation_error_is_permanent() -> None:
    body = {
        "errors": [
            {
                "message": "Field 'returnCreate' doesn't accept argument 'input'",
                "extensions": {
                    "code": "argumentNotAccepted",
                    "name": "returnCreate",
                    "argumentName": "input",
                },
            }
        ]
    }
    with scripted([Reply(body=body), ok({})]) as server:
        harness = Harness(server.url_template)
        with pytest.raises(ShopifyGraphQLError) as raised:
            harness.client.execute(MUTATION, {"input": {}})

    assert not isinstance(raised.value, NotFound)
    assert len(server.received) == 1
    assert "doesn't accept argument" in str(raised.value)


def test_the_token_never_reaches_call_records() -> None:
    replies = [throttled(20, 0, 100), Reply(502, "bad"), Reply(401, {"errors": "bad token"})]
    with scripted(replies) as server:
        harness = Harness(server.url_template)
        with pytest.raises(Unauthorized):
            harness.client.execute(QUERY, {"id": "gid://shopify/Order/1"})

    assert len(harness.records) == 3
    assert all(TOKEN not in repr(record) for record in harness.records)
    assert TOKEN not in repr(harness.client.endpoint)


def test_a_failing_recorder_does_not_fail_the_call() -> None:
    def broken(record: CallRecord) -> None:
        raise RuntimeError("database down")

    with scripted([ok(ORDER_DATA)]) as server:
        client = ShopifyClient(make_endpoint(server.url_template), on_call=broken, sleep=lambda s: None)
        assert client.execute(QUERY, {"id": "gid://shopify/Order/1"}) == ORDER_DATA


def test_one_session_per_process_rebuilt_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    first = client_module.get_session()
    assert client_module.get_session() is first
    real_pid = client_module.os.getpid()
    monkeypatch.setattr(client_module.os, "getpid", lambda: real_pid + 1)  # as in a forked child
    assert client_module.get_session() is not first


def test_calls_ignore_proxy_variables_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy must be chosen in settings: requests would otherwise read these (and ~/.netrc) on
    # every call. Both point at a port nobody listens on, so honouring them would fail the call.
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client_module.reset_session()
    with scripted([ok(ORDER_DATA)]) as server:
        data = Harness(server.url_template).client.execute(QUERY, {"id": "gid://shopify/Order/1"})
    assert data == ORDER_DATA
    assert [r.path for r in server.received] == ["/admin/api/2026-07/graphql.json"]


def test_calls_go_through_the_proxy_of_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # The scripted server plays the proxy: a plain-HTTP proxy receives the absolute URL of a shop
    # that this test never resolves itself.
    with scripted([ok(ORDER_DATA)]) as proxy:
        monkeypatch.setenv("SHOPIFY_PROXY_URL", f"http://127.0.0.1:{proxy.port}")
        get_settings.cache_clear()
        client_module.reset_session()
        shop_url = "http://{shop}/admin/api/{version}/graphql.json"
        data = Harness(shop_url).client.execute(QUERY, {"id": "gid://shopify/Order/1"})
    assert data == ORDER_DATA
    [request] = proxy.received
    assert request.path == "http://acme-nl.myshopify.com/admin/api/2026-07/graphql.json"
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
