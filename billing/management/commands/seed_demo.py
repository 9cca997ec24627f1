"""manage.py seed_demo: idempotent demo data for `make run` (logins, funded wallets, weeks of usage, credit lots)."""

import random
from datetime import timedelta
from decimal import Decimal

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from billing import services
from billing.demo import seed_completed_purchase
from billing.models import Allowance, CreditTransaction, LLMCallEvent, ModelPrice
from billing.services.allowances import issue_allowances

STAFF = ("support", "support-demo-password")  # a support agent: the Support group, what support may do
LEAD = ("admin", "admin-demo-password")  # a superuser: prices, enforcement, key revocations, redelivery
SUPPORT_GROUP = "Support"  # created by billing's migration 0004 (docs/support.md, "Who may do what")
DEMO_USERS = [("alice", "alice-demo-password"), ("bob", "bob-demo-password")]
PRICES = {
    "echo-1": (Decimal("1.000000"), Decimal("2.000000")),
    "gpt-4o-mini": (Decimal("0.150000"), Decimal("0.600000")),
    "gpt-4o": (Decimal("2.500000"), Decimal("10.000000")),
}
DAYS = 21


class Command(BaseCommand):
    help = "Create demo logins, priced models and a few weeks of usage (safe to run again)."

    def handle(self, *args, **options):
        user_model = get_user_model()
        for model, (inp, out) in PRICES.items():
            ModelPrice.objects.get_or_create(
                model=model, defaults={"input_price_per_1k": inp, "output_price_per_1k": out}
            )
        staff = self._staff(STAFF, superuser=False)
        staff.groups.add(Group.objects.get(name=SUPPORT_GROUP))
        self._staff(LEAD, superuser=True)
        for username, password in DEMO_USERS:
            user, created = user_model.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            if created:
                user.set_password(password)
                user.save(update_fields=["password"])
            services.grant(
                user=user,
                amount=Decimal("100"),
                reason="Demo top-up",
                initiated_by=staff,
                idempotency_key="seed-demo-top-up",
            )
            if not LLMCallEvent.objects.filter(user=user).exists():
                self._usage(user)
        seed_completed_purchase(
            user=user_model.objects.get(username=DEMO_USERS[0][0])
        )  # alice bought credits
        # Other apps add theirs (an AppConfig with a `seed_demo(*, users)` method): billing names none of them.
        demo_users = list(user_model.objects.filter(username__in=[name for name, _ in DEMO_USERS]))
        for app_config in apps.get_app_configs():
            if callable(getattr(app_config, "seed_demo", None)):
                app_config.seed_demo(users=demo_users)
        # After the other apps' demo turns, so the bonus is still there to be seen expiring.
        self._lots(user_model.objects.get(username=DEMO_USERS[0][0]), staff)
        if options["verbosity"] < 1:
            return  # `make run` prints the logins in its banner (manage.py banner)
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  support (the console):     {STAFF[0]} / {STAFF[1]}")
        self.stdout.write(f"  superuser (the console):   {LEAD[0]} / {LEAD[1]}")
        for username, password in DEMO_USERS:
            self.stdout.write(f"  user (/ and the API):      {username} / {password}")

    @staticmethod
    def _staff(login, *, superuser: bool):
        """A demo staff login, made once with its password; its role is set again on every run."""
        username, password = login
        user, created = get_user_model().objects.update_or_create(
            username=username,
            defaults={"is_staff": True, "is_superuser": superuser},
            create_defaults={"email": f"{username}@example.com", "is_staff": True, "is_superuser": superuser},
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

    def _lots(self, user, staff):
        """Credit lots to look at: an expiring promotional grant and a monthly allowance (issued once a month)."""
        bonus_key = "seed-demo-expiring-bonus"
        # Once: run again, the same key would answer the first grant (a replay), whose expiry stays.
        if not CreditTransaction.objects.filter(wallet__user=user, idempotency_key=bonus_key).exists():
            services.grant(
                user=user,
                amount=Decimal("40"),  # pays the demo turns' debt first, and leaves a lot to watch expire
                reason="Demo welcome bonus (expires in 14 days)",
                initiated_by=staff,
                idempotency_key=bonus_key,
                expires_at=timezone.now() + timedelta(days=14),
                priority=20,
            )
        allowance, _ = Allowance.objects.get_or_create(
            name="Demo monthly allowance",
            defaults={"credits": Decimal("25"), "period": "month", "expires_with_period": True},
        )
        allowance.users.add(user)
        issue_allowances()

    def _usage(self, user):
        """A few turns a day over the last weeks, billed through the same service as real turns."""
        rng = random.Random(user.username)
        prices = list(ModelPrice.objects.all())
        now = timezone.now()
        with transaction.atomic():
            for day in range(DAYS, 0, -1):
                for _ in range(rng.randint(1, 5)):
                    at = now - timedelta(days=day, minutes=rng.randint(0, 1439))
                    price = rng.choice(prices)
                    if rng.random() < 0.05:
                        services.record_failed_call(
                            user=user, model=price.model, provider="echo", error="demo timeout", price=price
                        )
                        continue
                    services.charge(
                        user=user,
                        price=price,
                        provider="echo",
                        input_tokens=rng.randint(20, 800),
                        output_tokens=rng.randint(20, 400),
                        latency_ms=rng.randint(50, 900),
                        occurred_at=at,
                    )
