"""The wire shapes of the auth API: sign-up, token, and the caller's identity with its wallet."""

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from accounts.services import USERNAME_TAKEN
from core.api_fields import MoneyField, StrictCharField

User = get_user_model()
PASSWORD_PATTERN = r"^(?=[^\x00]*[^\x00\d])[^\x00]{8,}$"
# A username's ASCII characters are letters, digits and @ . + - _; beyond ASCII, Django's validator
# takes the letters and digits of every script. OpenAPI patterns are ECMA-262 without the `u` flag,
# whose `\w` is ASCII-only (the validator's `[\w.@+-]` would publish "ASCII only", which the server
# is not), and which cannot say "a letter of any script": so the pattern pins the ASCII part only,
# in hex escapes that Python and ECMA-262 read alike, and the description says the rest.
USERNAME_PATTERN = r"^[^\x00-\x2a\x2c\x2f\x3a-\x3f\x5b-\x5e\x60\x7b-\x7f]+$"


class UsernameField(StrictCharField):
    """A username as it will be stored: NFKC-normalized (as AbstractBaseUser.normalize_username does on
    save) before its validators run, so the uniqueness check sees the name the database would get."""

    def to_internal_value(self, data):
        return User.normalize_username(super().to_internal_value(data))


class RegisterSerializer(serializers.Serializer):
    username = UsernameField(
        max_length=150,
        validators=[
            *User._meta.get_field("username").validators,
            UniqueValidator(queryset=User.objects.all(), message=USERNAME_TAKEN),
        ],
        pattern=USERNAME_PATTERN,
        help_text=(
            "Letters and digits (of any script), and @ . + - _ only; at most 150 characters. The server "
            "stores the name NFKC-normalized (e.g. a fullwidth or superscript letter becomes its plain "
            "form), and checks these rules and that the name is free on that form. The pattern spells "
            'out the ASCII part only: an OpenAPI (ECMA-262) pattern cannot say "a letter of any script".'
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
