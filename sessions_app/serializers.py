"""The wire shapes of chat sessions and turns (API.md "Chat sessions and turns")."""

from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import LLMCallEvent
from billing.pricing import MODEL_NAME_PATTERN
from billing.selectors import is_low_balance
from core.api_fields import NOT_BLANK_PATTERN, MoneyField, StrictCharField
from core.money import format_money
from sessions_app.models import ChatSession, Message, SessionSummary, ToolCallEvent, Turn, UserFile

CONTENT_MAX_CHARS = 32_000


class SessionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = SessionSummary
        fields = ["text", "covers_turns", "used_fallback"]
        read_only_fields = fields


class ChatSessionSerializer(serializers.ModelSerializer):
    title = StrictCharField(
        max_length=200, required=False, allow_blank=True, help_text="Optional; defaults to empty."
    )
    model = StrictCharField(
        max_length=100,
        required=False,
        trim_whitespace=False,
        pattern=f"^{MODEL_NAME_PATTERN}$",
        help_text="A model with an active price; defaults to LLM_DEFAULT_MODEL.",
    )
    turn_count = serializers.SerializerMethodField(help_text="Completed (billed) turns in this session.")
    summary = SessionSummarySerializer(
        read_only=True,
        allow_null=True,
        help_text="The summary standing in for the older turns in prompts; null until the history outgrows "
        "LLM_CONTEXT_TOKENS.",
    )

    class Meta:
        model = ChatSession
        fields = ["id", "title", "model", "turn_count", "summary", "created_at", "updated_at"]
        read_only_fields = ["id", "turn_count", "summary", "created_at", "updated_at"]

    def get_turn_count(self, session: ChatSession) -> int:
        # Every turn writes exactly two messages; the counter is on the row already.
        return session.message_count // 2


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["role", "content"]
        read_only_fields = fields


class CallSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True, help_text="The LLM call event's id.")
    purpose = serializers.ChoiceField(choices=LLMCallEvent.Purpose.choices, read_only=True)
    model = serializers.CharField(read_only=True)
    input_tokens = serializers.IntegerField(read_only=True)
    output_tokens = serializers.IntegerField(read_only=True)
    cost = MoneyField(read_only=True, help_text="The credits debited for this call (0 when it failed).")
    used_fallback = serializers.BooleanField(
        read_only=True, help_text="The call failed and a deterministic fallback stood in (summaries)."
    )


class UsageSerializer(serializers.Serializer):
    model = serializers.CharField(read_only=True)
    input_tokens = serializers.IntegerField(read_only=True, help_text="Summed over the turn's calls.")
    output_tokens = serializers.IntegerField(read_only=True, help_text="Summed over the turn's calls.")
    cost = MoneyField(
        read_only=True, help_text="The credits debited for this turn: the sum of its calls' costs."
    )
    calls = CallSerializer(many=True, read_only=True, help_text="Every model call of the turn, in order.")


class ToolCallSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    tool = serializers.CharField(read_only=True)
    arguments = serializers.JSONField(read_only=True, help_text="The arguments the model gave.")
    status = serializers.ChoiceField(choices=ToolCallEvent.Status.choices, read_only=True)
    result_chars = serializers.IntegerField(read_only=True, help_text="Characters of result the model read.")
    latency_ms = serializers.IntegerField(read_only=True)


def turn_calls(turn: Turn) -> list[LLMCallEvent]:
    """The turn's model calls in order: as the turn was just written, else as stored (prefetched)."""
    calls = getattr(turn, "call_events", None)
    return calls if calls is not None else [link.llm_call for link in turn.calls.all()]


def turn_tool_calls(turn: Turn) -> list[ToolCallEvent]:
    calls = getattr(turn, "tool_call_events", None)
    return calls if calls is not None else list(turn.tool_calls.all())


def _call(event: LLMCallEvent) -> dict:
    return {
        "id": event.pk,
        "purpose": str(event.purpose),
        "model": event.model,
        "input_tokens": event.input_tokens,
        "output_tokens": event.output_tokens,
        "cost": format_money(event.cost),
        "used_fallback": bool(event.used_fallback),
    }


