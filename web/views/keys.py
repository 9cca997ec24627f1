"""The API keys page: the user's keys for the gateway, created (the secret shown once), renamed or re-limited, revoked.

Every write is accounts.keys' service, the one the keys API (users/me/keys) calls. The secret is shown
in the answer to the form's POST and stored nowhere (only its digest); that answer is not cached, and a
resent form (back, reload, a double click without script) creates no second key.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from accounts import keys
from accounts.customer_selectors import key_state, live_keys
from core.errors import DomainError
from web.forms import ApiKeyForm, NewApiKeyForm
from web.submissions import Submission

KEYS_PER_PAGE = 50
# The service's field names, where this page's form names them differently.
FORM_FIELDS = {"expires_at": "expires_on"}


def _refusal_on_form(form, exc: DomainError) -> None:
    field = FORM_FIELDS.get(exc.field, exc.field)
    form.add_error(field if field in form.fields else None, exc.message)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def key_list(request):
    form = NewApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        answer = _create_once(request, form)
        if answer is not None:
            return answer
    page = Paginator(live_keys(user=request.user), KEYS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "nav": "keys",
        "form": form,
        "page": page,
        "states": [key_state(key) for key in page.object_list],
    }
    return render(request, "web/keys.html", context)


def _create_once(request, form):
    """The key and the page showing its secret, or None with the refusal on the form; once per rendered form."""
    submission = Submission(request=request, form=form, purpose="new-key")
    # Nothing is kept for a second post to show: the secret is shown once, to the first.
    if not submission.claim():
        messages.warning(
            request,
            "This form was already sent and its key created; its secret was shown once, then. "
            "If you did not copy it, revoke that key and create a new one.",
        )
        return redirect("web:keys")
    data = form.cleaned_data
    try:
        with submission.writing():
            key, secret = keys.create_api_key(
                user=request.user,
                name=data["name"],
                limit=data["limit"],
                limit_reset=data["limit_reset"],
                expires_at=data["expires_at"],
            )
    except DomainError as exc:
        _refusal_on_form(form, exc)
        return None
    return render(request, "web/key_created.html", {"nav": "keys", "state": key_state(key), "secret": secret})


def _own_key(request, pk: int):
    # Another user's key, or a revoked one, is not found, as on the API.
    return get_object_or_404(live_keys(user=request.user), pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
def key_edit(request, pk: int):
    key = _own_key(request, pk)
    state = key_state(key)
    initial = {
        "name": key.name,
        "limit": "" if state.limit is None else f"{state.limit.normalize():f}",
        "limit_reset": state.limit_reset or "",
    }
    form = ApiKeyForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            keys.update_api_key(
                key=key, name=data["name"], limit=data["limit"], limit_reset=data["limit_reset"]
            )
        except DomainError as exc:
            _refusal_on_form(form, exc)
        else:
            messages.success(request, f"Saved the key {key.name} ({key.prefix}…).")
            return redirect("web:keys")
    return render(request, "web/key_edit.html", {"nav": "keys", "state": state, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def key_revoke(request, pk: int):
    """GET asks to confirm (works without script); POST revokes at once: the key's next call is refused."""
    key = _own_key(request, pk)
    if request.method == "POST":
        keys.revoke_api_key(key=key, revoked_by=request.user)
        messages.success(request, f"Revoked the key {key.name} ({key.prefix}…): it no longer works.")
        return redirect("web:keys")
    return render(request, "web/key_revoke.html", {"nav": "keys", "state": key_state(key)})
