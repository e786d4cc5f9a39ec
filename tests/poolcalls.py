"""Functions for the worker processes of tests/test_workerpool.py, importable by a spawned
process: not a test module."""

from __future__ import annotations

import os
import threading
import time

_given: object = None


def remember(value: object) -> None:
    """The pool's initialiser: keeps `value` for `given`."""
    global _given
    _given = value


def given() -> object:
    return _given


def fail_to_start(message: str) -> None:
    raise RuntimeError(message)


def pid() -> int:
    return os.getpid()


def sleep_then(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def fail(message: str) -> None:
    raise ValueError(message)


def a_lock() -> threading.Lock:
    """A result that cannot be pickled."""
    return threading.Lock()


class OddError(Exception):
    """An exception that pickles but does not unpickle (its __init__ wants two arguments)."""

    def __init__(self, code: int, text: str):
        super().__init__(f"{code}: {text}")


def fail_oddly() -> None:
    raise OddError(7, "odd")


def zeros(size: int) -> bytes:
    return bytes(size)


def length(data: bytes) -> int:
    return len(data)


def sleep_noting_pid(path: str, seconds: float, value: object) -> object:
    """`sleep_then`, having written this process's id to `path` first (the test learns which
    process runs the call)."""
    with open(path + ".part", "w") as out:
        out.write(str(os.getpid()))
    os.replace(path + ".part", path)
    return sleep_then(seconds, value)
