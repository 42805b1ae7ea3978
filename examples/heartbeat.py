"""The seed's "Heartbeat an Activity" snippet, ported: only the imports differ.

Also what the seed says next: if an activity calls ``heartbeat(123, 456)`` and then fails and is
retried, the next attempt finds ``123`` and ``456`` in ``activity.info().heartbeat_details``.

Run: python examples/heartbeat.py
"""

import asyncio
from datetime import timedelta

from actorflow import ActorSystem, activity, workflow


# --- the seed snippet, unchanged ---
@activity.defn
async def your_activity_definition() -> str:
    activity.heartbeat("heartbeat details!")
# --- end of the snippet (it returns None, its annotation notwithstanding) ---


@activity.defn
async def resumes_from_details() -> list:
    details = list(activity.info().heartbeat_details)
    if activity.info().attempt == 1:
        activity.heartbeat(123, 456)
        raise RuntimeError("failing after a heartbeat, to be retried")
    return details


async def main() -> None:
    async with ActorSystem(activities=[your_activity_definition, resumes_from_details], workers=1):
        await workflow.execute_activity(
            your_activity_definition, start_to_close_timeout=timedelta(seconds=10))
        print("your_activity_definition heartbeated and completed")
        details = await workflow.execute_activity(
            resumes_from_details, start_to_close_timeout=timedelta(seconds=10))
        print(f"attempt 2 saw heartbeat_details == {details}")  # [123, 456]


if __name__ == "__main__":
    asyncio.run(main())
