"""Structured logging: each record as one JSON object on stdout, with its `extra=` fields."""

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


_PLAIN = (str, int, float, Decimal, type(None))
_SAID = {"server_time"}  # runserver's request lines carry their time; the line starts with it already


class ConsoleFormatter(logging.Formatter):
    """`make run`'s terminal (LOG_FORMAT=text): one readable line per record, its `extra=` fields as key=value.

    Only plain values are shown: nested ones (procrastinate's job and worker dicts) and objects (a
    request, a socket) are left out, as the message already names them.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = " ".join(
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD
            and key not in _SAID
            and not key.startswith("_")
            and isinstance(value, _PLAIN)
        )
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line += f"  [{fields}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class QuietPeriodicJobs(logging.Filter):
    """Drops the worker's lines about periodic chores that found nothing to do, unless the log level is DEBUG.

    A periodic job (deferred with a `timestamp` argument) runs every few seconds; its "Starting job"
    line and a "Success" with an empty result (0 holds released, no stalled job) are noise. A chore
    that did something still logs its success line, and warnings and errors always pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        job = getattr(record, "job", None)
        if not isinstance(job, dict) or "timestamp" not in (job.get("task_kwargs") or {}):
            return True
        action = getattr(record, "action", "")
        if action == "start_job":
            return False
        if action == "job_success":
            return bool(getattr(record, "result", None))
        return True
