"""The development kit: a development PKI (CA, unit and server certificates) and sample
dossiers. Used by `interchange dev-setup`, `sample`, the tests and the benchmarks; nothing in
the server's receiving path imports it."""
