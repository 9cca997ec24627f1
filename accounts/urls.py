"""The auth API (mounted under /api/v1/): auth/register, auth/token, auth/me, users/me/keys, with or without a slash."""

from rest_framework.routers import SimpleRouter

from accounts.views import AuthViewSet
from accounts.views_keys import ApiKeyViewSet

router = SimpleRouter()
router.trailing_slash = "/?"  # the constructor only knows "/" or ""; the contract wants both
router.register(r"auth", AuthViewSet, basename="auth")
router.register(r"users/me/keys", ApiKeyViewSet, basename="my-key")

urlpatterns = router.urls
