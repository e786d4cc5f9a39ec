"""A large form's XSD validation in a forked process, beside the streaming pass over the same file
in this one (`trust/streaming.py`): on two cores the pass that canonicalises the rows and the one
that validates them run at once. A 50,000-row dossier is answered 0.5-0.7 s sooner, for about
0.7 s of CPU on the other core (the helper parses the form again, building no tree: about what
validating inside the single pass costs, so the dossier takes about 5 % more CPU in all). Linux
only (fork, and a child that dies with its parent); elsewhere, or when fork fails, there is no
helper and the caller validates in its own pass.

The child runs the same libxml2 streaming validation as `iterparse(schema=...)` in the single
pass (the schema, already compiled, comes with the fork), for a parser target that builds no
tree. Well-formedness is judged by the pass beside it, which parses without a schema (lxml
reports every syntax error there): together they give the single pass's verdict. The child only
parses and validates, reports one byte, and ends with `os._exit` (no atexit handlers, no
finalisers, no buffers flushed: nothing of the parent's is touched). It is killed with its parent
(a worker past its CPU budget is SIGKILLed; its helper must not live on).
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys

from lxml import etree

from interchange.xmlparse import PARSE_OPTIONS

_PR_SET_PDEATHSIG = 1
_VALID, _INVALID = b"1", b"0"


class Aside:
    """A validation running in a child process; `valid` or `cancel` it, once."""

    def __init__(self, pid: int, fd: int):
        self.pid = pid
        self._fd = fd
        self._done = False

    def valid(self) -> bool:
        """Wait for the child's verdict: True only when it validated the whole file."""
        try:
            got = os.read(self._fd, 1)  # b"" when the child ended without a verdict
        except OSError:
            got = b""
        self._end(kill=False)
        return got == _VALID

    def cancel(self) -> None:
        """The verdict is not wanted (the pass here failed first): end the child now. Nothing
        once `valid` has answered."""
        self._end(kill=True)

    def _end(self, kill: bool) -> None:
        if self._done:
            return
        self._done = True
        os.close(self._fd)
        if kill:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:  # reaped already (by a SIGCHLD handler of the process)
            pass


def validate_aside(path: str, schema: etree.XMLSchema) -> Aside | None:
    """Start validating the XML file at `path` against `schema` in a forked process; None where
    that cannot be done here (not Linux, or fork failed): the caller validates itself."""
    if not sys.platform.startswith("linux") or _libc is None:
        return None
    parent = os.getpid()
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:  # the child: never returns
        code = 1
        try:
            gc.disable()  # no finaliser of an object copied from the parent runs here
            os.close(r)
            # sent when the thread that forked ends: a worker's main thread, which lives as long as it
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() == parent:  # else the parent died before the line above
                os.write(w, _VALID if _valid(path, schema) else _INVALID)
                code = 0
        finally:
            os._exit(code)
    os.close(w)
    return Aside(pid, r)


class _NoTree:
    """A parser target without callbacks: libxml2 parses and validates, nothing is built or
    called back (bounded memory at any size, and no Python per element)."""

    def close(self) -> None:
        return None


def _valid(path: str, schema: etree.XMLSchema) -> bool:
    """The file against the schema. Parsed for a target that builds nothing, libxml2's validation
    runs as in `iterparse(schema=...)` (the same SAX-plugged validator) without the tree: 0.66-0.71
    s of CPU against 1.32-2.00 s on a 50,000-row form. Such a parser raises at a syntax error but
    only logs a validity error, so the log decides. (lxml 6.2.0: given a path it parses a missing
    file as nothing, without an error, and fed chunks it does not validate at all: hence an open
    file. tests/test_validate_aside.py holds lxml to this.)"""
    # resolve_entities=False: the helper starts before the byte gates have ruled out a DOCTYPE, so
    # nothing declared there may be expanded.
    parser = etree.XMLParser(target=_NoTree(), schema=schema, resolve_entities=False, **PARSE_OPTIONS)
    try:
        with open(path, "rb") as source:
            etree.parse(source, parser)
    except (etree.LxmlError, ValueError, OSError):  # OSError: the file cannot be read
        return False
    return not any(error.level >= etree.ErrorLevels.ERROR for error in parser.error_log)


try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.prctl  # noqa: B018  (Linux only)
except (OSError, AttributeError):
    _libc = None
