"""Signing in and out (Django session auth) and signing up (accounts' create_account, as the API's register)."""

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.views import LoginView, LogoutView
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters

from accounts.services import UsernameTaken, create_account
from core.throttling import AUTH_THROTTLES, SIGNUP_THROTTLES, TooManyRequests, retry_message
from web.forms import SignInForm, SignUpForm


def _throttled(request, throttles) -> int | None:
    """Seconds to wait when one of `throttles` refuses this POST (the API's limits, per address and name)."""
    if request.method != "POST":
        return None
    for throttle_class in throttles:
        try:
            throttle_class().allow_request(request, None)
        except TooManyRequests as exc:
            return int(exc.wait)
    return None


def _too_many(request, wait: int):
    response = render(request, "web/throttled.html", {"message": retry_message(wait)}, status=429)
    response["Retry-After"] = str(wait)
    return response


class SignInView(LoginView):
    template_name = "web/signin.html"
    form_class = SignInForm
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        wait = _throttled(request, AUTH_THROTTLES)
        if wait is not None:
            return _too_many(request, wait)
        return super().post(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "signup_enabled": settings.SIGNUP_ENABLED}

    def get_redirect_url(self):
        """The safe `next`, unless it is this page: a signed-in user sent back here would loop (Django
        raises rather than redirect), so such a `next` means the default page (LOGIN_REDIRECT_URL)."""
        url = super().get_redirect_url()
        return "" if url and urlsplit(url).path == self.request.path else url


class SignOutView(LogoutView):
    """POST only (Django's LogoutView): a link cannot sign anyone out. (The admin's logout keeps its own page.)"""

    next_page = "web:signin"


@sensitive_post_parameters("password")
def signup(request):
    if not settings.SIGNUP_ENABLED:
        return render(request, "web/signup_closed.html", status=403)
    if request.user.is_authenticated:
        return redirect("web:wallet")
    wait = _throttled(request, SIGNUP_THROTTLES)
    if wait is not None:
        return _too_many(request, wait)
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = create_account(
                **{name: form.cleaned_data[name] for name in ("username", "email", "password")}
            )
        except UsernameTaken as exc:
            form.add_error("username", exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("web:wallet")
    return render(request, "web/signup.html", {"form": form})
