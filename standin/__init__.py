"""A local Shopify stand-in: the Admin GraphQL API for returns, over in-memory dev stores."""
