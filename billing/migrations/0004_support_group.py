"""The "Can grant credits" permission and a "Support" group holding what a support agent needs."""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Support"
GRANT_CODENAME = "grant_credits"
GRANT_NAME = "Can grant credits"
# (app label, model, codename): read everything an agent looks at; grant, but never edit prices.
SUPPORT_PERMISSIONS = [
    ("billing", "wallet", "view_wallet"),
    ("billing", "wallet", GRANT_CODENAME),
    ("billing", "credittransaction", "view_credittransaction"),
    ("billing", "llmcallevent", "view_llmcallevent"),
    ("billing", "modelprice", "view_modelprice"),
    ("reporting", "dailyusage", "view_dailyusage"),
    ("accounts", "user", "view_user"),
]


def create_support_group(apps, schema_editor):
    """Idempotent: safe to re-run on a database that already has the group or some permissions."""
    # Permissions are normally created after `migrate` finishes (post_migrate); create them now so
    # the group can hold them on a fresh database.
    for label in ("accounts", "billing", "reporting"):
        create_permissions(global_apps.get_app_config(label), verbosity=0, apps=apps)
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")

    # Declared here rather than in Wallet.Meta.permissions: it guards an action, not a model field.
    wallet_type = ContentType.objects.get_for_model(apps.get_model("billing", "Wallet"))
    Permission.objects.get_or_create(
        content_type=wallet_type, codename=GRANT_CODENAME, defaults={"name": GRANT_NAME}
    )

    group, _ = Group.objects.get_or_create(name=GROUP)
    for app_label, model, codename in SUPPORT_PERMISSIONS:
        group.permissions.add(
            Permission.objects.get(
                content_type__app_label=app_label, content_type__model=model, codename=codename
            )
        )


def remove_support_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()
    apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="billing", codename=GRANT_CODENAME
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("accounts", "0001_initial"),
        ("billing", "0003_default_model_price"),
        ("reporting", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_support_group, remove_support_group)]
