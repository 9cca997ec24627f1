"""The admin login lockout as an authentication backend (django-axes), first in AUTHENTICATION_BACKENDS."""

from axes.backends import AxesStandaloneBackend


class AdminLockoutBackend(AxesStandaloneBackend):
    """axes' check, skipped when there is no request (shell, tests' `client.login`): no address, no lockout.

    axes would raise instead. A login over HTTP always carries its request.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
