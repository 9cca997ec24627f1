"""The console's changelists: a fixed number of queries whatever the rows, and no filter value that 500s."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import services
from billing.models import ModelPrice
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def settled_holds(n: int) -> None:
    """n holds of one customer, each settled by the charge of its call (so each names its call)."""
    user = UserFactory()
    services.grant(user=user, amount="100", reason="funds", initiated_by=UserFactory(is_staff=True))
    price = ModelPrice.objects.get(model="echo-1")
    for _ in range(n):
        hold = services.reserve(user=user, amount=Decimal("1")).hold
        services.charge(user=user, price=price, provider="echo", input_tokens=10, output_tokens=5, hold=hold)


def queries_of(client, url) -> tuple[int, bytes]:
    client.get(url)  # warm: content types, as in a running server
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(captured.captured_queries), response.content


def test_holds_changelist_reads_the_same_queries_for_5_holds_as_for_35(admin_client):
    settled_holds(5)
    few, _ = queries_of(admin_client, "/admin/billing/credithold/")
    settled_holds(30)
    many, page = queries_of(admin_client, "/admin/billing/credithold/")
    assert few == many, f"{few} queries for 5 holds, {many} for 35"
    # Each settled hold still links to its call, by the id on the row.
    assert page.count(b'class="call-link"') == 35
