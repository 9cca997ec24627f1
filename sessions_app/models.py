"""Chat sessions, their messages, turns and the model calls and tool runs in them, summaries, and files."""

import uuid

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from billing.models import LLMCallEvent

# The text search configuration of every full-text index and query here (tools.search).
SEARCH_CONFIG = "english"


class ChatSession(models.Model):
    """A conversation owned by one user, answered by one model."""

    # Indexed by chatsession_owner_recent_idx (owner, -updated_at, -id); so are the foreign keys
    # below by their tables' composite indexes: no single-column copies to keep up on every turn.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions", db_index=False
    )
    title = models.CharField(max_length=200, blank=True, default="")
    model = models.CharField(max_length=100)
    # Bumped by the turn's one UPDATE ... RETURNING: gives the next messages their order and
    # serializes concurrent turns of one session on its row.
    message_count = models.PositiveIntegerField(default=0)
    # Characters of all its messages, bumped by the same UPDATE: with the summary's `covered_chars`
    # it gives the size of the history a summary does not cover without reading the messages.
    message_chars = models.PositiveBigIntegerField(default=0)
    # The latest summary of the older history, which stands in for it in prompts (None: none yet).
    summary = models.ForeignKey(
        "SessionSummary", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
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

    session = models.ForeignKey(
        ChatSession, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    # The session's owner, copied by the statement that writes the message (a session never changes
    # hands; a trigger copies it for any insert that leaves it out, migration 0008) so that the search
    # index is keyed by user: a search reads its user's rows, not every user's matches. No constraint
    # of its own: the session's foreign key already ties the message to its owner, and the message
    # goes with its session.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    order = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sessions_app_message"
        ordering = ["session", "order"]
        # The search tool's index, keyed by owner then words (btree_gin): the same expressions as its
        # query (selectors.search_own_content), so it is used.
        indexes = [
            GinIndex(
                F("owner"), SearchVector("content", config=SEARCH_CONFIG), name="message_owner_search_idx"
            )
        ]
        constraints = [
            models.UniqueConstraint(fields=["session", "order"], name="message_session_order_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.role} message #{self.pk}"


class Turn(models.Model):
    """A billed exchange: the user's message, the assistant's reply, and the metered LLM calls.

    `llm_call` is the turn's first (chat) call; every call of the turn, follow-ups and summaries
    included, is linked in order by TurnCall. The call events belong to billing and outlive the
    turn: deleting a session deletes its turns and messages, never the events or the ledger rows
    that point at them (PROTECT on this side). The events are partitioned by month, so the link has
    no database constraint (`db_constraint=False` on every `llm_call`, docs/scaling-data.md): the
    turn's rows are written in the same transaction as the event they name.
    """

    class StopReason(models.TextChoices):
        COMPLETE = "complete", "complete"  # the model answered
        INSUFFICIENT_CREDITS = "insufficient_credits", "insufficient credits for the next call"
        PROVIDER_ERROR = "provider_error", "the provider failed on a follow-up call"
        TOOL_STEPS_EXHAUSTED = "tool_steps_exhausted", "more tool steps than LLM_MAX_TOOL_STEPS"

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="turns", db_index=False)
    user_message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="turn_as_prompt")
    assistant_message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="turn_as_reply")
    llm_call = models.OneToOneField(
        LLMCallEvent, on_delete=models.PROTECT, related_name="turn", db_constraint=False
    )
    stop_reason = models.CharField(
        max_length=24, choices=StopReason.choices, default=StopReason.COMPLETE, db_default=StopReason.COMPLETE
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sessions_app_turn"
        indexes = [models.Index(fields=["session", "id"], name="turn_session_id_idx")]

    def __str__(self) -> str:
        return f"Turn #{self.pk} of session {self.session_id}"


class TurnCall(models.Model):
    """One model call of a turn, in the order it was made (billing's event never points back here)."""

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="calls", db_index=False)
    llm_call = models.OneToOneField(
        LLMCallEvent, on_delete=models.PROTECT, related_name="turn_call", db_constraint=False
    )
    position = models.PositiveSmallIntegerField()

    class Meta:
        db_table = "sessions_app_turncall"
        ordering = ["turn", "position"]
        constraints = [
            models.UniqueConstraint(fields=["turn", "position"], name="turncall_turn_position_uniq")
        ]

    def __str__(self) -> str:
        return f"call {self.position} of turn {self.turn_id}"


class ToolCallEvent(models.Model):
    """One tool run in a turn, as the model asked for it: what, with which arguments, and how it went."""

    class Status(models.TextChoices):
        OK = "ok", "ok"
        ERROR = "error", "error"

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="tool_calls")
    position = models.PositiveSmallIntegerField()
    call_id = models.CharField(max_length=100, blank=True, default="")  # the model's id for the call
    tool = models.CharField(max_length=64)
    arguments = models.JSONField(default=dict)
    status = models.CharField(max_length=8, choices=Status.choices)
    error = models.CharField(max_length=500, blank=True, default="")
    result_chars = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sessions_app_toolcallevent"
        verbose_name = "tool call event"
        ordering = ["turn", "position"]
        indexes = [models.Index(fields=["created_at"], name="toolcall_created_idx")]
        constraints = [
            models.UniqueConstraint(fields=["turn", "position"], name="toolcall_turn_position_uniq"),
            models.CheckConstraint(condition=Q(status__in=["ok", "error"]), name="toolcall_status_known"),
        ]

    def __str__(self) -> str:
        return f"{self.tool} call #{self.pk} ({self.status})"


class SessionSummary(models.Model):
    """A summary of a session's first `covers_turns` turns, made by a billed model call (or its fallback).

    The latest one (ChatSession.summary) stands in for those turns' messages in later prompts.
    """

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="summaries")
    text = models.TextField()
    covers_turns = models.PositiveIntegerField()
    # Messages with an order below this are summarized (2 per turn).
    covers_messages = models.PositiveIntegerField()
    # The session's `message_chars` when those messages were all it had: the characters covered.
    covered_chars = models.PositiveBigIntegerField(default=0)
    used_fallback = models.BooleanField(default=False)
    llm_call = models.OneToOneField(
        LLMCallEvent, on_delete=models.PROTECT, related_name="session_summary", db_constraint=False
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sessions_app_sessionsummary"
        verbose_name_plural = "session summaries"
        indexes = [models.Index(fields=["session", "-id"], name="summary_session_recent_idx")]

    def __str__(self) -> str:
        return f"Summary of session {self.session_id} ({self.covers_turns} turns)"


def _upload_path(instance: "UserFile", filename: str) -> str:
    # Never the uploaded name: it is kept in `name`, and a storage path must not depend on user input.
    return f"user_files/{instance.owner_id}/{uuid.uuid4().hex}"


class UserFile(models.Model):
    """A text file a user uploaded: its bytes in the default storage, its words indexed for search."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    file = models.FileField(upload_to=_upload_path, max_length=255)
    # to_tsvector of the text's first FILE_INDEX_CHARS characters (services.upload_file).
    search_vector = SearchVectorField(null=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sessions_app_userfile"
        verbose_name = "user file"
        indexes = [
            models.Index(fields=["owner", "-created_at", "-id"], name="userfile_owner_recent_idx"),
            GinIndex(fields=["owner", "search_vector"], name="userfile_owner_search_idx"),
        ]
        constraints = [models.CheckConstraint(condition=Q(size__gte=0), name="userfile_size_non_negative")]

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


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
