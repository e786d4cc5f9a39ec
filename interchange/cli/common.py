"""What every `interchange` command shares: exit codes, the config, the problem list, errors
that end a command with one line (never a traceback), and files written only when allowed."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from interchange.config import Config, load_config
from interchange.spool import LARGE, Spooled

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """Ends the command with `interchange CMD: message` on stderr and `code` (no traceback)."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


def config_of(args) -> Config:
    try:
        return load_config(getattr(args, "config", None))
    except tomllib.TOMLDecodeError as exc:
        named = getattr(args, "config", None) or os.environ.get("INTERCHANGE_CONFIG") or "config.toml"
        raise CliError(f"config {named}: not valid TOML ({exc})") from None


def print_problems(problems: list[dict], out=None) -> None:
    """The problem list, to `out` or else to the `sys.stdout` of the moment (looked up at each
    call, so that a redirection, e.g. `contextlib.redirect_stdout`, catches it)."""
    out = out or sys.stdout
    for p in problems:
        where = p.get("xpath") or "/"
        if p.get("line") is not None:
            where += f" (line {p['line']})"
        form = f" [{p['form']}]" if p.get("form") else ""
        out.write(f"  {p['severity']:<7} {p['layer']:<9} {p['code']:<22}{form} {where}\n")
        out.write(f"          {p.get('message_en') or p['message_vi']}\n")
        if p.get("message_en"):
            out.write(f"          {p['message_vi']}\n")


def say(args, message: str) -> None:
    """A line for the person at the terminal (stderr: stdout stays the command's output)."""
    print(f"interchange {getattr(args, 'cmd', '')}: {message}", file=sys.stderr)


def writable(path: str | Path, *, force: bool, source: str | Path | None = None) -> Path:
    """`path`, when the command may write it: a file that exists (the input above all) is
    replaced only with `--force`; a folder never."""
    out = Path(path)
    if out.is_dir():
        raise CliError(f"{out} is a folder; give a file name")
    if source is not None and out.exists() and out.resolve() == Path(source).resolve() and not force:
        raise CliError(f"{out} is the input file; refusing to overwrite it (give another -o, or --force)")
    if out.exists() and not force:
        raise CliError(f"{out} exists; refusing to overwrite it (give another -o, or --force)")
    if not out.parent.exists():
        raise CliError(f"no folder {out.parent} for {out}")
    return out


def read_input(path: str | Path) -> bytes:
    """A file's bytes, or a usage error that says why not."""
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{p} is a folder, not a file")
    if not p.exists():
        raise CliError(f"no such file: {p}")
    return p.read_bytes()


def open_input(path: str | Path) -> bytes | Spooled:
    """`read_input`, but a large file (from `spool.LARGE`) as itself, to be read a few MiB at a time
    (the caller never removes it)."""
    p = Path(path)
    if p.is_file() and (size := p.stat().st_size) >= LARGE:
        return Spooled(str(p), size)
    return read_input(p)
