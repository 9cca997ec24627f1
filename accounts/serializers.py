"""The wire shapes of the auth API: sign-up, token, and the caller's identity with its wallet."""

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from accounts.services import USERNAME_TAKEN
from core.api_fields import MoneyField, StrictCharField, StrictDateTimeField

User = get_user_model()
PASSWORD_PATTERN = r"^(?=[^\x00]*[^\x00\d])[^\x00]{8,}$"
# What a username may be, as OpenAPI patterns (ECMA-262 without the `u` flag, whose `\w` is ASCII-only
# and which cannot say "a letter of any script"). Written in literal ASCII and hex escapes, which
# Python and ECMA-262 read alike: an ASCII name exactly, or a name with some other character, its
# ASCII part held to the same rule (accounts.schema publishes them as `anyOf`).
_NOT_IN_A_USERNAME = r"\x00-\x2a\x2c\x2f\x3a-\x3f\x5b-\x5e\x60\x7b-\x7f"  # ASCII other than [0-9A-Za-z_.@+-]
ASCII_USERNAME_PATTERN = r"^[0-9A-Za-z_.@+\-]+$"
UNICODE_USERNAME_PATTERN = rf"^[^{_NOT_IN_A_USERNAME}]*[^\x00-\x7f][^{_NOT_IN_A_USERNAME}]*$"


def _username_characters(value: str) -> None:
    """The model's own character rule (UnicodeUsernameValidator), called as a plain function so that
    drf-spectacular does not publish its `\\w` regex, which reads ASCII-only in OpenAPI (accounts.schema)."""
    User.username_validator(value)


class UsernameField(StrictCharField):
    """A username as it will be stored: NFKC-normalized (as AbstractBaseUser.normalize_username does on
    save) before its validators run, so the uniqueness check sees the name the database would get."""

    def to_internal_value(self, data):
        return User.normalize_username(super().to_internal_value(data))


class RegisterSerializer(serializers.Serializer):
    username = UsernameField(
        max_length=150,
        validators=[
            *(
                _username_characters if validator is User.username_validator else validator
                for validator in User._meta.get_field("username").validators
            ),
            UniqueValidator(queryset=User.objects.all(), message=USERNAME_TAKEN),
        ],
        help_text=(
            "Letters and digits (of any script), and @ . + - _ only; at most 150 characters. The server "
            "stores the name NFKC-normalized (e.g. a fullwidth or superscript letter becomes its plain "
            "form), and checks these rules and that the name is free on that form. The patterns spell "
            "out an ASCII name exactly; for other characters they pin only the ASCII part: an OpenAPI "
            '(ECMA-262) pattern cannot say "a letter of any script".'
        ),
    )
    email = serializers.EmailField(max_length=254)
    password = StrictCharField(
        write_only=True,
        trim_whitespace=False,
        max_length=128,
        # What the default validators need at least: 8 characters, not all digits (schema only).
        pattern=PASSWORD_PATTERN,
        style={"input_type": "password"},
        help_text="At least 8 characters, not all digits, not a common password; checked by the server's password validators.",
    )

    def validate(self, attrs):
        # The similarity validator compares the password with the would-be user's attributes.
        candidate = User(username=attrs["username"], email=attrs["email"])
        try:
            password_validation.validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return attrs


class RegisteredSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True)
    token = serializers.CharField(read_only=True, help_text="Send as `Authorization: Token <token>`.")


class TokenRequestSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True, help_text="Send as `Authorization: Token <token>`.")
    expiry = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When the token stops working; get a new one before."
    )


class MeWalletSerializer(serializers.Serializer):
    balance = MoneyField(read_only=True)
    low_balance = serializers.BooleanField(read_only=True)


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(read_only=True)
    email = serializers.EmailField(read_only=True)
    is_staff = serializers.BooleanField(read_only=True)
    wallet = MeWalletSerializer(read_only=True)


# --- API keys (the gateway's) -------------------------------------------------------------------

LIMIT_RESETS = ["daily", "weekly", "monthly"]


class ApiKeySerializer(serializers.Serializer):
    """A key as its owner sees it (never its secret, except `key` in the creation's answer)."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    prefix = serializers.CharField(read_only=True, help_text="The key's first 12 characters.")
    limit = MoneyField(read_only=True, allow_null=True, help_text="null: no limit.")
    limit_reset = serializers.ChoiceField(
        choices=LIMIT_RESETS, read_only=True, allow_null=True, help_text="null: the limit never resets."
    )
    limit_remaining = MoneyField(read_only=True, allow_null=True)
    usage = MoneyField(
        read_only=True,
        help_text="Spent in the current period (since creation without a reset), open holds included.",
    )
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    last_used_at = serializers.DateTimeField(read_only=True, allow_null=True)


class CreatedApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The secret: shown only in this answer.")


class ApiKeyRequestSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    limit = MoneyField(required=False, allow_null=True, minimum=0, help_text="null or absent: no limit.")
    limit_reset = serializers.ChoiceField(choices=LIMIT_RESETS, required=False, allow_null=True)
    expires_at = StrictDateTimeField(required=False, allow_null=True)


class ApiKeyUpdateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100, required=False)
    limit = MoneyField(required=False, allow_null=True, minimum=0)
    limit_reset = serializers.ChoiceField(choices=LIMIT_RESETS, required=False, allow_null=True)
