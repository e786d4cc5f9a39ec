"""Audit: the hash-chained log of what the server did, and evidence bundles checked offline."""
