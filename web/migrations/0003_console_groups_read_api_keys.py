"""Support and Finance read API keys (owner, prefix, limit, usage, calls): the customer page links to each key's page.

Revoking a key from the console needs "change" on API keys, which no group gets: give it to named people.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUPS = ("Support", "Finance")
CODENAME = "view_apikey"


def add_view_apikey(apps, schema_editor):
    """Idempotent, like 0002: creates accounts' permissions first on a fresh database."""
    create_permissions(global_apps.get_app_config("accounts"), verbosity=0, apps=apps)
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    permission = Permission.objects.get(
        content_type__app_label="accounts", content_type__model="apikey", codename=CODENAME
    )
    for name in GROUPS:
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(permission)


def remove_view_apikey(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.filter(name__in=GROUPS):
        group.permissions.remove(*group.permissions.filter(codename=CODENAME))


class Migration(migrations.Migration):
    dependencies = [
        ("web", "0002_console_groups"),
        ("accounts", "0004_api_keys"),
    ]

    operations = [migrations.RunPython(add_view_apikey, remove_view_apikey)]
