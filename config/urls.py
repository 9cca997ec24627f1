"""URL map: the admin (the support console), the v1 API from each app's urls module, the OpenAI-compatible gateway at /v1/, and the user's pages at /."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from core.views import HealthView, unrouted

api_v1 = [
    re_path(r"^schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^docs/?$", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    re_path(
        r"^redoc/?$",
        SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"),
        name="redoc",
    ),
    re_path(r"^health/?$", HealthView.as_view(), name="health"),
    path("", include("accounts.urls")),
    path("", include("billing.urls")),
    path("", include("sessions_app.urls")),
    path("", include("reporting.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # The OpenAI-compatible gateway: any OpenAI client with base_url "<server>/v1" and a cdk_ key.
    path("v1/", include("sessions_app.gateway.urls")),
    # Whatever the API and the gateway do not route answers their JSON 404, with DEBUG on too.
    re_path(r"^(api/|v1(/|$))", unrouted),
    path("", include("web.urls")),
]

# Under /api/ and /v1/ a malformed request, an unrouted path or an unhandled error answers JSON, not an
# HTML page (handler404 serves with DEBUG off only; the route above answers first in any case).
handler400 = "core.views.bad_request"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