def usage_of(turn: Turn) -> dict:
    """The turn's usage: sums over its calls (cost = the sum of its debit rows), and each call."""
    calls = turn_calls(turn)
    return {
        "model": calls[0].model if calls else turn.session.model,
        "input_tokens": sum(c.input_tokens for c in calls),
        "output_tokens": sum(c.output_tokens for c in calls),
        "cost": format_money(sum((c.cost for c in calls), Decimal(0))),
        "calls": [_call(c) for c in calls],
    }


def tool_calls_of(turn: Turn) -> list[dict]:
    return [
        {
            "id": event.pk,
            "tool": event.tool,
            "arguments": event.arguments,
            "status": str(event.status),
            "result_chars": event.result_chars,
            "latency_ms": event.latency_ms,
        }
        for event in turn_tool_calls(turn)
    ]


class TurnSerializer(serializers.ModelSerializer):
    """A turn as listed: the two messages, the metered usage of its calls, and its tool runs."""

    session = serializers.PrimaryKeyRelatedField(read_only=True)
    user_message = MessageSerializer(read_only=True)
    assistant_message = MessageSerializer(read_only=True)
    usage = serializers.SerializerMethodField()
    tool_calls = serializers.SerializerMethodField()
    stop_reason = serializers.ChoiceField(
        choices=Turn.StopReason.choices,
        read_only=True,
        help_text="`complete`, or why the turn stopped short (its reply says so too).",
    )

    class Meta:
        model = Turn
        fields = [
            "id",
            "session",
            "created_at",
            "user_message",
            "assistant_message",
            "usage",
            "tool_calls",
            "stop_reason",
        ]
        read_only_fields = fields

    @extend_schema_field(UsageSerializer)
    def get_usage(self, turn: Turn) -> dict:
        return usage_of(turn)

    @extend_schema_field(ToolCallSerializer(many=True))
    def get_tool_calls(self, turn: Turn) -> list[dict]:
        return tool_calls_of(turn)


class CreatedTurnSerializer(TurnSerializer):
    """A turn just taken: also the wallet right after its debits."""

    balance_after = MoneyField(read_only=True, help_text="The wallet balance right after this turn's debits.")
    low_balance = serializers.BooleanField(
        read_only=True, help_text="balance_after <= LOW_BALANCE_THRESHOLD."
    )

    class Meta(TurnSerializer.Meta):
        fields = [*TurnSerializer.Meta.fields, "balance_after", "low_balance"]
        read_only_fields = fields

    def to_representation(self, turn: Turn) -> dict:
        # Every turn answers with this: the declared fields above, written out rather than built as a
        # tree of field objects per response (a test pins it equal to DRF's own representation).
        return {
            "id": turn.pk,
            "session": turn.session_id,
            "created_at": _DATETIME.to_representation(turn.created_at),
            "user_message": _message(turn.user_message),
            "assistant_message": _message(turn.assistant_message),
            "usage": usage_of(turn),
            "tool_calls": tool_calls_of(turn),
            "stop_reason": str(turn.stop_reason),
            "balance_after": format_money(turn.balance_after),
            "low_balance": bool(turn.low_balance),
        }


_DATETIME = serializers.DateTimeField(read_only=True)
_CREATED_TURN = CreatedTurnSerializer()


def created_turn_body(turn: Turn, *, balance_after) -> dict:
    """The 201 body of a turn just taken (plain or streamed `done`): the turn and the wallet after its debit."""
    turn.balance_after, turn.low_balance = balance_after, is_low_balance(balance_after)
    return _CREATED_TURN.to_representation(turn)  # the fields written out, without .data's wrapping


def _message(message: Message) -> dict:
    return {"role": str(message.role), "content": message.content}


class TurnRequestSerializer(serializers.Serializer):
    content = StrictCharField(
        max_length=CONTENT_MAX_CHARS,
        trim_whitespace=False,
        pattern=NOT_BLANK_PATTERN,
        help_text=f"The user's message: a string, non-empty after trimming, at most {CONTENT_MAX_CHARS} characters.",
    )

    def validate_content(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.", code="blank")
        return value


class UserFileSerializer(serializers.ModelSerializer):
    """A file as the API shows it (its bytes are at /api/v1/files/{id}/content)."""

    class Meta:
        model = UserFile
        fields = ["id", "name", "content_type", "size", "created_at"]
        read_only_fields = fields


class FileUploadSerializer(serializers.Serializer):
    file = serializers.FileField(
        max_length=255,
        allow_empty_file=True,
        help_text="A text file (text/* or application/json), at most FILE_MAX_BYTES.",
    )
