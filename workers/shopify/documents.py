"""Every GraphQL document the sync sends to Shopify, one named operation per constant.

Kept as constants (never built at run time) so each one is validated against the pinned schemas by
tests/shopify/test_documents.py, and so the stand-in's per-text validation cache always hits.

Query cost: Shopify refuses a single query above 1,000 points, and a connection costs its ``first``
times its node cost. A run reads everything it needs in one ``OrderSnapshot``: the order, its line
items, its returns in full and what is still returnable (plus the shop's reason definitions the
first time). Its page sizes are variables (``SNAPSHOT_PAGES``) chosen to keep it well under the
limit; an order with more of anything is read on in pages, and a shop whose bucket cannot hold
the snapshot gets it in smaller pages (``workers.shopify.api``).

Mutations that do not need each other's results are sent together in one document
(``workers.shopify.batch`` composes them from the single-mutation documents here).

``notifyCustomer: false`` is written into every mutation that has the argument (the returns
platform, not Shopify, talks to the buyer). Where the flag sits inside an input object it is set by
workers/shopify/api.py in the variables.
"""

from __future__ import annotations


# Fields of a Return that the sync needs: lines (to recognise a return created by an earlier attempt
# whose answer was lost), reverse fulfilment orders (where tracking goes) and their tracking. The
# snapshot's copy takes its line page size from the operation's $items (see SNAPSHOT_PAGES); a
# single return (a mutation's answer, a detail read) gets up to 50 lines.
def _return_fields(fragment: str, lines: str) -> str:
    return f"""
fragment {fragment} on Return {{
  id
  name
  status
  returnLineItems(first: {lines}) {{
    nodes {{
      ... on ReturnLineItem {{
        id
        quantity
        fulfillmentLineItem {{
          id
          lineItem {{
            id
          }}
        }}
      }}
    }}
  }}
  reverseFulfillmentOrders(first: 2) {{
    nodes {{
      id
      reverseDeliveries(first: 3) {{
        nodes {{
          id
          deliverable {{
            ... on ReverseDeliveryShippingDeliverable {{
              tracking {{
                number
                url
              }}
            }}
          }}
        }}
      }}
    }}
  }}
}}
"""


_RETURN_FIELDS = _return_fields("ReturnFields", "50")
_SNAPSHOT_RETURN_FIELDS = _return_fields("SnapshotReturnFields", "$items")

# Return mutations answer with ReturnUserError, which has a code; tagsAdd/orderUpdate answer with
# UserError, which does not.
_RETURN_USER_ERRORS = """
    userErrors {
      field
      message
      code
    }
"""

ACCESS_SCOPES = """
query AccessScopes {
  currentAppInstallation {
    accessScopes {
      handle
    }
  }
}
"""

FIND_ORDER_BY_NAME = """
query FindOrderByName($query: String!) {
  orders(first: 1, query: $query) {
    nodes {
      id
      name
    }
  }
}
"""

# The one read of a run. Paged on by the *_PAGE documents below when a connection has more.
_SNAPSHOT_BODY = """
  order(id: $id) {
    id
    name
    tags
    note
    lineItems(first: $lines) {
      nodes {
        id
        quantity
        unfulfilledQuantity
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
    returns(first: $returns) {
      nodes {
        ...SnapshotReturnFields
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
  returnableFulfillments(orderId: $id, first: $fulfillments) {
    ...ReturnableFields
  }
"""

_RETURNABLE_FIELDS = """
fragment ReturnableFields on ReturnableFulfillmentConnection {
  nodes {
    id
    returnableFulfillmentLineItems(first: $items) {
      nodes {
        quantity
        fulfillmentLineItem {
          id
          lineItem {
            id
          }
        }
      }
    }
  }
  pageInfo {
    hasNextPage
    endCursor
  }
}
"""

_REASON_FIELDS = """
fragment ReasonFields on ReturnReasonDefinitionConnection {
  nodes {
    id
    handle
    deleted
  }
  pageInfo {
    hasNextPage
    endCursor
  }
}
"""

ORDER_SNAPSHOT = (
    "query OrderSnapshot($id: ID!, $lines: Int!, $returns: Int!, $fulfillments: Int!, $items: Int!) {"
    + _SNAPSHOT_BODY
    + "}\n"
    + _SNAPSHOT_RETURN_FIELDS
    + _RETURNABLE_FIELDS
)

