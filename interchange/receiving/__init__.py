"""The receipt use case: what a submitted dossier becomes, decided the same way for the HTTP
server, the `check` command and the tests."""
