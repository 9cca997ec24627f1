"""The "Can grant beyond the support limit" permission: staff without it grant at most SUPPORT_GRANT_LIMIT at once.

Given to no group: superusers hold it implicitly; give it to named people (docs/support.md).
"""

from django.db import migrations

CODENAME = "grant_beyond_support_limit"
NAME = "Can grant beyond the support limit"


def create_permission(apps, schema_editor):
    """Idempotent. Declared here, as 0004's grant permission is: it guards an action, not a model field."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    wallet_type = ContentType.objects.get_for_model(apps.get_model("billing", "Wallet"))
    Permission.objects.get_or_create(content_type=wallet_type, codename=CODENAME, defaults={"name": NAME})


def remove_permission(apps, schema_editor):
    apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="billing", codename=CODENAME
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("billing", "0018_ledger_kinds_purchase_allowance_expiry"),
    ]

    operations = [migrations.RunPython(create_permission, remove_permission)]
