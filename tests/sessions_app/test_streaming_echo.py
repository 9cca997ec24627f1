"""The echo provider streams too: deterministic pieces, the same turn as a plain POST (test client)."""

import pytest

from billing.models import CreditHold
from sessions_app.models import Turn
from tests.factories import ChatSessionFactory, fund

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore:StreamingHttpResponse")]


def test_echo_streams_in_pieces_and_done_is_the_plain_turn_body(user_client, user):
    fund(user)
    session = ChatSessionFactory(owner=user)
    content = "A message long enough to come back in several pieces."

    response = user_client.post(
        f"/api/v1/sessions/{session.pk}/turns/",
        {"content": content},
        format="json",
        HTTP_ACCEPT="text/event-stream",
    )
    body = b"".join(response).decode()  # consumes the async stream synchronously

    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    blocks = [block.split("\n", 1) for block in body.strip().split("\n\n")]
    names = [name.removeprefix("event: ") for name, _ in blocks]
    assert names == ["delta"] * 4 + ["done"]
    assert blocks[0][1] == 'data: {"text":"Echo: A message "}'  # 4 tokens a piece
    turn = Turn.objects.get()
    plain = user_client.get(f"/api/v1/sessions/{session.pk}/turns/").json()["results"][0]
    assert f'"assistant_message":{{"role":"assistant","content":"Echo: {content}"}}' in body
    assert plain["id"] == turn.pk and plain["usage"]["output_tokens"] == 15
    assert CreditHold.objects.get().status == CreditHold.Status.SETTLED
