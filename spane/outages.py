"""Infrastructure that cannot be reached, told in one line that names the setting to fix.

The CLI and each worker process print this line instead of a driver's traceback; an
enqueue whose broker is down keeps the execution it stored (see ``api.enqueue_workflow``).
"""

from __future__ import annotations

import dramatiq.errors
import redis.exceptions
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from .settings import Settings, mask_url

#: What a broker client raises when its server cannot be reached (RabbitMQ's are wrapped
#: by Dramatiq; Redis's are not).
BROKER_DOWN: tuple[type[BaseException], ...] = (
    dramatiq.errors.BrokerConnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def _reason(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def database(settings: Settings, exc: BaseException) -> str:
    """The line for a database that failed to connect or answer."""
    return (
        f"the database {mask_url(settings.database_url)} (SPANE_DATABASE_URL) "
        f"cannot be used: {_reason(exc)}"
    )


def broker(settings: Settings, exc: BaseException) -> str:
    """The line for a broker that cannot be reached."""
    return (
        f"the broker {mask_url(settings.broker_url)} (SPANE_BROKER_URL) cannot be "
        f"reached: {_reason(exc)}"
    )


def describe(settings: Settings, exc: BaseException) -> str | None:
    """The one line for an infrastructure error, or None if ``exc`` is not one."""
    if isinstance(exc, OperationalError | InterfaceError):
        return database(settings, exc)
    if isinstance(exc, BROKER_DOWN):
        return broker(settings, exc)
    return None
