"""Chat sessions, their messages, and turns (a user message, the reply, and the metered call)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.models import LLMCallEvent


class ChatSession(models.Model):
    """A conversation owned by one user, answered by one model."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    model = models.CharField(max_length=100)
    # Bumped by the turn's one UPDATE ... RETURNING: gives the next messages their order and
    # serializes concurrent turns of one session on its row.
    message_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sessions_app_chatsession"
        indexes = [models.Index(fields=["owner", "-updated_at", "-id"], name="chatsession_owner_recent_idx")]

    def __str__(self) -> str:
        return self.title or f"Chat session #{self.pk}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            self.updated_at = timezone.now()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "updated_at"}
        super().save(*args, **kwargs)


class Message(models.Model):
    """One message of a session; `order` counts from 0 within the session."""

    class Role(models.TextChoices):
        USER = "user", "user"
        ASSISTANT = "assistant", "assistant"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    order = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sessions_app_message"
        ordering = ["session", "order"]
        constraints = [
            models.UniqueConstraint(fields=["session", "order"], name="message_session_order_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.role} message #{self.pk}"


class Turn(models.Model):
    """A billed exchange: the user's message, the assistant's reply, and the metered LLM call.

    The call event belongs to billing and outlives the turn: deleting a session deletes its turns
    and messages, never the events or the ledger rows that point at them (PROTECT on this side).
    """

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="turns")
    user_message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="turn_as_prompt")
    assistant_message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="turn_as_reply")
    llm_call = models.OneToOneField(LLMCallEvent, on_delete=models.PROTECT, related_name="turn")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sessions_app_turn"
        indexes = [models.Index(fields=["session", "id"], name="turn_session_id_idx")]

    def __str__(self) -> str:
        return f"Turn #{self.pk} of session {self.session_id}"


class TurnRequest(models.Model):
    """A turn sent with an Idempotency-Key: claimed before the model call, completed with the turn's debit.

    The unique (user, key) decides between concurrent duplicates: the first insert wins, the others
    find its row (in progress: 409; done: its stored 201 body is replayed). A failed attempt deletes
    its row, so the key stays unused.
    """

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "in progress"
        DONE = "done", "done"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # sha256 of the session id and the content: the same key with another body is a conflict.
    content_hash = models.CharField(max_length=64)
    # Changes when an abandoned attempt is taken over, so the stale attempt cannot complete it.
    attempt = models.UUIDField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    turn = models.ForeignKey(Turn, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    response = models.JSONField(null=True, blank=True)  # the first 201 body, replayed as is
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "sessions_app_turnrequest"
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="turnrequest_user_key_uniq"),
            models.CheckConstraint(
                condition=Q(state__in=["in_progress", "done"]), name="turnrequest_state_known"
            ),
            models.CheckConstraint(
                condition=(Q(state="done") & Q(response__isnull=False) & Q(completed_at__isnull=False))
                | (Q(state="in_progress") & Q(response__isnull=True)),
                name="turnrequest_done_has_response",
            ),
        ]
        # The pruning job's scan: old rows by age.
        indexes = [models.Index(fields=["created_at"], name="turnrequest_created_idx")]

    def __str__(self) -> str:
        return f"turn request {self.key!r} of user {self.user_id} ({self.state})"
