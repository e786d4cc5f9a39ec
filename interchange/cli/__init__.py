"""The `interchange` command (SPEC §10), one module per concern:

  main      the parser, `--version`, the entry point (`interchange`, `python -m interchange`)
  operate   where the server runs: serve, dev-setup, pki, keys, audit verify, rules, codes
  files     sample, sign
  checks    check, verify, evidence verify (offline)
  client    submit, dossiers list/show/notice/original/evidence (a client of a server)
  cards     hi-card (a client of a server)
  remote    which server and key (flags, environment, client config) and the HTTP client
  progress  progress lines on stderr
  common    exit codes, the config, the problem list, errors, files written only when allowed
"""

from interchange.cli.main import build_parser, command_tree, main

__all__ = ["build_parser", "command_tree", "main"]
