"""actorflow: Temporal's activity execution semantics in one Python program, no server.

Layering: the pure modules (``_execution``, ``_retry``, ``_messages``, ``common``,
``exceptions``, ``clock``) -> the actors (``timer``, ``supervisor``, ``worker``) -> ``system``.

The runtime side (``ActorSystem``, ``ActivityHandle``, ``workflow``, ``testing``) is imported on
first use (PEP 562), so a worker process, which only needs the activity side, starts without
importing pykka and the actors.
"""

import importlib
import logging
from typing import TYPE_CHECKING, Any

from . import activity, common, exceptions
from .common import ActivityCancellationType, RetryPolicy
from .exceptions import ActivityError, ApplicationError

if TYPE_CHECKING:
    from . import testing, workflow
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

_LAZY_NAMES = {"ActorSystem": ".system", "ActivityHandle": ".handle"}
_LAZY_MODULES = {"workflow", "testing"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'actorflow' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
