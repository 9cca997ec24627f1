"""The money column every billing model uses: core.money's digits and places."""

from django.db import models

from core.money import MAX_DIGITS, PLACES


def MoneyField(**kwargs):  # noqa: N802 - reads like a field class at the call site
    return models.DecimalField(max_digits=MAX_DIGITS, decimal_places=PLACES, **kwargs)
