"""The `interchange` command's parser and entry point: every subcommand, `--version`, and one
line (never a traceback) for whatever goes wrong."""

from __future__ import annotations

import argparse
import os
import sys

from interchange.cli import cards, checks, client, files, operate
from interchange.cli.common import EXIT_FAILED, EXIT_USAGE, CliError, print_problems

DESCRIPTION = """\
interchange: the electronic transaction interchange server for Vietnam's social insurance
dossiers, and its command line.

  where the server runs:  serve, dev-setup, pki, keys, audit, rules, codes
  files, offline:         sample, sign, check, verify, evidence
  a client of a server:   submit, dossiers, hi-card  (--url/--api-key, $INTERCHANGE_URL and
                          $INTERCHANGE_API_KEY, or ~/.config/interchange/client.toml)

Exit status: 0 success, 1 the file, dossier or server said no (or failed), 2 a usage error."""

DEBUG_ENV = "INTERCHANGE_DEBUG"  # set to 1: let unexpected errors raise with their traceback


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("interchange")
    except PackageNotFoundError:
        return "unknown (not installed)"


class Parser(argparse.ArgumentParser):
    """Every (sub)command takes --config and --quiet, before or after its name (SPEC §10:
    `serve [--config FILE]`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--config", default=argparse.SUPPRESS, help="config file (default: $INTERCHANGE_CONFIG, else ./config.toml)"
        )
        self.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                          help="no progress lines on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="interchange", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=Parser, metavar="COMMAND")
    operate.add_commands(sub)
    files.add_commands(sub)
    checks.add_commands(sub)
    client.add_commands(sub)
    cards.add_command(sub)
    return parser


def command_tree(parser: argparse.ArgumentParser | None = None, path: str = "interchange"):
    """Every (sub)command: (its path, its help line, its options as (names, help)), depth first,
    for the help checks (tests/test_cli_surface.py) without reaching into argparse from outside."""
    parser = parser or build_parser()
    options, subcommands = [], []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest: a.help for a in action._choices_actions}
            subcommands += [(name, helped.get(name), sub) for name, sub in action.choices.items()]
        else:
            options.append(("/".join(action.option_strings) or action.dest, action.help))
    yield path, options, [(name, line) for name, line, _ in subcommands]
    for name, _line, sub in subcommands:
        yield from command_tree(sub, f"{path} {name}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.quiet = getattr(args, "quiet", False)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"interchange {args.cmd}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"interchange {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback: see _say_why
        if os.environ.get(DEBUG_ENV):
            raise
        return _say_why(args, exc)


def _say_why(args, exc: Exception) -> int:
    """What went wrong, in a line or a problem list; the exit status it deserves."""
    from interchange.errors import Refusal

    name = f"interchange {args.cmd}"
    if isinstance(exc, Refusal):  # e.g. `sign` of a file that is not XML
        print(f"{name}: {getattr(args, 'file', 'the input')} cannot be read:", file=sys.stderr)
        print_problems([p.as_dict() for p in exc.problems], out=sys.stderr)
        return EXIT_USAGE
    from interchange.store.db import StoreUnavailable

    if isinstance(exc, StoreUnavailable):
        print(f"{name}: the database cannot be used ({exc}); is it running, and is [store] url right?",
              file=sys.stderr)
        return EXIT_FAILED
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError, ValueError)):
        print(f"{name}: {exc}", file=sys.stderr)  # bad config values, times, keys, files: say what
        return EXIT_USAGE
    if isinstance(exc, OSError):  # e.g. a store that is not there
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{name}: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
