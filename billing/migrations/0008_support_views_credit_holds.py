"""Support agents may read credit holds: they explain a turn refused while the balance looks positive."""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Support"


def add_hold_view(apps, schema_editor):
    """Idempotent, like 0004: creates the permission first on a fresh database."""
    create_permissions(global_apps.get_app_config("billing"), verbosity=0, apps=apps)
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(
        Permission.objects.get(
            content_type__app_label="billing", content_type__model="credithold", codename="view_credithold"
        )
    )


def remove_hold_view(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.filter(name=GROUP):
        group.permissions.remove(*group.permissions.filter(codename="view_credithold"))


class Migration(migrations.Migration):
    dependencies = [("billing", "0007_wallet_set_enforcement_permission")]

    operations = [migrations.RunPython(add_hold_view, remove_hold_view)]
