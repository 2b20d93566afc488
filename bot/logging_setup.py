"""Logging for every gridbot process, with phones masked and secrets redacted in every record.

Logs are copied to places residents' data should not go (journald, a log shipper, a pasted bug report),
so no line may carry a full phone number or a credential. `RedactingFilter` rewrites a record's message,
arguments and traceback text with `bot.privacy.redact_for_log`. It is installed as a log-record factory,
not only on handlers: uvicorn, arq and pytest add their own handlers after we configure logging, and a
factory sees every record of every logger however it is emitted later.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bot.privacy import redact_for_log

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log every request the app makes at INFO: httpx writes a line for each turn's call to Rasa, a
# line per message that a failure reports anyway, and building and redacting those records showed in the app's
# profile under load. Their warnings and errors still print.
QUIET_LIBRARIES = ("httpx",)


def _redact_arg(value: Any) -> Any:
    return redact_for_log(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Masks phones and redacts secrets in a record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def redact_record(record: logging.LogRecord) -> None:
    """Rewrite `record` in place so that whatever formatter renders it shows no phone or secret.

    String arguments are redacted one by one, so formatters that read `record.args` (uvicorn's access log
    unpacks them) keep working. When a secret spans the message and an argument (`"token=%s", tok`), the
    rendered message is what gets redacted and the arguments are dropped.
    """
    if getattr(record, "_gridbot_redacted", False):
        return
    record._gridbot_redacted = True
    try:
        rendered = record.getMessage()
    except Exception:  # a malformed call: logging reports it later; redact the pieces it will print
        rendered = None
    if isinstance(record.msg, str):
        record.msg = redact_for_log(record.msg)
    if isinstance(record.args, Mapping):
        record.args = {key: _redact_arg(value) for key, value in record.args.items()}
    elif isinstance(record.args, tuple):
        record.args = tuple(_redact_arg(value) for value in record.args)
    if rendered is not None:
        safe = redact_for_log(rendered)
        try:
            now = record.getMessage()
        except Exception:
            now = None
        if now != safe:
            record.msg, record.args = safe, ()
    if record.exc_info and not record.exc_text:
        # Formatter.format uses exc_text when it is set, so the traceback is printed redacted.
        record.exc_text = redact_for_log("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.exc_text:
        record.exc_text = redact_for_log(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_for_log(record.stack_info)


_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    redact_record(record)
    return record


def install_redaction() -> None:
    """Redact every record created from now on, in this process (idempotent)."""
    global _base_factory
    current = logging.getLogRecordFactory()
    if current is not _redacting_factory:
        _base_factory = current
        logging.setLogRecordFactory(_redacting_factory)


class JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object per line, for log shippers. The record was redacted when it was made."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def formatter_for(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(LOG_FORMAT)


def configure_logging(level: int | str | None = None, log_format: str | None = None) -> None:
    """What every gridbot command runs first: records on stderr, phones and secrets never printed.

    Level and form default to the settings (LOG_LEVEL, LOG_FORMAT). uvicorn is started without a logging config of
    its own (bot/cli.py), so its records come through this handler in the same form.
    """
    install_redaction()
    if level is None or log_format is None:
        from bot.settings import get_settings

        settings = get_settings()
        level = settings.log_level if level is None else level
        log_format = settings.log_format if log_format is None else log_format
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_for(log_format))
    logging.basicConfig(level=level, handlers=[handler])
    for name in QUIET_LIBRARIES:
        # At DEBUG (someone debugging a deployment) they print everything again.
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
