"""Chat sessions, LLM providers, tools and the turn flow."""

from django.apps import AppConfig


class SessionsAppConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "sessions_app"
    verbose_name = "Conversations"

    def ready(self):
        from sessions_app import (
            checks,  # noqa: F401  (registers the LLM settings checks)
            tools,
        )

        tools.autodiscover()  # each tool module registers itself, once per process

    def seed_demo(self, *, users) -> None:
        """Demo conversations for `manage.py seed_demo` (make run): one using both tools, one summarized."""
        from sessions_app.demo import seed_conversations

        seed_conversations(users=users)
