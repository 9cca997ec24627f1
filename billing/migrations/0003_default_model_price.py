"""Price the default model (echo-1) so every successful turn costs something."""

from decimal import Decimal

from django.db import migrations

DEFAULT_MODEL = "echo-1"


def create_price(apps, schema_editor):
    ModelPrice = apps.get_model("billing", "ModelPrice")
    ModelPrice.objects.get_or_create(
        model=DEFAULT_MODEL,
        defaults={
            "input_price_per_1k": Decimal("1.000000"),
            "output_price_per_1k": Decimal("2.000000"),
            "active": True,
        },
    )


def remove_price(apps, schema_editor):
    apps.get_model("billing", "ModelPrice").objects.filter(model=DEFAULT_MODEL).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_ledger_append_only_trigger")]

    operations = [migrations.RunPython(create_price, remove_price)]