# The same, plus the shop's return reason definitions: a process's first read of a shop.
ORDER_SNAPSHOT_WITH_REASONS = (
    "query OrderSnapshotWithReasons($id: ID!, $lines: Int!, $returns: Int!, $fulfillments: Int!,"
    " $items: Int!, $reasons: Int!) {"
    + _SNAPSHOT_BODY
    + """
  returnReasonDefinitions(first: $reasons) {
    ...ReasonFields
  }
}
"""
    + _SNAPSHOT_RETURN_FIELDS
    + _RETURNABLE_FIELDS
    + _REASON_FIELDS
)

# Page sizes of the snapshot. An order with more line items, returns or fulfilments than a page
# holds is read on in pages. `items` is the page of lines inside each return and each returnable
# fulfilment: those nested lists have no cursor of their own in the snapshot, so when one comes
# back full the whole snapshot is read again with ITEMS_PAGES' next size (50 is the last: 250
# would request 2,600 points, over Shopify's 1,000-point limit for one query). Ten lines cover
# almost every return, and keep the snapshot at about 200 points by Shopify's published rule (300
# with the reasons) where 50 cost 600: a shop's bucket holds several reads at once. A return has
# one reverse fulfilment order (two after a split) with one delivery per label.
SNAPSHOT_PAGES: dict[str, int] = {"lines": 50, "returns": 2, "fulfillments": 3, "items": 10, "reasons": 100}
ITEMS_PAGES: tuple[int, ...] = (10, 50)

ORDER_LINES_PAGE = """
query OrderLinesPage($id: ID!, $first: Int!, $after: String) {
  order(id: $id) {
    lineItems(first: $first, after: $after) {
      nodes {
        id
        quantity
        unfulfilledQuantity
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
}
"""

ORDER_RETURNS_PAGE = (
    """
query OrderReturnsPage($id: ID!, $first: Int!, $items: Int!, $after: String) {
  order(id: $id) {
    returns(first: $first, after: $after) {
      nodes {
        ...SnapshotReturnFields
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
}
"""
    + _SNAPSHOT_RETURN_FIELDS
)

RETURN_DETAILS = (
    """
query ReturnDetails($id: ID!) {
  return(id: $id) {
    ...ReturnFields
  }
}
"""
    + _RETURN_FIELDS
)

# What is still returnable, paged by fulfilment ($items lines each).
RETURNABLE_FULFILLMENTS = (
    """
query ReturnableFulfillments($orderId: ID!, $first: Int!, $items: Int!, $after: String) {
  returnableFulfillments(orderId: $orderId, first: $first, after: $after) {
    ...ReturnableFields
  }
}
"""
    + _RETURNABLE_FIELDS
)

# Every definition of the shop (about twenty) in one page; paged in case a shop has more.
RETURN_REASON_DEFINITIONS = (
    """
query ReturnReasonDefinitions($first: Int!, $after: String) {
  returnReasonDefinitions(first: $first, after: $after) {
    ...ReasonFields
  }
}
"""
    + _REASON_FIELDS
)


def _return_mutation(operation: str, params: str, call: str) -> str:
    """A return mutation answering with the return's fields and its userErrors (all six do)."""
    return (
        f"""
mutation {operation}({params}) {{
  {call} {{
    return {{
      ...ReturnFields
    }}
{_RETURN_USER_ERRORS}  }}
}}
"""
        + _RETURN_FIELDS
    )


RETURN_REQUEST = _return_mutation(
    "ReturnRequest", "$input: ReturnRequestInput!", "returnRequest(input: $input)"
)
# returnCreate takes `returnInput:`, unlike the other return mutations (`input:` / `id:`).
RETURN_CREATE = _return_mutation(
    "ReturnCreate", "$returnInput: ReturnInput!", "returnCreate(returnInput: $returnInput)"
)
RETURN_APPROVE_REQUEST = _return_mutation(
    "ReturnApproveRequest", "$input: ReturnApproveRequestInput!", "returnApproveRequest(input: $input)"
)
RETURN_DECLINE_REQUEST = _return_mutation(
    "ReturnDeclineRequest", "$input: ReturnDeclineRequestInput!", "returnDeclineRequest(input: $input)"
)
RETURN_CLOSE = _return_mutation("ReturnClose", "$id: ID!", "returnClose(id: $id)")
# notifyCustomer on returnCancel is deprecated ("Not supported") in 2026-04 and 2026-07; it is sent
# anyway because the rule is "false wherever the API has it", and the schema tests will flag the
# version that removes it.
RETURN_CANCEL = _return_mutation("ReturnCancel", "$id: ID!", "returnCancel(id: $id, notifyCustomer: false)")

