"""The user's own pages at /: sign in, up and out, the wallet, chats (unstreamed form path), files; owner-only, CSRF, bounded queries."""

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from billing.exceptions import INSUFFICIENT_CREDITS
from billing.models import CreditTransaction, ModelPrice
from sessions_app import files, idempotency
from sessions_app.models import ChatSession, Message, Turn, UserFile
from sessions_app.services import take_turn
from tests.factories import DEFAULT_PASSWORD, ChatSessionFactory, UserFactory, fund

pytestmark = pytest.mark.django_db


def upload(owner, name="notes.txt", data=b"hello there"):
    return files.upload_file(owner=owner, uploaded=SimpleUploadedFile(name, data, content_type="text/plain"))


# --- Signed out -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/chats/", "/chats/1/", "/files/", "/?before=5"])
def test_a_signed_out_visitor_is_sent_to_sign_in_and_back(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/signin/?next=")


def test_a_signed_out_post_writes_nothing_and_is_sent_to_sign_in(client, user):
    session = ChatSessionFactory(owner=user)
    response = client.post(f"/chats/{session.pk}/", {"content": "hi", "submission": "x"})
    assert response.status_code == 302 and response["Location"].startswith("/signin/")
    assert not Turn.objects.exists()


# --- Sign in, sign up, sign out ------------------------------------------------------------------


def test_sign_in_with_the_right_password_opens_the_wallet(client, user):
    response = client.post("/signin/", {"username": user.username, "password": DEFAULT_PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


@pytest.mark.parametrize("next_url", ["/signin/", "/signin/?next=/signin/", "http://testserver/signin/"])
def test_a_signed_in_user_sent_back_to_sign_in_lands_on_the_wallet(web, next_url):
    response = web.get("/signin/", {"next": next_url})

    assert response.status_code == 302 and response["Location"] == "/"


def test_a_signed_in_user_goes_on_to_the_next_page(web):
    response = web.get("/signin/", {"next": "/keys/"})

    assert response.status_code == 302 and response["Location"] == "/keys/"


def test_sign_in_with_a_wrong_password_keeps_the_username_and_says_so(client, user):
    response = client.post("/signin/", {"username": user.username, "password": "nope"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Please enter a correct username and password" in body
    assert f'value="{user.username}"' in body


def test_sign_in_is_throttled_like_the_token_endpoint(client, user, settings):
    settings.THROTTLE_AUTH_RATE = "2/minute"
    for _ in range(2):
        client.post("/signin/", {"username": user.username, "password": "nope"})
    response = client.post("/signin/", {"username": user.username, "password": DEFAULT_PASSWORD})
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1


def test_sign_up_creates_the_account_signs_in_and_shows_zero_credits(client, settings):
    settings.STARTING_CREDITS = Decimal(0)
    response = client.post(
        "/signup/", {"username": "newbie", "email": "newbie@example.com", "password": "a-long-pass-phrase"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    wallet = client.get("/")
    assert wallet.context["user"].username == "newbie"
    assert wallet.context["state"].balance == Decimal(0)
    assert b'id="balance" class="money">0.000000<' in wallet.content


def test_sign_up_shows_field_errors_and_keeps_what_was_typed(client):
    UserFactory(username="taken")
    response = client.post(
        "/signup/", {"username": "taken", "email": "t@example.com", "password": "a-fine-pass"}
    )
    assert response.status_code == 200
    assert "already exists" in response.context["form"].errors["username"][0]
    assert b'value="t@example.com"' in response.content
    response = client.post(
        "/signup/", {"username": "fresh", "email": "f@example.com", "password": "12345678"}
    )
    assert "entirely numeric" in " ".join(response.context["form"].errors["password"])
    assert b'value="fresh"' in response.content
    assert not get_user_model().objects.filter(username="fresh").exists()


def test_sign_up_when_disabled_is_refused(client, settings):
    settings.SIGNUP_ENABLED = False
    assert client.get("/signup/").status_code == 403
    response = client.post(
        "/signup/", {"username": "x", "email": "x@example.com", "password": "a-long-pass-phrase"}
    )
    assert response.status_code == 403
    assert not get_user_model().objects.filter(username="x").exists()


def test_sign_out_is_a_post_and_ends_the_session(web):
    assert web.get("/signout/").status_code == 405  # a link cannot sign anyone out
    response = web.post("/signout/")
    assert response.status_code == 302 and response["Location"] == "/signin/"
    assert web.get("/").status_code == 302


def test_every_form_needs_its_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    session = ChatSessionFactory(owner=user)
    assert client.post("/chats/", {"title": "t", "model": "echo-1"}).status_code == 403
    assert client.post(f"/chats/{session.pk}/", {"content": "hi", "submission": "s"}).status_code == 403
    assert client.post("/signout/").status_code == 403
    assert (
        Client(enforce_csrf_checks=True).post("/signin/", {"username": "a", "password": "b"}).status_code
        == 403
    )


# --- The wallet --------------------------------------------------------------------------------


def test_wallet_shows_balance_available_ledger_with_initiator_and_a_chart(web, user):
    grant = fund(user, "10")
    session = ChatSessionFactory(owner=user)
    take_turn(session=session, user=user, content="hello")
    response = web.get("/")
    assert response.status_code == 200
    state = response.context["state"]
    assert state.balance < Decimal(10) and state.available == state.balance
    rows = response.context["ledger"].rows
    assert [row.kind for row in rows] == ["debit", "grant"]
    body = response.content.decode()
    assert grant.initiated_by.username in body  # who granted it
    assert "system" in body  # the debit
    today = response.context["chart"].bars[-1]
    assert today.height > 0 and "1 call" in today.label


def test_wallet_says_when_turns_would_be_refused(web, user, settings):
    settings.CREDIT_ENFORCEMENT_ENABLED = True
    body = web.get("/").content.decode()
    assert "new messages are refused until credits are added" in body
    assert "Your balance is low" in body


def test_wallet_ledger_pages_by_keyset(web, user):
    for _ in range(55):
        fund(user, "1")
    first = web.get("/")
    assert len(first.context["ledger"].rows) == 50
    before = first.context["ledger"].next_before
    second = web.get(f"/?before={before}")
    assert len(second.context["ledger"].rows) == 5
    assert second.context["ledger"].next_before is None


@pytest.mark.parametrize("before", ["abc", "-1", "99999999999999999999999", "\x00"])
def test_wallet_ignores_a_malformed_page_marker(web, before):
    assert web.get("/", {"before": before}).status_code == 200


def test_wallet_queries_do_not_grow_with_the_ledger(web, user, django_assert_max_num_queries):
    price = ModelPrice.objects.get(model="echo-1")
    from billing import services

    for _ in range(60):
        fund(user, "1")
        services.charge(user=user, price=price, provider="echo", input_tokens=10, output_tokens=10)
    # the session and its user, the wallet with caps, its state, the first live lots (counted) and the
    # next expiry, a ledger page (initiators joined), the usage rollup
    with django_assert_max_num_queries(8):
        assert web.get("/").status_code == 200


def test_figures_are_what_is_available_leaving_out_what_other_calls_hold(web, user):
    from billing.services import reserve

    fund(user, "50")
    reserve(user=user, amount=Decimal("10"))

    response = web.get("/figures/")

    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response.json() == {"available": "40.000000", "low_balance": False}
    assert "no-cache" in response["Cache-Control"]


# --- Chats -------------------------------------------------------------------------------------


def test_start_a_chat_and_send_a_message_without_script(web, user):
    fund(user, "10")
    response = web.post("/chats/", {"title": "Plans", "model": "echo-1"})
    session = ChatSession.objects.get(owner=user)
    assert response.status_code == 302 and response["Location"] == f"/chats/{session.pk}/"
    response = web.post(f"/chats/{session.pk}/", {"content": "hello there", "submission": "a" * 32})
    assert response.status_code == 302
    page = web.get(f"/chats/{session.pk}/")
    assert [t.user_message.content for t in page.context["turns"]] == ["hello there"]
    assert "hello there" in page.content.decode()


def test_a_double_submitted_message_takes_one_turn(web, user):
    fund(user, "10")
    session = ChatSessionFactory(owner=user)
    for _ in range(2):
        response = web.post(f"/chats/{session.pk}/", {"content": "once", "submission": "b" * 32})
        assert response.status_code == 302
    assert Turn.objects.filter(session=session).count() == 1
    assert CreditTransaction.objects.filter(wallet__user=user, kind="debit").count() == 1


def submission_of(response) -> str:
    return re.search(r'name="submission" value="([^"]+)"', response.content.decode()).group(1)


def test_a_form_sent_again_with_another_message_gets_a_fresh_token_not_a_stuck_form(web, user):
    fund(user, "10")
    session = ChatSessionFactory(owner=user)
    token = submission_of(web.get(f"/chats/{session.pk}/"))
    web.post(f"/chats/{session.pk}/", {"content": "first", "submission": token})  # sent; then back

    again = web.post(f"/chats/{session.pk}/", {"content": "second", "submission": token})

    body = again.content.decode()
    assert again.status_code == 200
    assert "already sent an earlier message, so this one was not sent" in body
    assert "Idempotency-Key" not in body and "second</textarea>" in body
    fresh = submission_of(again)
    assert fresh != token
    assert web.post(f"/chats/{session.pk}/", {"content": "second", "submission": fresh}).status_code == 302
    assert [t.user_message.content for t in Turn.objects.filter(session=session).order_by("id")] == [
        "first",
        "second",
    ]


def test_a_message_sent_again_while_it_is_answered_says_so_in_words_for_people(web, user):
    fund(user, "10")
    session = ChatSessionFactory(owner=user)
    idempotency.claim(user=user, key="web-form:" + "g" * 32, session_id=session.pk, content="hello")

    response = web.post(f"/chats/{session.pk}/", {"content": "hello", "submission": "g" * 32})

    body = response.content.decode()
    assert response.status_code == 200 and "still being answered" in body
    assert "Idempotency-Key" not in body and not Turn.objects.exists()


@pytest.mark.parametrize("token", ["\x7f\x01", "é"])
def test_a_malformed_token_is_replaced_and_the_message_kept(web, user, token):
    session = ChatSessionFactory(owner=user)

    response = web.post(f"/chats/{session.pk}/", {"content": "hello", "submission": token})

    body = response.content.decode()
    assert response.status_code == 200 and "send it again" in body and "hello</textarea>" in body
    assert "idempotency key" not in body.lower() and submission_of(response) != token
    assert not Turn.objects.exists()


def test_an_empty_wallet_under_enforcement_shows_the_top_up_prompt_and_keeps_the_message(web, user, settings):
    settings.CREDIT_ENFORCEMENT_ENABLED = True
    session = ChatSessionFactory(owner=user)
    response = web.post(f"/chats/{session.pk}/", {"content": "please answer", "submission": "c" * 32})
    assert response.status_code == 200
    body = response.content.decode()
    assert "You are out of credits" in body
    assert "please answer</textarea>" in body
    assert INSUFFICIENT_CREDITS not in body  # a prompt, not the API's raw error
    assert not Message.objects.exists()
    # The refusal freed the form's token: once funded, the same form goes through.
    fund(user, "5")
    response = web.post(f"/chats/{session.pk}/", {"content": "please answer", "submission": "c" * 32})
    assert response.status_code == 302
    assert Turn.objects.filter(session=session).count() == 1


def test_a_spending_cap_refusal_says_so_and_where_to_change_it_not_out_of_credits(web, user):
    from billing.models import SpendLimit
    from billing.services import set_spend_cap

    fund(user, "50")
    set_spend_cap(user=user, kind=SpendLimit.Kind.USER_CAP, amount=Decimal("0"), period="day")
    session = ChatSessionFactory(owner=user)
    response = web.post(f"/chats/{session.pk}/", {"content": "capped?", "submission": "k" * 32})
    body = response.content.decode()
    cap_notice = body[body.index('id="cap-reached"') :].split("</div>")[0]
    top_up = body[body.index('id="top-up"') :].split(">")[0]
    assert response.status_code == 200
    assert "hidden" not in cap_notice.split(">")[0] and "Your spending cap of 0.000000 credits" in cap_notice
    assert "/#spend-cap" in cap_notice
    assert "hidden" in top_up  # credits are left: no top-up prompt
    assert "capped?</textarea>" in body and not Message.objects.exists()


def test_a_blank_message_is_a_field_error(web, user):
    session = ChatSessionFactory(owner=user)
    response = web.post(f"/chats/{session.pk}/", {"content": "   ", "submission": "d" * 32})
    assert response.status_code == 200
    assert response.context["form"].errors["content"]
    assert not Turn.objects.exists()


def test_a_provider_failure_is_a_message_and_nothing_is_charged(web, user, monkeypatch):
    from sessions_app.providers import ProviderError
    from sessions_app.providers.echo import EchoProvider

    def fail(self, **kwargs):
        raise ProviderError("down")

    monkeypatch.setattr(EchoProvider, "complete", fail)
    fund(user, "5")
    session = ChatSessionFactory(owner=user)
    response = web.post(f"/chats/{session.pk}/", {"content": "hello", "submission": "e" * 32})
    assert response.status_code == 200
    assert "nothing was charged" in response.content.decode()
    assert "hello</textarea>" in response.content.decode()
    assert not CreditTransaction.objects.filter(kind="debit").exists()


def test_another_users_chat_is_not_found(web, user):
    theirs = ChatSessionFactory(owner=UserFactory())
    assert web.get(f"/chats/{theirs.pk}/").status_code == 404
    assert web.post(f"/chats/{theirs.pk}/", {"content": "x", "submission": "f" * 32}).status_code == 404
    assert not Turn.objects.exists()


def test_the_chat_list_shows_only_own_chats(web, user):
    mine = ChatSessionFactory(owner=user, title="mine")
    ChatSessionFactory(owner=UserFactory(), title="theirs")
    response = web.get("/chats/")
    assert list(response.context["page"].object_list) == [mine]
    assert "theirs" not in response.content.decode()


def test_chat_page_queries_do_not_grow_with_its_turns(web, user, django_assert_max_num_queries):
    fund(user, "100")
    session = ChatSessionFactory(owner=user)
    for n in range(12):
        take_turn(session=session, user=user, content=f"message {n}")
    # the session and its user, the chat session, its turns, their calls, their tool runs, the wallet
    with django_assert_max_num_queries(7):
        response = web.get(f"/chats/{session.pk}/")
    assert len(response.context["turns"]) == 12


def test_earlier_messages_of_a_long_chat_page_back_by_turn(web, user, monkeypatch):
    monkeypatch.setattr("web.views.chats.TURNS_ON_PAGE", 3)
    fund(user, "100")
    session = ChatSessionFactory(owner=user)
    turns = [take_turn(session=session, user=user, content=f"message {n}").turn for n in range(7)]

    def shown(response):
        return [t.user_message.content for t in response.context["turns"]]

    latest = web.get(f"/chats/{session.pk}/")
    assert shown(latest) == ["message 4", "message 5", "message 6"]
    assert f'href="?before={turns[4].pk}"' in latest.content.decode()
    assert "Earlier messages" in latest.content.decode()
    assert "Latest messages" not in latest.content.decode()

    earlier = web.get(f"/chats/{session.pk}/", {"before": turns[4].pk})
    body = earlier.content.decode()
    assert shown(earlier) == ["message 1", "message 2", "message 3"]
    assert f'href="?before={turns[1].pk}"' in body and "Latest messages" in body
    assert 'id="message-form"' not in body  # writing goes on at the latest messages

    first = web.get(f"/chats/{session.pk}/", {"before": turns[1].pk})
    assert shown(first) == ["message 0"]
    assert "Earlier messages" not in first.content.decode()


@pytest.mark.parametrize("before", ["abc", "-1", "99999999999999999999999", "\x00"])
def test_chat_ignores_a_malformed_page_marker(web, user, before):
    session = ChatSessionFactory(owner=user)
    response = web.get(f"/chats/{session.pk}/", {"before": before})
    assert response.status_code == 200 and 'id="message-form"' in response.content.decode()


def test_earlier_messages_are_only_the_chats_own(web, user):
    fund(user, "10")
    mine, other = ChatSessionFactory(owner=user), ChatSessionFactory(owner=user)
    take_turn(session=mine, user=user, content="in mine")
    later = take_turn(session=other, user=user, content="in the other").turn
    response = web.get(f"/chats/{mine.pk}/", {"before": later.pk + 1})
    assert [t.user_message.content for t in response.context["turns"]] == ["in mine"]


def test_chat_list_queries_are_bounded(web, user, django_assert_max_num_queries):
    for _ in range(20):
        ChatSessionFactory(owner=user)
    with django_assert_max_num_queries(6):
        assert web.get("/chats/").status_code == 200


# --- Files -------------------------------------------------------------------------------------


def test_upload_lists_and_deletes_own_files(web, user):
    response = web.post("/files/", {"file": SimpleUploadedFile("a.txt", b"words", content_type="text/plain")})
    assert response.status_code == 302
    row = UserFile.objects.get(owner=user)
    listing = web.get("/files/")
    assert "a.txt" in listing.content.decode()
    assert f"/api/v1/files/{row.pk}/content" in listing.content.decode()
    assert web.post(f"/files/{row.pk}/delete/").status_code == 302
    assert not UserFile.objects.exists()


def test_a_refused_upload_is_a_field_error(web, user):
    response = web.post(
        "/files/", {"file": SimpleUploadedFile("a.png", b"\x89PNG", content_type="image/png")}
    )
    assert response.status_code == 200
    assert "Only text files" in response.context["form"].errors["file"][0]
    assert not UserFile.objects.exists()


def test_the_files_page_takes_a_file_up_to_file_max_bytes_as_the_api_does(web, user, settings):
    settings.FILE_MAX_BYTES = 2 * 1024 * 1024
    data = b"a" * (1024 * 1024 + 512 * 1024)  # over the 1 MB body limit of other forms
    response = web.post("/files/", {"file": SimpleUploadedFile("big.txt", data, content_type="text/plain")})
    assert response.status_code == 302, response.content[:300]
    assert files.files_for_user(user=user).get().size == len(data)
    page = web.get("/files/").content.decode()
    assert "at most 2.0\xa0MB each" in page


def test_a_body_far_past_the_upload_limit_gets_a_page_not_json(web, user, settings):
    settings.FILE_MAX_BYTES = 100
    data = b"a" * (200 * 1024)
    response = web.post("/files/", {"file": SimpleUploadedFile("big.txt", data, content_type="text/plain")})
    assert response.status_code == 413
    body = response.content.decode()
    assert response["Content-Type"].startswith("text/html") and "at most 100\xa0bytes for a file" in body
    assert "Go back" in body
    huge_cap = web.post("/cap/", {"spend_cap": "1" * (1024 * 1024 + 10), "spend_cap_period": "day"})
    assert huge_cap.status_code == 413 and "at most 1.0\xa0MB." in huge_cap.content.decode()


def test_another_users_file_cannot_be_deleted_or_seen(web, user):
    theirs = upload(UserFactory(), name="secret.txt")
    assert web.post(f"/files/{theirs.pk}/delete/").status_code == 404
    assert "secret.txt" not in web.get("/files/").content.decode()
    assert UserFile.objects.filter(pk=theirs.pk).exists()


def test_files_page_queries_are_bounded(web, user, django_assert_max_num_queries):
    for n in range(10):
        upload(user, name=f"f{n}.txt")
    with django_assert_max_num_queries(5):
        assert web.get("/files/").status_code == 200


# --- Every page under the content security policy ----------------------------------------------


@pytest.mark.parametrize("path", ["/", "/chats/", "/files/"])
def test_pages_carry_no_inline_script_or_style(web, user, path):
    response = web.get(path)
    body = response.content.decode()
    assert "<script>" not in body and "<script type" not in body
    assert " style=" not in body and "<style" not in body
    assert "script-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/signin/", "/signup/"])
def test_signed_out_pages_carry_no_inline_script_or_style(client, path):
    body = client.get(path).content.decode()
    assert "<script>" not in body and " style=" not in body


def test_a_field_in_error_is_described_by_its_own_error_list(web, user):
    """aria-describedby names the error list by the id Django gives it (`<id>_error`): a screen reader
    reads the error with the field."""
    import re

    body = web.post("/cap/", {"spend_cap": "abc", "spend_cap_period": "day"}).content.decode()
    field = re.search(r'<input[^>]*aria-invalid="true"[^>]*>', body).group(0)
    described = re.search(r'aria-describedby="([^"]+)"', field).group(1).split()
    assert described and all(f'id="{name}"' in body for name in described)


def test_a_cap_pasted_with_spaces_around_it_is_taken(web, user):
    response = web.post("/cap/", {"spend_cap": " 10 ", "spend_cap_period": "day"})
    assert response.status_code == 302
    from billing.models import SpendLimit

    assert SpendLimit.objects.get(wallet__user=user, kind="user_cap").amount == Decimal("10")
