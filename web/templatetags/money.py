"""Template filters for money people read: an amount in its currency, as the console shows it too."""

from django import template

from billing.stripe_checkout import format_currency

register = template.Library()


@register.filter
def in_currency(amount, currency: str) -> str:
    """`{{ purchase.amount|in_currency:purchase.currency }}`: "5.00 USD", "500 JPY", "1.250 KWD"."""
    return format_currency(amount, currency)