# An empty reverseDeliveryLineItems list means "every line of the reverse fulfilment order, in full"
# (schema docs), which is what a platform return label covers. notifyCustomer defaults to *true*
# on this mutation, so false here is essential.
REVERSE_DELIVERY_CREATE_WITH_SHIPPING = """
mutation ReverseDeliveryCreateWithShipping(
  $reverseFulfillmentOrderId: ID!
  $trackingInput: ReverseDeliveryTrackingInput
) {
  reverseDeliveryCreateWithShipping(
    reverseFulfillmentOrderId: $reverseFulfillmentOrderId
    reverseDeliveryLineItems: []
    trackingInput: $trackingInput
    notifyCustomer: false
  ) {
    reverseDelivery {
      id
      deliverable {
        ... on ReverseDeliveryShippingDeliverable {
          tracking {
            number
            url
          }
        }
      }
    }
    userErrors {
      field
      message
      code
    }
  }
}
"""


def _tags_mutation(operation: str, field: str) -> str:
    """tagsAdd / tagsRemove: additive, unlike orderUpdate(tags:), which overwrites every tag."""
    return f"""
mutation {operation}($id: ID!, $tags: [String!]!) {{
  {field}(id: $id, tags: $tags) {{
    node {{
      ... on Order {{
        id
        tags
      }}
    }}
    userErrors {{
      field
      message
    }}
  }}
}}
"""


TAGS_ADD = _tags_mutation("TagsAdd", "tagsAdd")
TAGS_REMOVE = _tags_mutation("TagsRemove", "tagsRemove")

# Only ever sent with {id, note}: orderUpdate overwrites whatever fields it is given (tags included).
ORDER_UPDATE_NOTE = """
mutation OrderUpdateNote($input: OrderInput!) {
  orderUpdate(input: $input) {
    order {
      id
      note
    }
    userErrors {
      field
      message
    }
  }
}
"""

# Per-shop subscriptions to the topics that wake waiting returns (app/uninstalled and the compliance
# topics are app-wide, in config/shopify.app.toml). "Address already taken" is a success for us.
WEBHOOK_SUBSCRIPTION_CREATE = """
mutation WebhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, $uri: String!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: {uri: $uri, format: JSON}) {
    webhookSubscription {
      id
    }
    userErrors {
      field
      message
    }
  }
}
"""

ALL_DOCUMENTS: dict[str, str] = {
    "ACCESS_SCOPES": ACCESS_SCOPES,
    "FIND_ORDER_BY_NAME": FIND_ORDER_BY_NAME,
    "ORDER_SNAPSHOT": ORDER_SNAPSHOT,
    "ORDER_SNAPSHOT_WITH_REASONS": ORDER_SNAPSHOT_WITH_REASONS,
    "ORDER_LINES_PAGE": ORDER_LINES_PAGE,
    "ORDER_RETURNS_PAGE": ORDER_RETURNS_PAGE,
    "RETURN_DETAILS": RETURN_DETAILS,
    "RETURNABLE_FULFILLMENTS": RETURNABLE_FULFILLMENTS,
    "RETURN_REASON_DEFINITIONS": RETURN_REASON_DEFINITIONS,
    "RETURN_REQUEST": RETURN_REQUEST,
    "RETURN_CREATE": RETURN_CREATE,
    "RETURN_APPROVE_REQUEST": RETURN_APPROVE_REQUEST,
    "RETURN_DECLINE_REQUEST": RETURN_DECLINE_REQUEST,
    "RETURN_CLOSE": RETURN_CLOSE,
    "RETURN_CANCEL": RETURN_CANCEL,
    "REVERSE_DELIVERY_CREATE_WITH_SHIPPING": REVERSE_DELIVERY_CREATE_WITH_SHIPPING,
    "TAGS_ADD": TAGS_ADD,
    "TAGS_REMOVE": TAGS_REMOVE,
    "ORDER_UPDATE_NOTE": ORDER_UPDATE_NOTE,
    "WEBHOOK_SUBSCRIPTION_CREATE": WEBHOOK_SUBSCRIPTION_CREATE,
}
