"""The support console: Django's admin site named creditdesk, its index grouped by what support staff look for."""

from django.contrib import admin

# The index's groups, in order. A model is placed by "app_label.model" first, else by its app; a model
# named by neither lands in "Other" (so a newly registered page is never hidden, just unplaced).
GROUPS = (
    ("customers", "Customers"),
    ("money", "Money"),
    ("usage", "Usage"),
    ("conversations", "Conversations"),
    ("notifications", "Notifications"),
    ("security", "Security and access"),
    ("jobs", "Background jobs"),
    ("other", "Other"),
)
# Within a group, models keep this order (the most used first); unlisted ones follow alphabetically.
PLACES = {
    "web.customer": "customers",
    "accounts.user": "customers",
    "billing.wallet": "customers",
    "billing.credittransaction": "money",
    "billing.creditlot": "money",
    "billing.purchase": "money",
    "billing.allowance": "money",
    "billing.allowanceissue": "money",
    "billing.credithold": "money",
    "billing.modelprice": "money",
    "reporting.dailyusage": "usage",
    "billing.llmcallevent": "usage",
    "sessions_app.toolcallevent": "usage",
    "sessions_app.chatsession": "conversations",
    "sessions_app.turn": "conversations",
    "sessions_app.sessionsummary": "conversations",
    "sessions_app.userfile": "conversations",
    "billing.walletevent": "notifications",
    "notifications.delivery": "notifications",
    "accounts.apikey": "security",
    "auth.group": "security",
    "knox.authtoken": "security",
}
APP_PLACES = {"axes": "security", "knox": "security", "auth": "security", "procrastinate": "jobs"}
ORDER = {name: index for index, name in enumerate(PLACES)}


def place_of(app_label: str, model_name: str) -> str:
    return PLACES.get(f"{app_label}.{model_name}") or APP_PLACES.get(app_label) or "other"


class ConsoleSite(admin.AdminSite):
    """admin.site for the whole project (web.apps.ConsoleAdminConfig): same pages, grouped for people."""

    site_header = "creditdesk support console"
    site_title = "creditdesk"
    index_title = "Support console"

    def get_app_list(self, request, app_label=None):
        """The index and the sidebar: models grouped as GROUPS say; an app's own page (/admin/<app>/) is Django's."""
        if app_label is not None:
            return super().get_app_list(request, app_label)
        grouped: dict[str, list[dict]] = {slug: [] for slug, _ in GROUPS}
        for app in self._build_app_dict(request).values():
            for model in app["models"]:
                key = f"{app['app_label']}.{model['object_name'].lower()}"
                grouped[place_of(app["app_label"], model["object_name"].lower())].append(
                    {**model, "key": key}
                )
        return [
            {
                "name": name,
                "app_label": slug,
                "app_url": "",  # a group has no page of its own (templates/admin/app_list.html)
                "has_module_perms": True,
                "models": sorted(grouped[slug], key=lambda m: (ORDER.get(m["key"], len(ORDER)), m["name"])),
            }
            for slug, name in GROUPS
            if grouped[slug]
        ]
