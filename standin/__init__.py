"""A local Shopify stand-in: the Admin GraphQL API for returns over in-memory dev stores, plus
Shopify's app side (OAuth, the token endpoint, expiring tokens) and signed webhooks."""
