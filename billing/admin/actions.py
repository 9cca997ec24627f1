"""The staff's ledger actions: the permission they need and the intermediate form that writes the rows."""

from django.contrib import messages
from django.db import transaction
from django.template.response import TemplateResponse
from django.urls import reverse

from core.admin import action_selection
from core.errors import DomainError

GRANT_PERMISSION = "billing.grant_credits"  # created by billing/migrations/0004_support_group.py


def ledger_action(
    model_admin,
    request,
    *,
    form_class,
    targets,
    action,
    title,
    intro,
    submit_label,
    headers,
    cells,
    write,
    logged_on,
    back_url: str = "",
):
    """An action's intermediate form: first POST shows it, the second writes every row or none.

    `back_url` is where Cancel goes (the changelist when not given: a page that is not an action of the
    list, such as a turn's refund, names its own). Each written row is recorded in Django's LogEntry (`logged_on(target, row)` names the object and
    the message); replays of a double-submitted form write and log nothing new.
    """
    form = form_class(request.POST) if "apply" in request.POST else form_class()
    if "apply" in request.POST and form.is_valid():
        try:
            with transaction.atomic():
                rows = [write(target, form) for target in targets]
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            new = [(target, row) for target, row in zip(targets, rows, strict=True) if not row.replayed]
            for target, row in new:
                model_admin.log_change(request, *logged_on(target, row))
            if new:
                model_admin.message_user(
                    request, f"{submit_label}: {len(new)} ledger row(s) written.", messages.SUCCESS
                )
            if len(new) < len(rows):
                model_admin.message_user(
                    request, "This form was already submitted; nothing more was written.", messages.WARNING
                )
            return None  # back to the changelist, which shows the message
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.opts,
        "form": form,
        "intro": intro,
        "headers": headers,
        "rows": [cells(target) for target in targets],
        **action_selection(request, [target.pk for target in targets]),
        "action": action,
        "submit_label": submit_label,
        "back_url": back_url
        or reverse(f"admin:{model_admin.opts.app_label}_{model_admin.opts.model_name}_changelist"),
        "media": model_admin.media + form.media,
    }
    return TemplateResponse(request, "admin/billing/ledger_action.html", context)


def wallets_label(count: int) -> str:
    return f"{count} wallet" if count == 1 else f"{count} wallets"
