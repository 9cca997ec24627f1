"""The web app's configs: the user's pages, and the admin as the creditdesk support console."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps  # the module, so its AdminConfig is no candidate here


class WebConfig(AppConfig):
    default = True  # what INSTALLED_APPS' "web" picks
    default_auto_field = "django.db.models.BigAutoField"
    name = "web"
    verbose_name = "Customers"


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the console as its default site, so every app's admin.site.register lands there."""

    default = False
    default_site = "web.console.ConsoleSite"
