"""The seed's "Set Activity timeouts" snippet, ported: only the imports differ.

In Temporal this call sits inside a workflow; here the workflow is a plain coroutine that runs
inside ``async with ActorSystem(...)``, and ``workflow.execute_activity`` acts on that system.

Run: python examples/timeouts.py
"""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from actorflow import ActorSystem, activity, workflow


@dataclass
class YourParams:
    greeting: str
    name: str


@activity.defn
async def your_activity(input: YourParams) -> str:
    return f"{input.greeting}, {input.name}!"


async def main(greeting: str = "Hello") -> None:
    async with ActorSystem(activities=[your_activity], workers=1):
        # --- the seed snippet, unchanged ---
        activity_timeout_result = await workflow.execute_activity(
            your_activity,
            YourParams(greeting, "Activity Timeout option"),
            # Activity Execution Timeout
            start_to_close_timeout=timedelta(seconds=10),
            # schedule_to_start_timeout=timedelta(seconds=10),
            # schedule_to_close_timeout=timedelta(seconds=10),
        )
        # --- end of the snippet ---
        print(activity_timeout_result)


if __name__ == "__main__":
    asyncio.run(main())
