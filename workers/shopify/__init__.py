"""Shopify Admin GraphQL: the documents the sync sends, the HTTP client and typed operations."""
