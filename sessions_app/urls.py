"""Chat sessions and turns (mounted under /api/v1/); every path answers with or without its slash."""

from rest_framework.routers import SimpleRouter

from sessions_app.views import ChatSessionViewSet, TurnViewSet

router = SimpleRouter()
router.trailing_slash = "/?"  # the constructor only knows "/" or ""; the contract wants both

router.register(r"sessions", ChatSessionViewSet, basename="chatsession")
router.register(r"sessions/(?P<session_pk>[0-9]+)/turns", TurnViewSet, basename="turn")

urlpatterns = router.urls
