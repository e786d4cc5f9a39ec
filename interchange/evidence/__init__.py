"""Evidence bundles: a dossier's original, notices, signer chains, revocation data and audit
entries in a signed ZIP, and the offline verifier auditors run years later."""
