"""Shared API building blocks: strict fields, query and id guards, and the documented error shapes.

Every app's views and serializers take these from here, so a rule (what a money string looks like,
which ids can name a row, what a 404 body is) is written once and the schema says it once.
"""

from decimal import Decimal

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from core.money import AmountError, format_money, parse_amount
from core.text import NUL, nul_query_params
from core.validators import ISO_DATETIME_RE

# The headers of idempotent writes (staff ledger writes, turns): the key sent, and the replay flag answered.
IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# The largest id a row can have (PostgreSQL bigint). A larger id names nothing, and handing it to
# the database would overflow the integer instead of answering 404.
MAX_ID = 2**63 - 1


def id_in_range(pk: int) -> bool:
    """Whether `pk` can name a row at all; callers answer 404 (path) or 400 (query) when it cannot."""
    return 1 <= pk <= MAX_ID


def id_from_text(text: str) -> int | None:
    """The id `text` spells in ASCII digits, when a row could have it; None for anything else (another
    script's digits, a sign, 0, more than a bigint holds): a reference typed by a person or a page's query."""
    if not (text.isascii() and text.isdigit()):
        return None
    pk = int(text)
    return pk if id_in_range(pk) else None


# --- query strings ----------------------------------------------------------------------------


def reject_nul_query_params(query_params) -> None:
    """400 on a NUL character in any query parameter name or value (no database accepts them)."""
    bad = nul_query_params(query_params)
    if bad:
        raise ValidationError({name: ["Null characters are not allowed."] for name in bad})


class NulSafeMixin:
    """A view mixin: a NUL in the query string is a 400 before the view reads any parameter."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        reject_nul_query_params(request.query_params)


def blank_is_absent(query_params, names) -> dict:
    """The named query parameters as a dict, leaving out `name=` (empty): an empty value means absent."""
    return {name: query_params[name] for name in names if query_params.get(name, "") != ""}


# --- fields -------------------------------------------------------------------------------------


class MoneyField(serializers.Field):
    """Credits on the wire: a 6-place decimal string out; an exact string or JSON number in.

    `minimum`/`maximum` (and `exclusive_minimum`) only document the range in the schema; the range
    itself is checked by the service's validator, which the serializer calls.
    """

    default_error_messages = {"invalid": "A valid number is required."}

    def __init__(self, *, minimum=None, maximum=None, exclusive_minimum: bool = False, **kwargs):
        self.minimum, self.maximum, self.exclusive_minimum = minimum, maximum, exclusive_minimum
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> Decimal:
        try:
            return parse_amount(data)
        except AmountError as exc:
            raise serializers.ValidationError(str(exc), code="invalid") from exc

    def to_representation(self, value) -> str:
        return format_money(Decimal(value))


# An amount as the API takes it (API.md "Amounts"): ASCII digits, an optional fraction with at most 6
# places of value (trailing zeros do not count). The sign is added per field.
_UNSIGNED_AMOUNT = r"[0-9]+(\.[0-9]{1,6}0*)?"


class MoneyFieldSchema(OpenApiSerializerFieldExtension):
    """MoneyField in the schema: what the API answers, and, apart, the wider set of inputs it takes.

    Answers are always a 6-place string. Inputs are a string or a JSON number; a field with a
    non-negative minimum documents no sign, so the schema does not invite values the service refuses.
    """

    target_class = MoneyField

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        if direction == "request":
            signed = field.minimum is None or field.minimum < 0
            number = {"type": "number", "example": 12.5}
            if field.minimum is not None:
                number["minimum"] = field.minimum
                if field.exclusive_minimum:  # OpenAPI 3.0 spells it as a flag beside `minimum`
                    number["exclusiveMinimum"] = True
            if field.maximum is not None:
                number["maximum"] = field.maximum
            bounds = ""
            if field.minimum is not None or field.maximum is not None:
                low = (
                    ""
                    if field.minimum is None
                    else f"{'>' if field.exclusive_minimum else '>='} {field.minimum}"
                )
                high = "" if field.maximum is None else f"<= {field.maximum}"
                bounds = " Range: " + " and ".join(part for part in (low, high) if part) + "."
            return {
                "oneOf": [
                    {
                        "type": "string",
                        "pattern": "^" + ("-?" if signed else "") + _UNSIGNED_AMOUNT + "$",
                        "example": "12.5",
                    },
                    number,
                ],
                "description": (
                    "Credits: a decimal string or a JSON number (parsed exactly), at most 6 decimal "
                    "places of value, no exponent." + bounds
                ),
            }
        return {
            "type": "string",
            "format": "decimal",
            "pattern": r"^-?\d+\.\d{6}$",
            "example": "12.500000",
            "description": "Credits: a decimal with 6 places, as a string.",
        }


# Patterns in Python's `re` dialect, which is also ECMA's for these: no NUL anywhere, and (where a
# blank value is refused) at least one character that is neither whitespace nor NUL.
NO_NUL_PATTERN = r"^[^\x00]*$"
NOT_BLANK_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers, booleans and other non-strings instead of coercing them.

    Its schema says what it takes: `pattern` if given, else no NUL and, unless blank is allowed,
    something besides whitespace (DRF trims before its blank check).
    """

    default_error_messages = {"not_a_string": "Must be a string."}

    def __init__(self, *, pattern: str | None = None, **kwargs):
        self.schema_pattern = pattern
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        if NUL in data:
            raise serializers.ValidationError("Null characters are not allowed.", code="null_characters")
        # The schema's maxLength is about what the client sends; DRF would measure after trimming.
        if self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class StrictDateTimeField(serializers.DateTimeField):
    """A DateTimeField that takes only a whole ISO 8601 date-time: not a date alone, nothing after it (a NUL)."""

    default_error_messages = {
        "not_a_datetime": "Enter a date and a time in ISO 8601, e.g. 2026-12-31T23:59:59Z (a date alone is not enough)."
    }

    def to_internal_value(self, value):
        if isinstance(value, str) and not ISO_DATETIME_RE.fullmatch(value):
            self.fail("not_a_datetime")
        return super().to_internal_value(value)


