"""factory_boy factories for the suite; creating a user opens its wallet (billing.signals)."""

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.core.signals import request_finished
from django.db import close_old_connections

from billing.models import CreditTransaction, ModelPrice
from billing.rollup import rebuild_usage_rollup

DEFAULT_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(DEFAULT_PASSWORD)


class StaffUserFactory(UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True


class ModelPriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelPrice
        django_get_or_create = ("model",)

    model = factory.Sequence(lambda n: f"model-{n}")
    input_price_per_1k = Decimal("0.500000")
    output_price_per_1k = Decimal("1.500000")
    active = True


from billing.models import LLMCallEvent  # noqa: E402 - appended with its factory


class LLMCallEventFactory(factory.django.DjangoModelFactory):
    """A metered call as test data (not a credit movement): pass `created_at` to place it in time.

    The server keeps the usage rollups in the statement that records a call; an event written here
    bypasses that, so the rollups are recounted after it (`rollups=False` to skip, for bulk data
    recounted once at the end with billing.rollup.rebuild_usage_rollup).
    """

    class Meta:
        model = LLMCallEvent
        skip_postgeneration_save = True

    @factory.post_generation
    def rollups(self, create, extracted, **kwargs):
        if create and extracted is not False:
            rebuild_usage_rollup()

    user = factory.SubFactory(UserFactory)
    model = "echo-1"
    provider = "echo"
    input_tokens = 100
    output_tokens = 50
    cost = Decimal("0.125000")
    input_price_per_1k = Decimal("0.500000")
    output_price_per_1k = Decimal("1.500000")
    status = LLMCallEvent.Status.OK


from sessions_app.models import ChatSession  # noqa: E402 - appended with its factory


class ChatSessionFactory(factory.django.DjangoModelFactory):
    """A chat session on the default, priced model (echo-1, priced by billing's data migration)."""

    class Meta:
        model = ChatSession

    owner = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Chat {n}")
    model = "echo-1"


def api_token(user) -> str:
    """A new API token for the user, as a client sends it (knox keeps only its digest)."""
    from knox.models import AuthToken

    return AuthToken.objects.create(user=user)[1]


def fund(user, amount="10") -> CreditTransaction:
    """Credits for `user`, granted as "test funds" by a staff user of their own."""
    from billing.services import grant

    return grant(user=user, amount=Decimal(amount), reason="test funds", initiated_by=StaffUserFactory())


def beyond_the_support_limit(staff):
    """Give `staff` the permission to grant past SUPPORT_GRANT_LIMIT (up to the service's maximum)."""
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(
        Permission.objects.get(content_type__app_label="billing", codename="grant_beyond_support_limit")
    )
    for cache in ("_perm_cache", "_user_perm_cache"):
        staff.__dict__.pop(cache, None)
    return staff


def client_for(user):
    """An APIClient authenticated as `user` (force_authenticate: no token, no session)."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


def token_client_for(user):
    """An APIClient that authenticates like the frontend: `Authorization: Token <key>`."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def close_unread(response) -> None:
    """Close a streamed response as a server does when its client left before the body was read
    (as the test client closes one: the test's database connection, and its transaction, stay open)."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
