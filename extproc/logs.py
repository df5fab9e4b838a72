"""Logging: one line per request and per attempt, as text or JSON.

Structured fields travel in `extra={"fields": {...}}`. Nothing here ever formats a
secret or a body: bodies are logged only by callers that check `debug_bodies` first.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

log = logging.getLogger("aigw")
access_log = logging.getLogger("aigw.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return line


def setup(level: str = "info", fmt: str = "text") -> None:
    # Neither format prints the caller, thread or process of a record: don't collect them
    # for every line (the logging HOWTO's "Optimization" switches; ~20% of a line's cost).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc and asyncio chatter is not ours to print at info.
    logging.getLogger("asyncio").setLevel(logging.WARNING)
