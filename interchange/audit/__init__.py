"""The audit log's hash chain: entries, hashing and checking, without a database
(`interchange.store.audit` appends; `interchange.evidence` puts excerpts in bundles)."""
