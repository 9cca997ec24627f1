"""Chat sessions, turns and the user's files (mounted under /api/v1/); every path answers with or without its slash."""

from rest_framework.routers import SimpleRouter

from sessions_app.views import ChatSessionViewSet, TurnViewSet
from sessions_app.views_files import UserFileViewSet

router = SimpleRouter()
router.trailing_slash = "/?"  # the constructor only knows "/" or ""; the contract wants both

router.register(r"sessions", ChatSessionViewSet, basename="chatsession")
router.register(r"sessions/(?P<session_pk>[0-9]+)/turns", TurnViewSet, basename="turn")
router.register(r"files", UserFileViewSet, basename="userfile")

urlpatterns = router.urls
