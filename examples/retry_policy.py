"""The seed's "Set an Activity Retry Policy" snippet, ported: only the imports differ.

``your_activity`` fails on its first attempt, so the policy is visible: attempt 2 starts
``initial_interval`` (1 s) after attempt 1 failed.

Run: python examples/retry_policy.py
"""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from actorflow import ActorSystem, activity, workflow
from actorflow.common import RetryPolicy


@dataclass
class YourParams:
    greeting: str
    name: str


@activity.defn
async def your_activity(input: YourParams) -> str:
    attempt = activity.info().attempt
    if attempt == 1:
        raise ConnectionError("the greeting service is not up yet")
    return f"{input.greeting}, {input.name}! (attempt {attempt})"


async def main(greeting: str = "Hello") -> None:
    async with ActorSystem(activities=[your_activity], workers=1):
        # --- the seed snippet, unchanged ---
        activity_result = await workflow.execute_activity(
            your_activity,
            YourParams(greeting, "Retry Policy options"),
            start_to_close_timeout=timedelta(seconds=10),
            # Retry Policy
            retry_policy=RetryPolicy(
                backoff_coefficient=2.0,
                maximum_attempts=5,
                initial_interval=timedelta(seconds=1),
                maximum_interval=timedelta(seconds=2),
                # non_retryable_error_types=["ValueError"],
            ),
        )
        # --- end of the snippet ---
        print(activity_result)


if __name__ == "__main__":
    asyncio.run(main())
