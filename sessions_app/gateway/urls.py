"""The gateway's routes (mounted at /v1/, beside /api/v1/), each with or without a trailing slash."""

from django.urls import re_path

from sessions_app.gateway.views import ChatCompletionsView, KeyView, ModelsView, ModelView

urlpatterns = [
    re_path(r"^chat/completions/?$", ChatCompletionsView.as_view(), name="gateway-chat-completions"),
    re_path(r"^models/?$", ModelsView.as_view(), name="gateway-models"),
    # A model's name may hold "/" ("openai/gpt-4o"; the official client sends it as %2F, which the
    # server decodes): everything after models/ but an optional trailing slash.
    re_path(r"^models/(?P<model>[^\x00]{1,100}?)/?$", ModelView.as_view(), name="gateway-model"),
    re_path(r"^key/?$", KeyView.as_view(), name="gateway-key"),
]
