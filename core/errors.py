"""Domain errors: plain exceptions that carry a code and the facts; core.api's handler makes them HTTP.

An app raises its own subclasses (billing.exceptions, sessions_app.exceptions, ...) from services and
views alike; commands print `message` as one line, admin forms show it on `field`. Nothing here knows
which app raised it: the status, the code and the body's extra facts are the error's own.
"""


class DomainError(Exception):
    """A refused operation; nothing was written. `status_code` is its HTTP answer."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def facts(self) -> dict:
        """What the body carries besides `detail` and `code` (subclasses add theirs)."""
        return {}

    def body(self) -> dict:
        """The JSON answer: `{field: [message]}` for a field's error, else detail, code and the facts."""
        if self.field:
            return {self.field: [self.message]}
        return {"detail": self.message, "code": self.code, **self.facts()}


class InvalidInput(DomainError):
    """Input no app-specific rule covers (an idempotency key's grammar, ...)."""

    code = "invalid"
