"""The Content-Security-Policy header on every response (Django 5.2 has no built-in CSP)."""

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
