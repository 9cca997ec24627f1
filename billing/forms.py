"""Admin forms for billing: the staff grant form and the model-price form, validated like the API."""

import uuid
from decimal import Decimal

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from billing.models import Allowance, CreditLot, ModelPrice
from billing.pricing import validate_model_name, validate_price
from billing.services import (
    GRANT_MAX,
    PRIORITY_MAX,
    PRIORITY_MIN,
    REASON_MAX,
    validate_adjustment_amount,
    validate_expires_at,
    validate_grant_amount,
    validate_priority,
    validate_reason,
    validate_refund_amount,
)
from core.errors import DomainError
from core.money import format_money


class GrantCreditsForm(forms.Form):
    """Amount and reason for a staff grant; the service's own validators decide what is valid."""

    # A CharField, not a DecimalField: forms.DecimalField accepts "1e3" and " 12 ", the API does not.
    amount = forms.CharField(
        label="Amount (credits)",
        strip=False,
        help_text=f"More than 0 and at most {GRANT_MAX}, with at most 6 decimal places (e.g. 25 or 12.5).",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 16}),
    )
    reason = forms.CharField(
        max_length=REASON_MAX,
        strip=False,
        help_text="Why these credits are granted; recorded on the ledger row and shown to the user.",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )
    expires_at = forms.CharField(
        label="Expires at",
        required=False,
        help_text="Optional: when what is left of these credits expires, ISO 8601 in the future "
        "(e.g. 2026-12-31T23:59Z; no offset: UTC). Empty: never.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "size": 24}),
    )
    priority = forms.CharField(
        label="Priority",
        required=False,
        help_text=f"{PRIORITY_MIN}-{PRIORITY_MAX}, default 50: charges burn lower numbers first.",
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off", "size": 4}),
    )
    category = forms.ChoiceField(
        label="Category",
        choices=CreditLot.Category.choices,
        initial=CreditLot.Category.PROMOTIONAL,
        required=False,  # a form posted without it (scripts, older pages) grants promotional credits
        help_text="At equal priority and expiry, promotional credits burn before paid ones.",
    )
    # One token per rendered form, sent as the grant's idempotency key: a double-submitted form
    # (double click, browser resubmit) replays the first grant instead of granting twice.
    submission = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("submission", uuid.uuid4().hex)
        super().__init__(*args, **kwargs)
        self.fields["amount"].help_text += (
            f" Staff without the permission to grant beyond the support limit: at most "
            f"{format_money(Decimal(settings.SUPPORT_GRANT_LIMIT))} at once."
        )

    def clean_amount(self):
        return _via_service(validate_grant_amount, self.cleaned_data["amount"])

    def clean_reason(self):
        return _via_service(validate_reason, self.cleaned_data["reason"])

    def clean_expires_at(self):
        return _via_service(validate_expires_at, self.cleaned_data["expires_at"])

    def clean_priority(self):
        return _via_service(validate_priority, self.cleaned_data["priority"])

    @property
    def lot_terms(self) -> dict:
        """The grant's lot terms, as services.grant takes them."""
        return {name: self.cleaned_data[name] for name in ("expires_at", "priority", "category")}

    @property
    def idempotency_key(self) -> str:
        return f"admin-grant:{self.cleaned_data['submission']}"


class _LedgerActionForm(forms.Form):
    """Amount and reason of a refund or an adjustment, validated by the service's own validators."""

    reason = forms.CharField(
        max_length=REASON_MAX,
        strip=False,
        help_text="Why; recorded on the ledger row and shown to the user.",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )
    # One token per rendered form, part of the idempotency key: a double submit replays, never repeats.
    submission = forms.CharField(widget=forms.HiddenInput, max_length=64)
    key_prefix = ""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("submission", uuid.uuid4().hex)
        super().__init__(*args, **kwargs)

    def clean_reason(self):
        return _via_service(validate_reason, self.cleaned_data["reason"])

    def idempotency_key(self, target_pk: int) -> str:
        return f"{self.key_prefix}:{self.cleaned_data['submission']}:{target_pk}"


class RefundForm(_LedgerActionForm):
    amount = forms.CharField(
        label="Amount from each debit (credits)",
        strip=False,
        required=False,
        help_text="Leave empty to refund all that is left of each debit. An amount is refunded from every "
        "debit listed (two debits and 1.5: 3 credits in all); more than 0, at most what is left of each.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 16}),
    )
    field_order = ["amount", "reason"]
    key_prefix = "admin-refund"

    def clean_amount(self):
        raw = self.cleaned_data["amount"]
        return None if raw == "" else _via_service(validate_refund_amount, raw)


class AdjustForm(_LedgerActionForm):
    amount = forms.CharField(
        label="Amount (credits)",
        strip=False,
        help_text=f"A plain amount adds credits (e.g. 3), one with a leading - removes them (e.g. -3.5; no +); "
        f"not 0, at most {GRANT_MAX} either way.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 16}),
    )
    field_order = ["amount", "reason"]
    key_prefix = "admin-adjust"

    def clean_amount(self):
        return _via_service(validate_adjustment_amount, self.cleaned_data["amount"])


def _via_service(validator, value, **kwargs):
    try:
        return validator(value, **kwargs)
    except DomainError as exc:
        raise ValidationError(exc.message) from exc


class AllowanceForm(forms.ModelForm):
    """An allowance's credits parsed like a grant's amount (exact, > 0, <= 10000), so the database's
    check never sees a bad one; its period refused on the field once issued (Allowance.clean)."""

    credits = forms.CharField(
        label="Credits per period",
        strip=False,
        help_text=f"More than 0 and at most {GRANT_MAX}, at most 6 decimal places; one promotional lot "
        "per user per period.",
    )

    class Meta:
        model = Allowance
        fields = ["name", "credits", "period", "expires_with_period", "active", "users", "groups"]
        # Shown on the field, and beside it once it is read-only (the admin reads it from here).
        help_texts = {"period": Allowance.PERIOD_LOCKED}

    def clean_credits(self):
        return _via_service(validate_grant_amount, self.cleaned_data["credits"])


class ModelPriceForm(forms.ModelForm):
    """Prices parsed as strictly as the API's, and refused below zero before the DB constraint is hit."""

    # CharFields so billing.pricing's strict parser sees what was typed (forms.DecimalField takes "1e3").
    input_price_per_1k = forms.CharField(label="Input price per 1k tokens", strip=False)
    output_price_per_1k = forms.CharField(label="Output price per 1k tokens", strip=False)

    class Meta:
        model = ModelPrice
        fields = ["model", "input_price_per_1k", "output_price_per_1k", "active"]

    def clean_model(self):
        return _via_service(validate_model_name, self.cleaned_data["model"])

    def clean_input_price_per_1k(self):
        return _via_service(
            validate_price, self.cleaned_data["input_price_per_1k"], field="input_price_per_1k"
        )

    def clean_output_price_per_1k(self):
        return _via_service(
            validate_price, self.cleaned_data["output_price_per_1k"], field="output_price_per_1k"
        )
