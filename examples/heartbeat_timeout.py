"""The seed's "Set a Heartbeat Timeout" snippets, ported: starting an activity by its name.

``"your-activity"`` is the name given in ``@activity.defn(name=...)``; a system that registers
the function can start it by that name. Two changes to the seed's text, both required by Python
rather than by actorflow: the seed's ``execute_activity(activity="your-activity", name, ...)``
puts a positional argument after a keyword one, which is a SyntaxError, so the name is passed
positionally here; and ``execute_activity`` is a coroutine, so it is awaited (as is the handle).

Run: python examples/heartbeat_timeout.py
"""

import asyncio
from datetime import timedelta

from actorflow import ActorSystem, activity, workflow


@activity.defn(name="your-activity")
async def your_activity(name: str = "world") -> str:
    for step in range(3):
        activity.heartbeat(step)  # well within heartbeat_timeout
        await asyncio.sleep(0.2)
    return f"hello, {name}"


async def main(name: str = "heartbeat timeout") -> None:
    async with ActorSystem(activities=[your_activity], workers=1):
        # --- the seed snippets ---
        handle = workflow.start_activity(
            activity="your-activity",
            schedule_to_close_timeout=timedelta(seconds=5),
            heartbeat_timeout=timedelta(seconds=1),
        )

        result = await workflow.execute_activity(
            "your-activity",
            name,
            schedule_to_close_timeout=timedelta(seconds=5),
            heartbeat_timeout=timedelta(seconds=1),
        )
        # --- end of the snippets ---
        print(await handle)
        print(result)


if __name__ == "__main__":
    asyncio.run(main())
