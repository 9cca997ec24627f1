"""A turn whose call events left with a detached month (retention): its pages still open, without them."""

import pytest
from django.db import connection
from django.urls import reverse

from sessions_app.models import Turn
from tests.factories import ChatSessionFactory, fund

pytestmark = pytest.mark.django_db


def test_a_turns_admin_page_opens_when_its_calls_were_detached(admin_client, user_client, user):
    fund(user, "10")
    session = ChatSessionFactory(owner=user)
    assert (
        user_client.post(f"/api/v1/sessions/{session.pk}/turns", {"content": "hi"}, format="json").status_code
        == 201
    )
    turn = Turn.objects.get()
    page = reverse("admin:sessions_app_turn_change", args=[turn.pk])
    assert [call.pk for call, _ in admin_client.get(page).context["calls"]] == [turn.llm_call_id]
    # What detaching the month does to this turn: its event rows are no longer in the table (no
    # database constraint stops it: docs/scaling-data.md).
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_llmcallevent WHERE id = %s", [turn.llm_call_id])

    response = admin_client.get(page)

    assert response.status_code == 200
    assert response.context["calls"] == []
    # The session's turns through the API: the turn is listed, its calls gone with the month.
    listed = user_client.get(f"/api/v1/sessions/{session.pk}/turns")
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()["results"]] == [turn.pk]
