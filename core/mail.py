"""The development email backend: each message is one log line, and its full text a file under EMAIL_FILE_PATH."""

import logging

from django.core.mail.backends.filebased import EmailBackend as FileBackend

logger = logging.getLogger("creditdesk.mail")


class SummaryEmailBackend(FileBackend):
    """`make run`'s mail: "email to ...: subject" in the log, the message itself in a file (gitignored folder)."""

    def send_messages(self, email_messages):
        sent = super().send_messages(email_messages)
        for message in email_messages or []:
            logger.info(
                f"email to {', '.join(message.recipients())}: {message.subject}",
                extra={"saved_in": str(self.file_path)},
            )
        return sent
