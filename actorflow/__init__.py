"""actorflow: Temporal's activity execution semantics in one Python program, no server.

Layering: the pure modules (``_execution``, ``_retry``, ``_messages``, ``common``,
``exceptions``, ``clock``) -> the actors (``timer``, ``supervisor``, ``worker``) -> ``system``.
"""

import logging

from . import activity, common, exceptions, testing, workflow
from .common import ActivityCancellationType, RetryPolicy
from .exceptions import ActivityError, ApplicationError
from .handle import ActivityHandle
from .system import ActorSystem

logging.getLogger("actorflow").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "ActorSystem",
    "ActivityHandle",
    "ActivityCancellationType",
    "RetryPolicy",
    "ApplicationError",
    "ActivityError",
    "activity",
    "workflow",
    "common",
    "exceptions",
    "testing",
]
