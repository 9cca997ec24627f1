"""CSV exports streamed row by row: the ledger, for the staff API and the admin's export action."""

import csv
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from core.money import format_money
from reporting.selectors import LEDGER_EXPORT_COLUMNS, ledger_export_rows

CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
_MONEY_COLUMNS = frozenset(
    i for i, name in enumerate(LEDGER_EXPORT_COLUMNS) if name in {"amount", "balance_after"}
)
# Free text a spreadsheet would run as a formula if it began with one of these (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_TEXT_COLUMNS = frozenset(
    i
    for i, name in enumerate(LEDGER_EXPORT_COLUMNS)
    if name in {"username", "reason", "initiated_by_username", "idempotency_key"}
)


class _Echo:
    """A write-only file whose write() hands back the line, so csv.writer can feed a generator."""

    def write(self, value: str) -> str:
        return value


def _cell(index: int, value):
    if value is None:
        return ""
    if isinstance(value, datetime):
        return timezone.localtime(value, UTC).isoformat()
    if index in _MONEY_COLUMNS:
        return format_money(Decimal(value) if not isinstance(value, float) else Decimal(repr(value)))
    if index in _TEXT_COLUMNS and isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def ledger_csv_lines(rows: Iterable[tuple]) -> Iterator[str]:
    """The header, then one CSV line per ledger tuple (LEDGER_EXPORT_COLUMNS order); UTC ISO times."""
    writer = csv.writer(_Echo())
    yield writer.writerow(LEDGER_EXPORT_COLUMNS)
    for row in rows:
        yield writer.writerow([_cell(i, value) for i, value in enumerate(row)])


def export_filename(prefix: str = "ledger") -> str:
    return f"{prefix}-{timezone.now().astimezone(UTC):%Y%m%dT%H%M%SZ}.csv"


def stream_ledger_csv(
    queryset_or_rows: QuerySet | Iterable[tuple] | None = None, *, filename: str | None = None
) -> StreamingHttpResponse:
    """A streamed text/csv attachment of ledger rows: a CreditTransaction queryset or export tuples.

    A queryset (e.g. the admin's selection, or reporting.selectors.ledger_export_queryset()) is read
    in chunks through ledger_export_rows(); tuples are written as they come.
    """
    if queryset_or_rows is None or isinstance(queryset_or_rows, QuerySet):
        rows = ledger_export_rows(queryset_or_rows)
    else:
        rows = queryset_or_rows
    response = StreamingHttpResponse(ledger_csv_lines(rows), content_type=CSV_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename or export_filename()}"'
    response["Cache-Control"] = "no-store"
    return response
