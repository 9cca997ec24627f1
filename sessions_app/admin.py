"""The conversation in the admin, view-only: tool runs, users' files, and session summaries."""

from django.contrib import admin

from core.admin import ReadOnlyAdminMixin
from core.paginators import EstimatedCountPaginator
from sessions_app.models import SessionSummary, ToolCallEvent, UserFile


@admin.register(ToolCallEvent)
class ToolCallEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Tool runs as recorded, one per call the model asked for: read-only."""

    list_display = ["id", "created_at", "tool", "status", "result_chars", "latency_ms", "turn"]
    list_display_links = ["id", "created_at"]
    list_filter = ["tool", "status", "created_at"]
    list_select_related = ["turn"]
    search_fields = ["turn__session__owner__username"]
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator


@admin.register(UserFile)
class UserFileAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Users' uploads (details only; the bytes stay with their owner's API): read-only."""

    list_display = ["id", "created_at", "owner", "name", "content_type", "size"]
    list_display_links = ["id", "created_at"]
    list_select_related = ["owner"]
    list_filter = ["content_type", "created_at"]
    search_fields = ["owner__username", "owner__email", "name"]
    exclude = ["search_vector", "file"]
    ordering = ["-id"]
    show_full_result_count = False


@admin.register(SessionSummary)
class SessionSummaryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Session summaries; `used_fallback` marks those whose model call failed: read-only."""

    list_display = ["id", "created_at", "session", "covers_turns", "used_fallback", "llm_call"]
    list_display_links = ["id", "created_at"]
    list_select_related = ["session", "llm_call"]
    list_filter = ["used_fallback", "created_at"]
    ordering = ["-id"]
    show_full_result_count = False
