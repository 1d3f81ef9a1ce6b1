"""Every error the Shopify client raises, and what each one means for the caller.

Kept apart from the client so the retry policy (``workers.retry``) can name them without importing
the HTTP machinery.
"""

from __future__ import annotations

from typing import Any

_DETAIL_MAX = 2000


class ShopifyError(Exception):
    """Base of every error this client raises."""


class ShopifyUnavailable(ShopifyError):
    """Shopify could not be reached or kept failing: transient, a failed attempt of the run."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OutcomeUnknown(ShopifyUnavailable):
    """A mutation may or may not have been applied: never re-sent by the client; the run re-reads
    Shopify before deciding (a create is adopted, a state transition re-planned)."""


class Throttled(ShopifyUnavailable):
    """The shop's API budget needs longer than we are willing to wait in-process. Not a failure:
    the work comes back after ``retry_after_s`` and the attempt is not counted."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"throttled by Shopify; retry after {retry_after_s:.1f}s", retry_after_s)


class CostTooHigh(ShopifyError):
    """A request whose requested cost this shop can never serve: above its bucket (it would be
    THROTTLED forever) or above Shopify's 1,000-point single-query limit (``MAX_COST_EXCEEDED``).
    Not sent again as it is: the caller asks for smaller pages, or gives up with this detail."""

    def __init__(self, operation: str, requested: float, limit: float) -> None:
        super().__init__(
            f"{operation} requests {requested:.0f} cost points; this shop can serve at most {limit:.0f}"
        )
        self.operation = operation
        self.requested = requested
        self.limit = limit


class Unauthorized(ShopifyError):
    """HTTP 401/403: the token is invalid or revoked (the app was uninstalled)."""

    def __init__(self, http_status: int) -> None:
        super().__init__(f"Shopify refused the access token (HTTP {http_status})")
        self.http_status = http_status


class AccessDenied(ShopifyError):
    """The token works but lacks a scope (``ACCESS_DENIED``): the shop needs a reinstall."""

    def __init__(self, required_scopes: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.required_scopes = required_scopes


class ShopifyGraphQLError(ShopifyError):
    """Top-level GraphQL errors (validation, bad variables...): permanent, a bug on our side."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(error.get("message", error)) for error in errors)[:_DETAIL_MAX])
        self.errors = errors


class NotFound(ShopifyGraphQLError):
    """``RESOURCE_NOT_FOUND``: a GID of the wrong type or one Shopify does not know."""


class TransientError(ShopifyError):
    """One exchange failed in a way worth retrying (5xx, timeout, connection error on a request
    Shopify has not acted on). The client's call policy retries it; after the last attempt the
    caller gets ``ShopifyUnavailable``. ``never_sent``: the connection was never established."""

    def __init__(self, message: str, *, never_sent: bool = False) -> None:
        super().__init__(message)
        self.never_sent = never_sent


class ShopifyHTTPError(ShopifyError):
    """Any other 4xx (402 frozen shop, 404 unknown shop, 423 locked shop): not retried here."""

    def __init__(self, http_status: int, body: str) -> None:
        super().__init__(f"HTTP {http_status} from Shopify: {body[:200]}")
        self.http_status = http_status
