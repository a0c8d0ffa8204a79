"""Logging set-up: plain text or JSON lines (--log-format), and the hash of the UserOperation a
line is about on every such line.

A line is about an op when the code handling it has set the op context (`op_context(hash)`,
or `OP_HASH.set(hash)` inside a request's own task), or when it passes
`extra={"op_hash": ...}` (or `extra={"op_hashes": [...]}` for a bundle). The filter copies the
context's hash onto the record; JSON lines then have an "op_hash" key, text lines end with
`op=0x...`.

No line can carry much of what a client sent: every message is cut at MAX_MESSAGE_CHARS and
every traceback at MAX_TRACEBACK_CHARS (a hostile request may put a megabyte in any string,
and exception messages often quote their input), and the JSON-RPC library's own logger, which
logs each failed call with its full params, is kept at WARNING.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

OP_HASH: contextvars.ContextVar[str | None] = contextvars.ContextVar("op_hash", default=None)


@contextlib.contextmanager
def op_context(op_hash: str | None = None):
    """Lines logged inside are about `op_hash` (which may be set later with OP_HASH.set)."""
    token = OP_HASH.set(op_hash)
    try:
        yield
    finally:
        OP_HASH.reset(token)


class OpHashFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "op_hash", None) is None:
            current = OP_HASH.get()
            if current is not None:
                record.op_hash = current
        return True


MAX_MESSAGE_CHARS = 2000
MAX_TRACEBACK_CHARS = 8000


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters cut]"


class BoundedFilter(logging.Filter):
    """Cuts the rendered message of every record to a bounded size (the formatters below cut
    tracebacks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > MAX_MESSAGE_CHARS:
            record.msg, record.args = _cut(message, MAX_MESSAGE_CHARS), None
        return True


class _BoundedTraceback(logging.Formatter):
    def formatException(self, ei) -> str:
        return _cut(super().formatException(ei), MAX_TRACEBACK_CHARS)


class _BoundedJsonFormatter(_BoundedTraceback, JsonFormatter):
    pass


class TextFormatter(_BoundedTraceback, logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = []
        op_hash = getattr(record, "op_hash", None)
        if op_hash:
            extra.append(f"op={op_hash}")
        hashes = getattr(record, "op_hashes", None)
        if hashes:
            extra.append("ops=" + ",".join(hashes))
        if not extra:
            return line
        first, nl, rest = line.partition("\n")  # keep a traceback below the line
        return f"{first} {' '.join(extra)}{nl}{rest}"


def _json_formatter() -> logging.Formatter:
    return _BoundedJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def setup_logging(level: str = "info", fmt: str = "text", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(OpHashFilter())
    handler.addFilter(BoundedFilter())
    if fmt == "json":
        handler.setFormatter(_json_formatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    # aiohttp's access log is off; its server errors stay visible
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # pjrpc logs every failed call at INFO with its params (whole UserOperations, megabytes of
    # a hostile client's junk): the bundler's own lines say what matters
    logging.getLogger("pjrpc").setLevel(logging.WARNING)
