"""Chat sessions, their messages, and turns (a user message, the reply, and the metered call)."""

from django.conf import settings
from django.db import models
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
