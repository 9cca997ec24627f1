from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The shared ground as an installed app: its one table (rate limits) and its chores (tasks.py)."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "core"

    def ready(self):
        from core import checks  # noqa: F401  (registers the throttle rates' check)
