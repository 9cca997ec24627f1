"""The conversation in the admin, view-only: sessions, turns (with their refund), tool runs, users' files, summaries."""

from decimal import Decimal

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.text import Truncator

from billing.admin import GRANT_PERMISSION, refund_debits
from billing.admin.events import CALL_CONTEXT_LINKS
from billing.customer_selectors import debits_for_calls
from core.admin import ReadOnlyAdminMixin
from core.api_fields import MAX_ID
from core.money import format_money
from core.paginators import EstimatedCountPaginator
from sessions_app.customer_selectors import session_turns_for_console, turn_detail, turn_ids_for_calls
from sessions_app.models import ChatSession, SessionSummary, ToolCallEvent, Turn, UserFile

EXCERPT_CHARS = 400


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


# --- Chat sessions and turns: read-only, each page read through this app's selectors ----------------

SESSION_TURNS_ON_PAGE = 50


def _turn_of_call(event) -> tuple[str, str] | None:
    """billing's call pages link to the turn that made the call (CALL_CONTEXT_LINKS)."""
    turn_id = turn_ids_for_calls(call_ids=[event.pk]).get(event.pk)
    if turn_id is None:
        return None
    return f"turn {turn_id}", reverse("admin:sessions_app_turn_change", args=[turn_id])


CALL_CONTEXT_LINKS.append(_turn_of_call)


class IdOrOwnerSearch:
    """A number in the search box is the row's id (an index look-up); anything else searches the owner."""

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if term.isdigit():
            return queryset.filter(pk=int(term)) if int(term) <= MAX_ID else queryset.none(), False
        return super().get_search_results(request, queryset, search_term)


@admin.register(ChatSession)
class ChatSessionAdmin(IdOrOwnerSearch, ReadOnlyAdminMixin, admin.ModelAdmin):
    """A customer's conversations: only staff granted "view chat session" see them; nobody edits them here."""

    list_display = ["id", "updated_at", "owner", "title", "model", "turn_count"]
    list_display_links = ["id", "updated_at"]
    list_select_related = ["owner"]
    list_filter = ["updated_at"]
    search_fields = ["owner__username", "owner__email", "title"]
    search_help_text = "A session id, or the owner's username or email, or words of the title."
    fields = ["owner", "title", "model", "turn_count", "summary", "created_at", "updated_at"]
    readonly_fields = fields
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    change_form_template = "admin/sessions_app/chatsession/change_form.html"

    @admin.display(description="turns")
    def turn_count(self, session):
        return session.message_count // 2  # every turn writes exactly two messages

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(
                turns=session_turns_for_console(session=obj, limit=SESSION_TURNS_ON_PAGE),
                turns_limit=SESSION_TURNS_ON_PAGE,
            )
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(Turn)
class TurnAdmin(IdOrOwnerSearch, ReadOnlyAdminMixin, admin.ModelAdmin):
    """One billed exchange: the prompt and answer, every call with its price and cost, its tool runs, and its refund."""

    list_display = ["id", "created_at", "owner", "session", "stop_reason"]
    list_display_links = ["id", "created_at"]
    list_select_related = ["session__owner"]
    list_filter = ["stop_reason", "created_at"]
    search_fields = ["session__owner__username", "session__owner__email"]
    search_help_text = "A turn id, or the owner's username or email."
    fields = ["owner", "session", "created_at", "stop_reason", "prompt", "answer"]
    readonly_fields = fields
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    change_form_template = "admin/sessions_app/turn/change_form.html"

    @admin.display(description="owner", ordering="session__owner__username")
    def owner(self, turn):
        return turn.session.owner

    @admin.display(description="prompt (excerpt)")
    def prompt(self, turn):
        return Truncator(turn.user_message.content).chars(EXCERPT_CHARS)

    @admin.display(description="answer (excerpt)")
    def answer(self, turn):
        return Truncator(turn.assistant_message.content).chars(EXCERPT_CHARS)

    def get_object(self, request, object_id, from_field=None):
        # The turn as its page shows it: session, owner, messages, calls and tool runs in three queries.
        if not str(object_id).isdigit() or int(object_id) > MAX_ID:
            return None
        return turn_detail(turn_id=int(object_id))

    def get_urls(self):
        refund = path(
            "<path:object_id>/refund/",
            self.admin_site.admin_view(self.refund_view),
            name="sessions_app_turn_refund",
        )
        return [refund, *super().get_urls()]

    def has_refund_permission(self, request) -> bool:
        return request.user.has_perm(GRANT_PERMISSION) and self.has_view_permission(request)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            calls = [link.llm_call for link in obj.calls.all()]
            debits = {row.llm_call_id: row for row in debits_for_calls(call_ids=[c.pk for c in calls])}
            context.update(
                calls=[(call, debits.get(call.pk)) for call in calls],
                total_cost=format_money(sum((call.cost for call in calls), Decimal(0))),
                tool_runs=list(obj.tool_calls.all()),
                can_refund=bool(debits) and self.has_refund_permission(request),
                refund_url=reverse("admin:sessions_app_turn_refund", args=[obj.pk]),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def refund_view(self, request, object_id):
        """Refund this turn's debits (all that is left of each, or the amount) through billing's refund form and service."""
        if not self.has_refund_permission(request):
            raise PermissionDenied
        turn = self.get_object(request, unquote(object_id))
        if turn is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        debits = list(debits_for_calls(call_ids=[link.llm_call_id for link in turn.calls.all()]))
        page_url = reverse("admin:sessions_app_turn_change", args=[turn.pk])
        if not debits:
            self.message_user(
                request, "This turn has no debit to refund: its calls cost nothing.", messages.WARNING
            )
            return HttpResponseRedirect(page_url)
        response = refund_debits(
            self,
            request,
            debits,
            action="refund_turn",
            title=f"Refund turn {turn.pk}",
            intro=(
                f"Each debit of turn {turn.pk} (one per billed model call) is refunded, all that is left "
                "of it or the amount, as a new refund row"
                + (
                    f": an amount is taken from each of its {len(debits)} debits, {len(debits)} times the "
                    "amount in all."
                    if len(debits) > 1
                    else "."
                )
            ),
            what=f"turn {turn.pk}, ",
            back_url=page_url,
        )
        return HttpResponseRedirect(page_url) if response is None else response
