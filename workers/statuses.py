"""Every status word of the sync, one enum each. Migration 0002 mirrors them as SQL CHECKs, and
tests/test_statuses.py keeps the two equal, so a value Python can write is one Postgres accepts.

They are ``StrEnum``s: a member is its string, so it goes into SQL parameters, JSON and logs as
the word itself, and a string read back from Postgres converts with ``EventStatus(value)``.
"""

from __future__ import annotations

from enum import StrEnum


class ReturnState(StrEnum):
    """The platform's lifecycle of a return (PRODUCT.md §2)."""

    REQUESTED = "requested"
    CREATED = "created"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def rank(self) -> int:
        """requested < created < completed = cancelled (the two terminal states rank equal)."""
        return _RANK[self]

    @property
    def is_terminal(self) -> bool:
        return self in (ReturnState.COMPLETED, ReturnState.CANCELLED)


_RANK = {
    ReturnState.REQUESTED: 0,
    ReturnState.CREATED: 1,
    ReturnState.COMPLETED: 2,
    ReturnState.CANCELLED: 2,
}


class EventType(StrEnum):
    REQUESTED = "return.requested"
    CREATED = "return.created"
    COMPLETED = "return.completed"
    CANCELLED = "return.cancelled"

    @property
    def state(self) -> ReturnState:
        return ReturnState(self.removeprefix("return."))

    @property
    def needs_refund_method(self) -> bool:
        """These types create the Shopify return, which carries the refund-method tag."""
        return self in (EventType.REQUESTED, EventType.CREATED)


class EventStatus(StrEnum):
    """Where one stored event stands (INGEST.md, the status API's ``events[].status``)."""

    ACCEPTED = "accepted"
    APPLIED = "applied"
    SUPERSEDED = "superseded"
    WAITING = "waiting"
    REJECTED = "rejected"
    CONFLICT = "conflict"
    FAILED = "failed"

    @property
    def is_open(self) -> bool:
        """Still work to do: a run will pick the event up."""
        return self in OPEN_EVENT_STATUSES


OPEN_EVENT_STATUSES = frozenset({EventStatus.ACCEPTED, EventStatus.WAITING})
FINAL_EVENT_STATUSES = frozenset(EventStatus) - OPEN_EVENT_STATUSES


class SyncState(StrEnum):
    """Where a return stands as a whole (the status API's ``sync``)."""

    SYNCED = "synced"
    PENDING = "pending"
    WAITING = "waiting"
    REJECTED = "rejected"
    CONFLICT = "conflict"
    FAILED = "failed"


class ShopifyStatus(StrEnum):
    """``Return.status`` on Shopify, and the lifecycle state each one stands for."""

    REQUESTED = "REQUESTED"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    DECLINED = "DECLINED"
    CANCELED = "CANCELED"

    @property
    def state(self) -> ReturnState:
        return _SHOPIFY_STATE[self]

    @property
    def holds_items(self) -> bool:
        """A declined or cancelled return gave its items back; the others still hold them."""
        return self in (ShopifyStatus.REQUESTED, ShopifyStatus.OPEN, ShopifyStatus.CLOSED)


_SHOPIFY_STATE = {
    ShopifyStatus.REQUESTED: ReturnState.REQUESTED,
    ShopifyStatus.OPEN: ReturnState.CREATED,
    ShopifyStatus.CLOSED: ReturnState.COMPLETED,
    ShopifyStatus.DECLINED: ReturnState.CANCELLED,
    ShopifyStatus.CANCELED: ReturnState.CANCELLED,
}


class Step(StrEnum):
    """A step of a plan, in the vocabulary of the Shopify mutation it stands for."""

    REQUEST = "request"  # returnRequest
    CREATE = "create"  # returnCreate
    APPROVE = "approve"  # returnApproveRequest
    DECORATE = "decorate"  # tracking on the reverse delivery, refund-method tag, exchange note
    CLOSE = "close"  # returnClose
    DECLINE = "decline"  # returnDeclineRequest
    CANCEL = "cancel"  # returnCancel
    UNTAG = "untag"  # tagsRemove of the refund-method tag


class RunOutcome(StrEnum):
    """What one apply run of an order achieved: the ``attempts.outcome`` of its row."""

    APPLIED = "applied"  # every open return reached a final state or synced
    WAITING = "waiting"  # some return waits (fulfilment, reinstall); the sweep rings it when due
    RETRY = "retry"  # a failed attempt (Shopify down, an unexpected error): back after a backoff
    THROTTLED = "throttled"  # the shop's API budget; not a failure, never counted
    BUSY = "busy"  # another worker holds the order; not a failure
    LOST_LOCK = "lost_lock"  # another worker took the order over mid-run; it carries on
    FAILED = "failed"  # dead-lettered: out of attempts
    IDLE = "idle"  # nothing open
    MISSING = "missing"  # no such order row

    @property
    def comes_back(self) -> bool:
        """The task re-schedules itself after the run's delay."""
        return self in (RunOutcome.RETRY, RunOutcome.THROTTLED, RunOutcome.BUSY)


class Category(StrEnum):
    """Why a return is not synced: the stable codes of the error inbox (``returns.category``)."""

    ORDER_NOT_FULFILLED = "order_not_fulfilled"  # waits for the merchant to fulfil
    ORDER_NOT_FOUND = "order_not_found"  # Shopify does not know the order the event names
    ITEM_ALREADY_RETURNED = "item_already_returned"  # the same item returned twice (FAQ check 3)
    MISSING_SCOPES = "missing_scopes"  # the token lacks the returns scopes (FAQ check 1)
    ACCESS_REFUSED = "access_refused"  # the token or its refresh was refused: reinstall
    APP_UNINSTALLED = "app_uninstalled"
    SHOPIFY_UNAVAILABLE = "shopify_unavailable"  # 5xx, timeouts: retried by the policy
    BUDGET = "budget"  # the shop's API budget: not a failure, waits for the bucket
    CONFLICT = "conflict"  # completed and cancelled both arrived, or Shopify's state moved
    REJECTED = "rejected"  # Shopify refused the request for another reason
    INVALID_EVENT = "invalid_event"  # a stored event no longer validates
    INTERNAL_ERROR = "internal_error"  # an unexpected exception (a bug): retried, then failed
    DRIFT = "drift"  # Shopify's state changed under us after the sync (reconciliation)
    QUERY_TOO_COSTLY = "query_too_costly"  # a read the shop's bucket can never serve, even reshaped


class Severity(StrEnum):
    INFO = "info"  # expected to heal by itself (waiting for fulfilment, the budget)
    WARNING = "warning"  # needs the merchant or is being retried
    ERROR = "error"  # needs an operator: failed for good, rejected, a bug


class CallOutcome(StrEnum):
    """How one HTTP exchange with Shopify ended (``shopify_calls.outcome``)."""

    OK = "ok"
    USER_ERRORS = "user_errors"
    THROTTLED = "throttled"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    ACCESS_DENIED = "access_denied"
    GRAPHQL_ERROR = "graphql_error"