class StrictCharFieldSchema(OpenApiSerializerFieldExtension):
    target_class = StrictCharField

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        schema = auto_schema._map_serializer_field(field, direction, bypass_extensions=True)
        if field.allow_blank and not field.schema_pattern:
            # A pattern here would make drf-spectacular add a second, blank branch under `oneOf`,
            # and "" matching both is invalid. A NUL in such a field is a 400 the schema leaves unsaid.
            return schema
        # Where the field's own validators carry a pattern (a username's), it wins over the default.
        auto_schema._insert_field_validators(field, schema)
        if field.schema_pattern:
            schema["pattern"] = field.schema_pattern
        elif "pattern" not in schema:
            blank_refused = field.trim_whitespace  # blank is not allowed here: DRF trims, then refuses ""
            schema["pattern"] = NOT_BLANK_PATTERN if blank_refused else NO_NUL_PATTERN
        return schema


# --- error shapes, for the OpenAPI schema -------------------------------------------------------


class DetailErrorSerializer(serializers.Serializer):
    """A non-field error: `detail`, and a machine-readable `code` for domain errors."""

    detail = serializers.CharField()
    code = serializers.CharField(required=False)


class CodedErrorSerializer(serializers.Serializer):
    """A non-field error that always names its `code` (413, 502, 503, 504)."""

    detail = serializers.CharField()
    code = serializers.CharField()


class ServerErrorSerializer(serializers.Serializer):
    """An unexpected error: the `error_id` is in the server's log line, with the traceback."""

    detail = serializers.CharField()
    error_id = serializers.CharField(help_text="Quote it to an operator: the server log names it.")


VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": (
        "Validation errors: each offending field (or query parameter) with its messages; a body that "
        'is not JSON at all is `{"detail": "JSON parse error - ..."}`.'
    ),
    # A parse error carries `detail` (a string), so `detail` is not a field's message list.
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}

_DESCRIBED = {
    400: (VALIDATION_ERROR_SCHEMA, "Invalid input; nothing was written."),
    401: (DetailErrorSerializer, "Not authenticated: send `Authorization: Token <key>`."),
    403: (DetailErrorSerializer, "Authenticated, but not allowed (staff only)."),
    404: (DetailErrorSerializer, "No such object (or not yours)."),
    409: (
        DetailErrorSerializer,
        "Idempotency-Key reused with a different amount or reason; nothing was written.",
    ),
    413: (CodedErrorSerializer, "Request body over the limit (1 MB); `code` is `request_too_large`."),
    502: (CodedErrorSerializer, "The model provider failed; nothing was charged."),
    504: (CodedErrorSerializer, "The model provider timed out; nothing was charged."),
}


def error_responses(*codes: int, extra: dict | None = None, **descriptions: str) -> dict:
    """The documented error responses for the given status codes (`s404="..."` rewords one).

    `extra` adds an app's own error responses (billing.schema.PAYMENT_REQUIRED, ...), which this
    module cannot know; the result is ordered by status code either way.
    """
    responses = dict(extra or {})
    for code in codes:
        schema, description = _DESCRIBED[code]
        responses[code] = OpenApiResponse(schema, description=descriptions.get(f"s{code}", description))
    return dict(sorted(responses.items()))


STAFF_ERRORS = (401, 403)
