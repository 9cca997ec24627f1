"""Headers on every response: the Content-Security-Policy (Django 5.2 has no built-in CSP), and no caching of what
was made for one signed-in caller."""

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Adds CONTENT_SECURITY_POLICY as `Content-Security-Policy` unless a view set its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response


class PrivateResponsesMiddleware:
    """`Cache-Control: private, no-store` on what a signed-in caller was answered, unless a view said otherwise.

    A page or body made for one caller (a session cookie or an Authorization header came with the
    request: balances, ledgers, keys) is kept by no shared cache, and not by the browser either, so
    its Back button after signing out on a shared computer shows the sign-in page, not the wallet.
    Static files (WhiteNoise, above this) and anonymous answers keep their own caching.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        signed_in = settings.SESSION_COOKIE_NAME in request.COOKIES or "HTTP_AUTHORIZATION" in request.META
        if signed_in and "Cache-Control" not in response:
            response["Cache-Control"] = "private, no-store"
        return response
