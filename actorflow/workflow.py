"""Temporal's ``workflow.execute_activity`` / ``start_activity`` on the current ``ActorSystem``.

With these, Temporal snippets run with only their import lines changed (API.md). The current
system is the one entered (``with`` / ``async with``) in the calling context, else the only
running one.
"""

from __future__ import annotations

from typing import Any, Callable, Union

from .common import ActivityCancellationType
from .handle import ActivityHandle
from .system import _NO_ARG, current_system

__all__ = ["execute_activity", "start_activity", "ActivityCancellationType"]


def start_activity(activity: Union[Callable[..., Any], str], arg: Any = _NO_ARG, **options: Any) -> ActivityHandle:
    """``ActorSystem.start_activity`` on the current system."""
    return current_system().start_activity(activity, arg, **options)


async def execute_activity(activity: Union[Callable[..., Any], str], arg: Any = _NO_ARG, **options: Any) -> Any:
    """``ActorSystem.execute_activity`` on the current system."""
    return await current_system().start_activity(activity, arg, **options)
