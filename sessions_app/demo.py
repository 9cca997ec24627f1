"""Demo conversations for `make run`: a session whose turn used both tools, and one with a summary.

Taken through the real turn (billed like any other) with the echo provider's simulated tool choice,
so the admin and the API show what a user would see. Safe to run again: a user who has the demo
sessions gets nothing more.
"""

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from sessions_app import files, services
from sessions_app.models import ChatSession

TOOLS_TITLE = "Demo: budget questions (search and file_read)"
SUMMARY_TITLE = "Demo: a long planning chat (summarized)"
BUDGET_NOTES = (
    "Budget 2026, team notes.\n"
    "Travel: 12,000 credits, down from 15,000.\n"
    "Tooling: 8,500 credits; the new CI runners are the largest line.\n"
    "Open question: does the offsite count as travel or as training?\n"
)


def seed_conversations(*, users) -> None:
    for user in users:
        if ChatSession.objects.filter(owner=user, title__startswith="Demo:").exists():
            continue
        # The echo provider answers offline, whatever the deployment's provider is.
        with override_settings(LLM_PROVIDER="echo"):
            _tools_session(user)
            _summary_session(user)


def _tools_session(user) -> None:
    notes = files.upload_file(
        owner=user,
        uploaded=SimpleUploadedFile("budget-2026.txt", BUDGET_NOTES.encode(), content_type="text/plain"),
    )
    session = services.create_session(owner=user, title=TOOLS_TITLE)
    services.take_turn(
        session=session, user=user, content=f"Please search for travel budget and read file {notes.pk}."
    )


def _summary_session(user) -> None:
    session = services.create_session(owner=user, title=SUMMARY_TITLE)
    paragraph = "We compared venues, dates and catering for the spring offsite, and kept notes on each. "
    for topic in ("venues", "dates", "catering"):
        # Long enough that the history passes LLM_CONTEXT_TOKENS (8000 by default) by the third turn.
        services.take_turn(session=session, user=user, content=f"Notes on {topic}: " + paragraph * 160)
