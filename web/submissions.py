"""One write per rendered form: the form's hidden `submission` token, claimed before the write it asks for.

A form sent again (back and resend, a reload, a double click without script) carries the same token,
so its second post finds the first one's claim and shows what that did instead of writing again. A claim
is a cache entry, which `cache.add` creates at most once on every backend Django ships (the database
cache in production, Redis, memory in tests), kept longer than anyone keeps a form open. The chat's
message form keeps its token in the database instead (sessions_app.idempotency, as the API's
Idempotency-Key does): there the turn and its claim commit together.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django import forms
from django.core.cache import cache

# How long a form's token is remembered as used: longer than anyone keeps a form open and resends it.
SUBMISSION_SECONDS = 24 * 3600
# What a claim holds until (unless) its write leaves something to show a second post.
STARTED = "started"


class SentOnceForm(forms.Form):
    """A form with its own token in each rendering (`submission`), so the write it asks for is done once."""

    submission = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("submission", uuid.uuid4().hex)
        super().__init__(*args, **kwargs)

    def renew_submission(self) -> None:
        """Give this sent form, shown again, a token of its own: the one it came with is spent on an
        earlier write, and sending it again would find that write, never this form's."""
        self.data = self.data.copy()
        self.data[self.add_prefix("submission")] = uuid.uuid4().hex


class Submission:
    """One user's claim on a valid SentOnceForm's write, for one purpose (a new key, a purchase)."""

    def __init__(self, *, request, form: SentOnceForm, purpose: str):
        self.key = f"web-{purpose}:{request.user.pk}:{form.cleaned_data['submission']}"

    def claim(self) -> bool:
        """True for the form's first post (its write inside `writing()`, then `done`); False when it was sent before."""
        return cache.add(self.key, STARTED, SUBMISSION_SECONDS)

    def done(self, answer) -> None:
        """Keep what the write made (an id) for a second post of the same form to show."""
        cache.set(self.key, answer, SUBMISSION_SECONDS)

    def answer(self):
        """What the first post kept with `done`; None while it is still writing, or when it kept nothing."""
        answer = cache.get(self.key)
        return None if answer == STARTED else answer

    def release(self) -> None:
        """Nothing was written (the write was refused): the same form may be sent again."""
        cache.delete(self.key)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """The claimed write: whatever it raises (a refusal, or a failure of ours) releases the claim
        first, so that the same form may be sent again; nothing was written."""
        try:
            yield
        except BaseException:
            self.release()
            raise
