"""The wire shapes of chat sessions and turns (API.md "Chat sessions and turns")."""

from rest_framework import serializers

from billing.money import format_money
from billing.pricing import MODEL_NAME_PATTERN
from billing.selectors import is_low_balance
from config.api_fields import NOT_BLANK_PATTERN, MoneyField, StrictCharField
from sessions_app.models import ChatSession, Message, Turn

CONTENT_MAX_CHARS = 32_000


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

    class Meta:
        model = ChatSession
        fields = ["id", "title", "model", "turn_count", "created_at", "updated_at"]
        read_only_fields = ["id", "turn_count", "created_at", "updated_at"]

    def get_turn_count(self, session: ChatSession) -> int:
        # Every turn writes exactly two messages; the counter is on the row already.
        return session.message_count // 2


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["role", "content"]
        read_only_fields = fields


class UsageSerializer(serializers.Serializer):
    model = serializers.CharField(read_only=True)
    input_tokens = serializers.IntegerField(read_only=True)
    output_tokens = serializers.IntegerField(read_only=True)
    cost = MoneyField(read_only=True, help_text="The credits debited for this turn.")


class TurnSerializer(serializers.ModelSerializer):
    """A turn as listed: the two messages and the metered usage."""

    session = serializers.PrimaryKeyRelatedField(read_only=True)
    user_message = MessageSerializer(read_only=True)
    assistant_message = MessageSerializer(read_only=True)
    usage = UsageSerializer(source="llm_call", read_only=True)

    class Meta:
        model = Turn
        fields = ["id", "session", "created_at", "user_message", "assistant_message", "usage"]
        read_only_fields = fields


class CreatedTurnSerializer(TurnSerializer):
    """A turn just taken: also the wallet right after its debit."""

    balance_after = MoneyField(read_only=True, help_text="The wallet balance right after this turn's debit.")
    low_balance = serializers.BooleanField(
        read_only=True, help_text="balance_after <= LOW_BALANCE_THRESHOLD."
    )

    class Meta(TurnSerializer.Meta):
        fields = [*TurnSerializer.Meta.fields, "balance_after", "low_balance"]
        read_only_fields = fields

    def to_representation(self, turn: Turn) -> dict:
        # Every turn answers with this: the declared fields above, written out rather than built as a
        # tree of field objects per response (a test pins it equal to DRF's own representation).
        call = turn.llm_call
        return {
            "id": turn.pk,
            "session": turn.session_id,
            "created_at": _DATETIME.to_representation(turn.created_at),
            "user_message": _message(turn.user_message),
            "assistant_message": _message(turn.assistant_message),
            "usage": {
                "model": call.model,
                "input_tokens": call.input_tokens,
                "output_tokens": call.output_tokens,
                "cost": format_money(call.cost),
            },
            "balance_after": format_money(turn.balance_after),
            "low_balance": bool(turn.low_balance),
        }


_DATETIME = serializers.DateTimeField(read_only=True)


def created_turn_body(turn: Turn, *, balance_after) -> dict:
    """The 201 body of a turn just taken (plain or streamed `done`): the turn and the wallet after its debit."""
    turn.balance_after, turn.low_balance = balance_after, is_low_balance(balance_after)
    return CreatedTurnSerializer(turn).data


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
