"""The auth API (mounted under /api/v1/): auth/register, auth/token, auth/me, with or without a slash."""

from rest_framework.routers import SimpleRouter

from accounts.views import AuthViewSet

router = SimpleRouter()
router.trailing_slash = "/?"  # the constructor only knows "/" or ""; the contract wants both
router.register(r"auth", AuthViewSet, basename="auth")

urlpatterns = router.urls
