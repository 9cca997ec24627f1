"""Purchases of credits through Stripe Checkout; the Support and Finance groups may read them in the console."""

import django.db.models.deletion
import django.utils.timezone
from django.apps import apps as global_apps
from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

READERS = ("Support", "Finance")


def let_staff_groups_read_purchases(apps, schema_editor):
    """Idempotent, like 0008: creates the permission first on a fresh database."""
    create_permissions(global_apps.get_app_config("billing"), verbosity=0, apps=apps)
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    view = Permission.objects.get(
        content_type__app_label="billing", content_type__model="purchase", codename="view_purchase"
    )
    for name in READERS:
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(view)


def forget_purchase_readers(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.filter(name__in=READERS):
        group.permissions.remove(*group.permissions.filter(codename="view_purchase"))


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0019_grant_beyond_support_limit_permission"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Purchase",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("credits", models.PositiveIntegerField()),
                ("amount", models.DecimalField(decimal_places=6, max_digits=20)),
                ("currency", models.CharField(max_length=3)),
                (
                    "status",
                    models.CharField(
                        choices=[("pending", "pending"), ("paid", "paid"), ("expired", "expired")],
                        default="pending",
                        max_length=8,
                    ),
                ),
                ("stripe_session_id", models.CharField(blank=True, max_length=255, null=True, unique=True)),
                ("checkout_url", models.TextField(blank=True, default="")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("paid_at", models.DateTimeField(blank=True, null=True)),
                (
                    "transaction",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="purchase",
                        to="billing.credittransaction",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="purchases",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "db_table": "billing_purchase",
                "indexes": [models.Index(fields=["user", "-id"], name="purchase_user_id_idx")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("credits__gt", 0)), name="purchase_credits_positive"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("amount__gt", 0)), name="purchase_amount_positive"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("status__in", ["pending", "paid", "expired"])),
                        name="purchase_status_known",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(
                                ("paid_at__isnull", False), ("status", "paid"), ("transaction__isnull", False)
                            ),
                            models.Q(
                                models.Q(("status", "paid"), _negated=True),
                                ("paid_at__isnull", True),
                                ("transaction__isnull", True),
                            ),
                            _connector="OR",
                        ),
                        name="purchase_paid_has_transaction",
                    ),
                ],
            },
        ),
        migrations.RunPython(let_staff_groups_read_purchases, forget_purchase_readers),
    ]
