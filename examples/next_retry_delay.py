"""The seed's ``next_retry_delay`` snippet, ported: only the imports differ.

The activity asks for a retry delay that grows with the attempt number (3 s, 6 s, 9 s, ...)
instead of the policy's exponential backoff. Here the work fails once, so the example waits 3 s.

Run: python examples/next_retry_delay.py
"""

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta

from actorflow import ActorSystem, activity, workflow
from actorflow.exceptions import ApplicationError


@dataclass
class MyActivityInput:
    failures: int  # how many attempts fail before one succeeds


def your_activity_logic(input: MyActivityInput) -> str:
    attempt = activity.info().attempt
    if attempt <= input.failures:
        raise ConnectionError("the downstream service refused the request")
    return f"succeeded on attempt {attempt}"


# --- the seed snippet; "# Your activity logic goes here" became a call ---
@activity.defn
async def my_activity(input: MyActivityInput):
    try:
        # Your activity logic goes here
        return your_activity_logic(input)
    except Exception as e:
        attempt = activity.info().attempt
        raise ApplicationError(
            f"Error encountered on attempt {attempt}",
            next_retry_delay=timedelta(seconds=3 * attempt),
        ) from e
# --- end of the snippet ---


async def main() -> None:
    async with ActorSystem(activities=[my_activity], workers=1):
        started = time.monotonic()
        result = await workflow.execute_activity(
            my_activity, MyActivityInput(failures=1), start_to_close_timeout=timedelta(seconds=10)
        )
        print(f"{result} after {time.monotonic() - started:.1f} s (next_retry_delay was 3 s)")


if __name__ == "__main__":
    asyncio.run(main())
