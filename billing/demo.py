"""Demo data for `manage.py seed_demo`: a purchase of credits completed as Stripe's webhook completes one."""

from django.conf import settings

from billing import stripe_checkout
from billing.models import Purchase
from billing.services.purchases import complete_checkout, reference

DEMO_PURCHASE_CREDITS = 1000


def seed_completed_purchase(*, user) -> Purchase:
    """Give `user` one paid purchase (once): a pending row, then the same crediting path the webhook takes."""
    found = Purchase.objects.filter(user=user, status=Purchase.Status.PAID).first()
    if found is not None:
        return found
    amount = stripe_checkout.currency_amount(credits=DEMO_PURCHASE_CREDITS)
    purchase = Purchase.objects.create(
        user=user, credits=DEMO_PURCHASE_CREDITS, amount=amount, currency=settings.CREDIT_CURRENCY
    )
    complete_checkout(
        session={
            "id": f"cs_demo_{user.username}_{purchase.pk}",
            "client_reference_id": reference(purchase.pk),
            "payment_status": "paid",
            "amount_total": stripe_checkout.minor_units(amount, purchase.currency),
            "currency": purchase.currency,
        }
    )
    purchase.refresh_from_db()
    return purchase
