"""Structured logs: one JSON object per line and per event (standard library logging).

Every line has `time` (UTC, ISO 8601), `level`, `logger` and `message`; the request id of the
request being answered when there is one; the `event` and its `fields` when the code that logs
gives them (`log.info(..., extra={"event": "receipt", "fields": {...}})`: the access log, the
answer to each dossier, each result); and an exception, when there is one, as `exception` (its
type and message) and `traceback` (one string: still one line).
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime

from interchange.api.observe import current_request_id

LEVELS = {"text": "%(asctime)s %(levelname)s %(name)s: %(message)s"}


class JsonFormatter(logging.Formatter):
    # one encoder for every line, and the time's seconds written once a second: the access log
    # writes a line per request (a tenth of a card lookup's time went to logging)
    _encoder = json.JSONEncoder(ensure_ascii=False, default=str)
    _second: tuple[int, str] = (-1, "")

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        return f"{self._second[1]}.{int(record.msecs):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        out: dict = {"time": self._time(record), "level": record.levelname.lower(), "logger": record.name,
                     "message": record.getMessage()}  # fmt: skip
        rid = getattr(record, "request_id", None) or current_request_id.get()
        if rid:
            out["request_id"] = rid
        event = getattr(record, "event", None)
        if event:
            out["event"] = event
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                out.setdefault(k, v)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["exception"] = f"{type(exc).__name__}: {exc}"
            out["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        elif record.exc_text:
            out["traceback"] = record.exc_text
        return self._encoder.encode(out)


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    """The root logger writes to stderr, JSON lines (`fmt` "json") or plain text ("text")."""
    if fmt not in ("json", "text"):
        raise ValueError(f"config: server.log_format must be json or text, not {fmt!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LEVELS["text"]) if fmt == "text" else JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
