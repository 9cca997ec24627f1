"""The user's forms: sign-up, a new chat, a message, an upload, an API key, the spending cap; each validated by the rules the API applies."""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.template.defaultfilters import filesizeformat

from accounts.keys import NAME_MAX
from accounts.serializers import ApiKeyRequestSerializer, RegisterSerializer
from billing.periods import local_today, start_instant
from billing.selectors import active_model_names
from billing.serializers import SpendCapRequestSerializer
from billing.services.purchases import validate_credits
from core.errors import DomainError
from core.validators import LATEST_MOMENT
from sessions_app.serializers import CONTENT_MAX_CHARS, TurnRequestSerializer
from web.submissions import SentOnceForm


def _serializer_errors(form: forms.Form, serializer) -> None:
    """The API serializer's verdict as the form's own errors (same rules, same words, on the same fields)."""
    if serializer.is_valid():
        return
    for name, messages in serializer.errors.items():
        for message in messages if isinstance(messages, list) else [messages]:
            form.add_error(name if name in form.fields else None, str(message))


class SignInForm(AuthenticationForm):
    """Django's sign-in form (session auth) with the browser hints a password manager reads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update(autocomplete="username")
        self.fields["password"].widget.attrs.update(autocomplete="current-password")


class SignUpForm(forms.Form):
    """Username, email and password, checked by the API's RegisterSerializer (names, password validators)."""

    username = forms.CharField(
        max_length=150,
        strip=False,
        help_text="Letters, digits and @ . + - _ only.",
        widget=forms.TextInput(attrs={"autocomplete": "username", "autocapitalize": "none"}),
    )
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password = forms.CharField(
        strip=False,
        max_length=128,
        help_text="At least 8 characters, not all digits, not a common password.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        data = super().clean()
        if not self.errors:
            serializer = RegisterSerializer(
                data={name: data.get(name) for name in ("username", "email", "password")}
            )
            _serializer_errors(self, serializer)
            if not self.errors:
                data.update(serializer.validated_data)
        return data


class NewChatForm(forms.Form):
    title = forms.CharField(max_length=200, required=False, help_text="Optional.")
    model = forms.ChoiceField(choices=(), help_text="The model that answers; each has its own price.")

    def __init__(self, *args, default_model: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        names = active_model_names()
        self.fields["model"].choices = [(name, name) for name in names]
        if default_model in names:
            self.fields["model"].initial = default_model


class MessageForm(SentOnceForm):
    """A message of a chat; its `submission` is the turn's idempotency key: a double submit replays, never repeats."""

    content = forms.CharField(
        label="Your message",
        strip=False,
        max_length=CONTENT_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "required": True}),
    )

    def clean_content(self):
        serializer = TurnRequestSerializer(data={"content": self.cleaned_data["content"]})
        if not serializer.is_valid():
            raise forms.ValidationError(
                [str(m) for m in serializer.errors.get("content", ["Invalid message."])]
            )
        return serializer.validated_data["content"]

    @property
    def idempotency_key(self) -> str:
        return f"web-form:{self.cleaned_data['submission']}"


class UploadForm(forms.Form):
    file = forms.FileField(label="A text file")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        most = filesizeformat(settings.FILE_MAX_BYTES)  # read per form: a test may change the setting
        self.fields["file"].help_text = f"Text files only (text/* or JSON), at most {most} each."


# The choices a person picks from, in the API's words ("" is null: never resets).
LIMIT_RESET_CHOICES = [("", "never"), ("daily", "daily"), ("weekly", "weekly"), ("monthly", "monthly")]
CAP_PERIOD_CHOICES = [("day", "per day"), ("week", "per week"), ("month", "per month")]


def _validated(form: forms.Form, serializer_class, data: dict) -> dict:
    """`data` checked by the API's serializer: its validated data, or its errors put on the form."""
    serializer = serializer_class(data=data)
    _serializer_errors(form, serializer)
    return serializer.validated_data if not form.errors else {}


