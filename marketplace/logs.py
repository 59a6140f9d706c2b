"""Logs: one JSON object per line (structlog), for the app, the RQ workers and gunicorn alike.

Every line carries the request id of the request it was written in (bound by
`marketplace.observe` for the request's duration). What may be logged is a rule of the code,
not of this module: keys, golden answers and request bodies are never passed to a logger.
Lines written with the standard library (`logging.getLogger(__name__)`, as the services do) go
through the same renderer.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import structlog
from gunicorn import glogging

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """A `logging.Formatter` that renders any record as one JSON line."""

    def __init__(self) -> None:
        super().__init__(
            foreign_pre_chain=_SHARED,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr for the root logger and structlog's loggers (idempotent)."""
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (a test's capture, then the real one)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def get(name: str) -> Any:
    """A structlog logger: `log.info("event", key=value)`."""
    return structlog.stdlib.get_logger(name)


def lines_logger(name: str) -> Any:
    """A structlog logger for lines written on every request (the access log): the same JSON
    keys as every other line, written without the standard library's logging (a record, the
    handler's lock, the formatter's processor chain), which cost ~0.15 CPU-ms a request
    (`bench/request_path.py`). Dropped, as stdlib lines are, when INFO is below the level."""
    return structlog.wrap_logger(
        _StderrLines(),
        processors=[
            _drop_below_root_level,
            structlog.processors.add_log_level,
            lambda _logger, _method, event: {**event, "logger": name},
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


def _drop_below_root_level(_logger: Any, method: str, event: Any) -> Any:
    if not logging.getLogger().isEnabledFor(logging.getLevelName(method.upper())):
        raise structlog.DropEvent
    return event


class _StderrLines:
    """Each rendered line, whole, to whatever `sys.stderr` is at the time (as `_Stderr`)."""

    _lock = threading.Lock()

    def _write(self, line: str) -> None:
        with self._lock:
            sys.stderr.write(line + "\n")

    info = warning = error = _write


class GunicornLogger(glogging.Logger):
    """gunicorn's own lines (starts, stops, worker timeouts) as JSON too (`gunicorn_conf`)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
