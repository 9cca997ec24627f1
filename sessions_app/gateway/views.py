"""The gateway over HTTP (/v1/): chat completions (plain and streamed), the models and the key in use, authenticated by API key."""

from django.db import transaction
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authentication import ApiKeyAuthentication
from accounts.keys import RESET_NAMES
from billing.selectors import active_prices, limit_spending, wallet_balances
from billing.usage_selectors import key_usage_by_period
from core.api_fields import NulSafeMixin
from core.money import format_money
from core.throttling import GatewayThrottle
from sessions_app.exceptions import ProviderFailed
from sessions_app.gateway import answers, schema, streaming
from sessions_app.gateway.calls import GatewayCall
from sessions_app.gateway.errors import ModelNotFound, gateway_exception_handler
from sessions_app.gateway.requests import parse_chat_request
from sessions_app.providers import ProviderError


class GatewayView(NulSafeMixin, APIView):
    """API key authentication, the per-key throttle, JSON only, and errors in OpenAI's shape."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [GatewayThrottle]
    renderer_classes = [JSONRenderer]

    def get_exception_handler(self):
        return gateway_exception_handler

    def perform_content_negotiation(self, request, force=False):
        # JSON whatever `Accept` says, as OpenAI's API: SSE clients send `Accept: text/event-stream`
        # for a streamed call (whose refusals are JSON before any stream), and got a 406.
        return JSONRenderer(), JSONRenderer.media_type


def _money(value) -> str | None:
    return None if value is None else format_money(value)


class ModelsView(GatewayView):
    @schema.models_list
    def get(self, request):
        return Response({"object": "list", "data": [_model_item(price) for price in active_prices()]})


class ModelView(GatewayView):
    @schema.model_retrieve
    def get(self, request, model: str):
        price = next((p for p in active_prices() if p.model == model), None)
        if price is None:
            raise ModelNotFound(model)
        return Response(_model_item(price))


def _model_item(price) -> dict:
    return {
        "id": price.model,
        "object": "model",
        "created": int(price.created_at.timestamp()),
        "owned_by": "creditdesk",
        "pricing": {
            "input_per_1k": format_money(price.input_price_per_1k),
            "output_per_1k": format_money(price.output_price_per_1k),
        },
    }


class KeyView(GatewayView):
    @schema.key_retrieve
    def get(self, request):
        key = request.auth
        spend_limit = key.spend_limit
        usage = limit_spending(spend_limit=spend_limit)
        by_period = key_usage_by_period(spend_limit=spend_limit)
        balance, held = wallet_balances(user=request.user)
        return Response(
            {
                "data": {
                    "name": key.name,
                    "prefix": key.prefix,
                    "limit": _money(spend_limit.amount),
                    "limit_reset": RESET_NAMES.get(spend_limit.period),
                    "limit_remaining": None
                    if spend_limit.amount is None
                    else format_money(spend_limit.amount - usage),
                    "usage": format_money(usage),
                    "usage_daily": format_money(by_period["day"]),
                    "usage_weekly": format_money(by_period["week"]),
                    "usage_monthly": format_money(by_period["month"]),
                    "expires_at": key.expires_at.isoformat() if key.expires_at else None,
                    "balance": format_money(balance),
                    "available": format_money(balance - held),
                }
            }
        )


class ChatCompletionsView(GatewayView):
    @classmethod
    def as_view(cls, **initkwargs):
        # The provider is called outside any transaction: never wrap this view in ATOMIC_REQUESTS.
        return transaction.non_atomic_requests(super().as_view(**initkwargs))

    @schema.chat_completions
    def post(self, request):
        chat = parse_chat_request(request.data)
        call = GatewayCall.reserve(user=request.user, key=request.auth, request=chat)
        if chat.stream:
            return streaming.stream_response(call)
        try:
            completion = call.provider.complete(**call.provider_arguments())
            charged = call.charge(
                input_tokens=completion.input_tokens, output_tokens=completion.output_tokens
            )
        except ProviderError as exc:
            call.failed(exc)
            raise ProviderFailed.from_provider_error(exc) from exc
        except BaseException:
            # Our own failure, before the answer is delivered (a charge that failed included): the hold
            # goes back now rather than block the key's limit and the caps until it expires.
            call.release()
            raise
        body = answers.completion_body(
            id_=answers.completion_id(),
            model=chat.model,
            completion=completion,
            cost=charged.event.cost,
            max_tokens=chat.max_tokens,
        )
        headers = {
            answers.COST_HEADER: format_money(charged.event.cost),
            answers.BALANCE_HEADER: format_money(charged.balance_after),
        }
        return Response(body, headers=headers)
