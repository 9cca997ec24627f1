"""The console's staff groups: "Support" (billing 0004) reads customers and their conversations, grants and refunds;
"Finance" reads the money and nothing of the conversations. docs/support.md describes both."""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT = "Support"
FINANCE = "Finance"
# (app label, model, codename) added to Support: the customer page and what it links to.
SUPPORT_ADDS = [
    ("web", "customer", "view_customer"),
    ("sessions_app", "chatsession", "view_chatsession"),
    ("sessions_app", "turn", "view_turn"),
    ("sessions_app", "toolcallevent", "view_toolcallevent"),
    ("sessions_app", "sessionsummary", "view_sessionsummary"),
    ("sessions_app", "userfile", "view_userfile"),
    ("billing", "walletevent", "view_walletevent"),
    ("notifications", "delivery", "view_delivery"),
]
# Finance reads every figure and exports the ledger (export needs "view"); it moves no money and
# reads no conversation.
FINANCE_PERMISSIONS = [
    ("web", "customer", "view_customer"),
    ("accounts", "user", "view_user"),
    ("billing", "wallet", "view_wallet"),
    ("billing", "credittransaction", "view_credittransaction"),
    ("billing", "llmcallevent", "view_llmcallevent"),
    ("billing", "modelprice", "view_modelprice"),
    ("billing", "credithold", "view_credithold"),
    ("billing", "walletevent", "view_walletevent"),
    ("notifications", "delivery", "view_delivery"),
    ("reporting", "dailyusage", "view_dailyusage"),
]
APPS = ("accounts", "billing", "reporting", "sessions_app", "notifications", "web")


def _permission(permission_model, app_label, model, codename):
    return permission_model.objects.get(
        content_type__app_label=app_label, content_type__model=model, codename=codename
    )


def create_groups(apps, schema_editor):
    """Idempotent, like billing 0004: creates the permissions first on a fresh database."""
    for label in APPS:
        create_permissions(global_apps.get_app_config(label), verbosity=0, apps=apps)
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    support, _ = Group.objects.get_or_create(name=SUPPORT)
    support.permissions.add(*(_permission(Permission, *spec) for spec in SUPPORT_ADDS))
    finance, _ = Group.objects.get_or_create(name=FINANCE)
    finance.permissions.add(*(_permission(Permission, *spec) for spec in FINANCE_PERMISSIONS))


def remove_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name=FINANCE).delete()
    for group in Group.objects.filter(name=SUPPORT):
        group.permissions.remove(*group.permissions.filter(codename__in=[c for _, _, c in SUPPORT_ADDS]))


class Migration(migrations.Migration):
    dependencies = [
        ("web", "0001_initial"),
        ("billing", "0016_single_column_indexes_only_where_needed"),
        ("sessions_app", "0006_composite_indexes_cover_foreign_keys"),
        ("notifications", "0001_initial"),
        ("reporting", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
