"""The wire shapes of the auth API: sign-up, token, and the caller's identity with its wallet."""

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from core.api_fields import MoneyField, StrictCharField

User = get_user_model()
USERNAME_TAKEN = "A user with that username already exists."
PASSWORD_PATTERN = r"^(?=[^\x00]*[^\x00\d])[^\x00]{8,}$"


class RegisterSerializer(serializers.Serializer):
    username = StrictCharField(
        max_length=150,
        validators=[
            *User._meta.get_field("username").validators,
            UniqueValidator(queryset=User.objects.all(), message=USERNAME_TAKEN),
        ],
        help_text="Letters, digits and @/./+/-/_ only; at most 150 characters.",
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
