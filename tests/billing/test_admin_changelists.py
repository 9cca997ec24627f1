"""The console's changelists: a fixed number of queries whatever the rows, and no filter value that 500s."""

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from billing import services
from billing.models import ModelPrice
from tests.factories import LLMCallEventFactory, StaffUserFactory, UserFactory

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


# --- Filter values the database cannot take -------------------------------------------------------


def error_messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "error"]


@pytest.mark.parametrize(
    ("url", "left", "named"),
    [
        ("/admin/billing/llmcallevent/?model=%00", "/admin/billing/llmcallevent/", "model"),
        (
            "/admin/billing/llmcallevent/?status__exact=ok&model=echo%001",
            "/admin/billing/llmcallevent/?status__exact=ok",
            "model",
        ),
        (
            "/admin/billing/credittransaction/?kind__exact=%00&q=alice",
            "/admin/billing/credittransaction/?q=alice",
            "kind__exact",
        ),
        ("/admin/billing/credithold/?status__exact=held%00", "/admin/billing/credithold/", "status__exact"),
        ("/admin/billing/wallet/?user__username=%00", "/admin/billing/wallet/", "user__username"),
        ("/admin/billing/purchase/?status__exact=%00", "/admin/billing/purchase/", "status__exact"),
        (
            "/admin/sessions_app/turn/?stop_reason__exact=%00",
            "/admin/sessions_app/turn/",
            "stop_reason__exact",
        ),
        ("/admin/notifications/delivery/?state__exact=%00", "/admin/notifications/delivery/", "state__exact"),
        ("/admin/axes/accesslog/?path_info=%00", "/admin/axes/accesslog/", "path_info"),  # a package's admin
        ("/admin/billing/llmcallevent/?mo%00del=echo-1", "/admin/billing/llmcallevent/", "mo\\x00del"),
    ],
)
def test_a_nul_in_a_list_filter_is_left_out_with_a_message_not_a_500(admin_client, url, left, named):
    response = admin_client.get(url)
    assert response.status_code == 302
    assert response["Location"] == left
    assert error_messages_of(response) == [
        f"Null characters are not allowed in a list's filters; left out: {named}."
    ]
    assert admin_client.get(left).status_code == 200


def test_search_with_a_nul_is_still_djangos_message_on_the_list(admin_client):
    response = admin_client.get("/admin/billing/wallet/?q=%00")
    assert response.status_code == 200
    assert error_messages_of(response) == ["Null characters are not allowed."]


def test_a_model_filter_value_without_a_price_lists_no_calls(admin_client):
    LLMCallEventFactory(rollups=False)
    response = admin_client.get("/admin/billing/llmcallevent/?model=no-such-model")
    assert response.status_code == 200
    assert response.context["cl"].result_count == 0


def test_a_packages_filter_value_its_column_cannot_hold_is_a_message(admin_client):
    response = admin_client.get("/admin/axes/accesslog/?ip_address=not-an-address")
    assert response.status_code == 302 and response["Location"] == "/admin/axes/accesslog/"
    assert "cannot be filtered that way" in error_messages_of(response)[0]


@pytest.mark.django_db(transaction=True)  # the database refuses the value: the statement fails on the server
def test_a_filter_value_outside_an_enum_column_is_a_message_not_a_500():
    client = Client()
    client.force_login(StaffUserFactory(is_superuser=True))
    response = client.get("/admin/procrastinate/procrastinatejob/?status__exact=not-a-status")
    assert response.status_code == 302 and response["Location"] == "/admin/procrastinate/procrastinatejob/"
    assert "cannot be filtered that way" in error_messages_of(response)[0]
    assert client.get(response["Location"]).status_code == 200


def test_a_filtered_lists_own_error_stays_a_500_not_a_filter_message(admin_client, monkeypatch):
    """Only a value the column cannot hold is a filter's fault; a bug in a list's column is not hidden."""
    from billing.admin.holds import CreditHoldAdmin

    def broken(self, request):
        raise ValueError("a bug in the list, not in its filter")

    monkeypatch.setattr(CreditHoldAdmin, "get_queryset", broken)
    with pytest.raises(ValueError, match="a bug in the list"):
        admin_client.get("/admin/billing/credithold/?status__exact=open")
