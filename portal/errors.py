"""One domain error type, raised by services with a message meant for the person at the keyboard.

``portal.http`` turns these into answers in one place (API responses, error
pages, form errors and messages), so no view needs its own mapping and no user
sees a traceback. This module imports nothing of the apps: every layer may
raise these.
"""

from __future__ import annotations


class PortalError(Exception):
    """A refusal or failure with a message fit to show the user."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(PortalError):
    """Missing, or not visible to this user: the two answer alike so ids leak nothing."""

    status_code = 404
    code = "not_found"


class Forbidden(PortalError):
    status_code = 403
    code = "forbidden"


class Conflict(PortalError):
    """The object is no longer in the state the action needs (someone else acted first)."""

    status_code = 409
    code = "conflict"


class Unavailable(PortalError):
    """A service the action needs (the broker, a worker queue) cannot be reached now."""

    status_code = 503
    code = "unavailable"


class TooManyAttempts(PortalError):
    """Too many failed tries in a short time (sign-in); try again after ``retry_after`` s."""

    status_code = 429
    code = "throttled"

    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after
