"""Finding a user the way operators name one (commands, admin forms): by id, email or username."""

from django.contrib.auth import get_user_model

from core.api_fields import id_from_text


def users_matching(ref: str) -> list:
    """At most two users named by `ref`: an id when all ASCII digits, an email (any case) with '@', else a username.

    Two results mean the reference is ambiguous (an email shared by two users); callers refuse it.
    """
    users = get_user_model().objects
    if ref.isascii() and ref.isdigit():
        pk = id_from_text(ref)  # None past a bigint: no user has that id
        found = users.filter(pk=pk) if pk is not None else users.none()
    elif "@" in ref:
        found = users.filter(email__iexact=ref)
    else:
        found = users.filter(username=ref)
    return list(found.order_by("pk")[:2])
