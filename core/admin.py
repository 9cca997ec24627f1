"""Admin building blocks every app's console uses."""

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from core.replica import replica_or_primary


class ReadOnlyAdminMixin:
    """Rows only services write (wallets, the ledger, usage events): no add, edit or delete here, for anyone."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReplicaChangelistMixin:
    """A history list whose GET reads the replica (when healthy): rows a few seconds old are fine there.

    Only the changelist's GET: an action posts to the same view and must see the primary's rows. The
    queryset is pinned to the alias because the page's rows are read while the template renders.
    """

    def changelist_view(self, request, extra_context=None):
        if request.method in ("GET", "HEAD"):
            request.reads_replica = True
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if getattr(request, "reads_replica", False):
            return queryset.using(replica_or_primary())
        return queryset


def action_selection(request, pks: list) -> dict:
    """How an action's intermediate page names its objects again when it posts back (its template
    includes admin/action_selection.html with these): the ids, or, when "select all" was used on the
    changelist, `select_across`.

    With `select_across` the page posts back to the changelist's own URL (filters and search in its
    query string), where Django re-resolves the selection as it did the first time: one id per object
    would be over DATA_UPLOAD_MAX_NUMBER_FIELDS (1000) on a big selection, and Django answers 400.
    One of the ids first posted still goes with it, since Django's action dispatch wants one.
    """
    select_across = forms.BooleanField(required=False).clean(request.POST.get("select_across"))
    posted = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
    return {
        "select_across": select_across,
        "selected": posted[:1] if select_across else pks,
        # What the page shows, so that the rows found again are these (FrozenSelectionMixin).
        "selection_count": len(pks),
        "selection_last": max(pks, default=0),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }


class FrozenSelectionMixin:
    """An action confirmed after "select all" acts on the rows its page showed, or on none.

    Its form posts back the changelist's filters (action_selection), and Django finds the rows
    again: a row made since (a new debit that matches a refund's filters) or one that came to match
    (a wallet whose balance moved) would be acted on unseen. The rows found again are taken up to the
    highest id the page showed, and when they are not as many as it showed, nothing is done and the
    list says why.
    """

    def response_action(self, request, queryset):
        shown, last = request.POST.get("selection_count"), request.POST.get("selection_last")
        if request.POST.get("select_across") == "1" and shown is not None and last is not None:
            try:
                shown, last = int(shown), int(last)
            except ValueError:
                shown, last = -1, 0
            queryset = queryset.filter(pk__lte=last)
            now = queryset.count()
            if now != shown:
                self.message_user(
                    request,
                    f'The rows selected with "select all" changed since the confirmation page was shown '
                    f"({shown} then, {now} now): nothing was done. Select them again.",
                    messages.WARNING,
                )
                return None  # back to the list
        return super().response_action(request, queryset)


def confirm_action(
    model_admin,
    request,
    *,
    title: str,
    intro: str,
    headers: list[str],
    rows: list[list],
    selected: list,
    submit_label: str,
    back_url: str,
    action: str = "",
):
    """The page an action shows before it acts: what it does, on which objects, and a confirming form.

    The form posts back where it came from (the changelist with `action`, or an object's own view)
    with `apply`; the caller acts only when `"apply" in request.POST`.
    """
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.opts,
        "intro": intro,
        "headers": headers,
        "rows": rows,
        **action_selection(request, selected),
        "action": action,
        "submit_label": submit_label,
        "back_url": back_url,
    }
    return TemplateResponse(request, "admin/confirm_action.html", context)