class ApiKeyForm(forms.Form):
    """A key's name and spending limit (create and edit), checked by the API's key serializer."""

    name = forms.CharField(
        max_length=NAME_MAX,
        strip=False,
        help_text="To recognize it by, e.g. the app or machine that uses it.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    limit = forms.CharField(
        label="Spending limit (credits)",
        required=False,  # spaces pasted around the number are trimmed (the API's grammar has none)
        help_text="Optional. Once the key has spent it, its calls are refused; the last call let through "
        "is charged what it used, so it can pass the limit by that one call's cost. Empty: no limit.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    limit_reset = forms.ChoiceField(
        label="The limit resets",
        required=False,
        choices=LIMIT_RESET_CHOICES,
        help_text="Daily, weekly (from Monday) or monthly (from the 1st), or never.",
    )

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        checked = _validated(self, ApiKeyRequestSerializer, self._api_body(data))
        if checked:
            data.update(limit=checked.get("limit"), limit_reset=checked.get("limit_reset"))
        return data

    def _api_body(self, data: dict) -> dict:
        return {
            "name": data["name"],
            "limit": data["limit"] or None,
            "limit_reset": data["limit_reset"] or None,
        }


class NewApiKeyForm(ApiKeyForm, SentOnceForm):
    """A new key: the edit form's fields, an optional last day, and one token per rendered form (a
    resubmitted form, by a double click or back and resend, creates no second key)."""

    expires_on = forms.DateField(
        label="Valid until (optional)",
        required=False,
        help_text="The key stops working at the end of this day. Empty: it never expires.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean_expires_on(self):
        day = self.cleaned_data["expires_on"]
        if day is not None and day < local_today():
            raise forms.ValidationError("Choose today or a later day: a key cannot expire in the past.")
        if day is not None and day >= LATEST_MOMENT.date():
            raise forms.ValidationError(
                f"Choose a day before {LATEST_MOMENT:%Y-%m-%d}, or leave it empty for a key that never expires."
            )
        return day

    def clean(self):
        day = self.cleaned_data.get("expires_on")
        # The end of the chosen day, in the time zone the limits' periods are counted in.
        self.cleaned_data["expires_at"] = None if day is None else start_instant(day + timedelta(days=1))
        return super().clean()

    def _api_body(self, data: dict) -> dict:
        expires_at = data.get("expires_at")
        return {**super()._api_body(data), **({"expires_at": expires_at} if expires_at else {})}


class SpendCapForm(forms.Form):
    """The user's own spending cap, checked by the API's wallet serializer."""

    spend_cap = forms.CharField(
        label="Spending cap (credits)",  # spaces pasted around the number are trimmed
        help_text="Once this period's spending reaches it, messages and API calls are refused; the last one "
        "let through is charged what it used, so it can pass the cap by that one call's cost.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )
    spend_cap_period = forms.ChoiceField(
        label="Period",
        choices=CAP_PERIOD_CHOICES,
        initial="month",
        help_text="Calendar periods: a day from midnight, a week from Monday, a month from the 1st.",
    )

    def clean(self):
        data = super().clean()
        if not self.errors:
            body = {name: data[name] for name in ("spend_cap", "spend_cap_period")}
            data.update(_validated(self, SpendCapRequestSerializer, body))
        return data


class BuyCreditsForm(SentOnceForm):
    """How many credits to buy, checked by the purchase service's own validator (whole, within the bounds);
    one token per rendered form, so a resent form starts no second checkout."""

    credits = forms.CharField(
        label="Credits to buy",
        max_length=12,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off", "pattern": "[0-9]*"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["credits"].help_text = (
            f"A whole number from {settings.PURCHASE_MIN_CREDITS} to {settings.PURCHASE_MAX_CREDITS}; "
            f"one credit costs {settings.CREDIT_UNIT_PRICE} {settings.CREDIT_CURRENCY.upper()}."
        )

    def clean_credits(self):
        try:
            return validate_credits(self.cleaned_data["credits"].strip())
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from exc
