"""The chat pages: the user's sessions, a new chat, and a conversation whose answers stream in.

Streaming is the API's own streamed turn (POST /api/v1/sessions/{id}/turns/, text/event-stream),
called by web/static/web/chat.js with the session cookie and the CSRF token. Without script, the
message form posts here and the same turn service answers it, made idempotent by the form's token.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from billing.customer_selectors import wallet_state
from billing.exceptions import IdempotencyConflict, InsufficientCredits
from core.api_fields import id_from_text
from core.errors import DomainError
from sessions_app import idempotency, services
from sessions_app.customer_selectors import turns_page
from sessions_app.exceptions import ProviderFailed
from sessions_app.providers import ProviderError
from sessions_app.selectors import sessions_for_user
from sessions_app.serializers import created_turn_body
from web.forms import MessageForm, NewChatForm

SESSIONS_PER_PAGE = 50
TURNS_ON_PAGE = 50


@login_required
@require_http_methods(["GET", "POST"])
def chat_list(request):
    form = NewChatForm(request.POST or None, default_model=settings.LLM_DEFAULT_MODEL)
    if request.method == "POST" and form.is_valid():
        try:
            session = services.create_session(
                owner=request.user, title=form.cleaned_data["title"], model=form.cleaned_data["model"]
            )
        except DomainError as exc:
            form.add_error("model" if exc.field == "model" else None, exc.message)
        else:
            return redirect("web:chat", pk=session.pk)
    page = Paginator(sessions_for_user(user=request.user), SESSIONS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(request, "web/chats.html", {"form": form, "page": page, "nav": "chats"})


@login_required
@require_http_methods(["GET", "POST"])
def chat(request, pk: int):
    # Another user's session is not found, as on the API (never "forbidden").
    session = get_object_or_404(sessions_for_user(user=request.user), pk=pk)
    form = MessageForm(request.POST or None)
    refused = None
    if request.method == "POST" and form.is_valid():
        try:
            refused = _take_turn(request, session, form)
        except services.SessionGone:
            messages.error(request, "This chat was deleted while its answer was being written.")
            return redirect("web:chats")
        if refused is None and not form.errors:
            return redirect("web:chat", pk=session.pk)
    # Earlier turns page back by id, as the ledger does; a marker that names no id shows the latest.
    before = id_from_text(request.GET.get("before", ""))
    page = turns_page(session=session, size=TURNS_ON_PAGE, before=before)
    context = {
        "nav": "chats",
        "session": session,
        "turns": page.turns,
        "earlier_before": page.earlier_before,
        "earlier": before is not None,  # a page of earlier turns: writing goes on at the latest
        "form": form,
        "state": wallet_state(user=request.user),
        "refused": refused,
    }
    return render(request, "web/chat.html", context)


def _take_turn(request, session, form) -> InsufficientCredits | None:
    """The turn (services.take_turn) at most once per rendered form. A refusal is returned (the page shows
    the top-up prompt) or put on the form; either way what was typed stays in it."""
    content = form.cleaned_data["content"]

    def take(record):
        def before_commit(result):
            record(created_turn_body(result.turn, balance_after=result.balance_after), result.turn.pk)

        return services.take_turn(
            session=session, user=request.user, content=content, before_commit=before_commit
        )

    try:
        idempotency.run_once(
            user=request.user, key=form.idempotency_key, session_id=session.pk, content=content, take=take
        )
    except InsufficientCredits as exc:
        return exc
    except ProviderError:
        form.add_error(None, ProviderFailed.UNCHARGED)
    except idempotency.RequestInProgress:
        # The same message from the same form (sent twice): its first sending is still being answered.
        form.add_error(
            None,
            "This message is still being answered; send it again in a moment to see its answer "
            "(it is not sent twice).",
        )
    except IdempotencyConflict:
        # The form was sent before with another message (back, edit, send): its token is spent on that
        # one, and keeping it would refuse every sending of this page's form. A fresh token sends this one.
        form.renew_submission()
        form.add_error(
            None, "This form already sent an earlier message, so this one was not sent; send it again."
        )
    except DomainError as exc:
        if exc.field == "idempotency_key":  # a token this page never renders: give the form a good one
            form.renew_submission()
            form.add_error(None, "This form could not be sent as it was; send it again.")
        else:
            form.add_error("content" if exc.field == "content" else None, exc.message)
    return None
