"""A multi-process data workload: count primes in 16 chunks of a range, on 4 worker processes.

Each chunk is a sync (CPU-bound) activity, so the chunks really run in parallel on different
processes, not on threads sharing one GIL. Each activity heartbeats its progress; one chunk fails
half-way on its first attempt and its retry resumes from the last heartbeat instead of starting
over. The total is checked against a sieve run in this process.

Run: python examples/data_pipeline.py
"""

import asyncio
import math
import time
from datetime import timedelta

from actorflow import ActorSystem, RetryPolicy, activity, workflow

CHUNKS = 16
CHUNK_SIZE = 25_000
STEP = 2_500  # numbers between heartbeats


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


@activity.defn
def count_primes(start: int, stop: int, fail_once: bool) -> dict:
    """Count primes in [start, stop); resume after the last heartbeat (``next``, ``count``)."""
    details = activity.info().heartbeat_details
    next_n, count = details if details else (start, 0)
    resumed_at = next_n
    while next_n < stop:
        upper = min(next_n + STEP, stop)
        count += sum(1 for n in range(next_n, upper) if is_prime(n))
        next_n = upper
        activity.heartbeat(next_n, count)  # progress, for a retry to resume from
        if fail_once and activity.info().attempt == 1 and next_n - start >= (stop - start) // 2:
            raise IOError("lost the input file half-way")
    return {"count": count, "attempt": activity.info().attempt, "resumed_at": resumed_at}


async def main() -> None:
    bounds = [(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE) for i in range(CHUNKS)]
    async with ActorSystem(activities=[count_primes], workers=4):
        started = time.monotonic()
        results = await asyncio.gather(*(
            workflow.execute_activity(
                count_primes,
                args=[lo, hi, i == 5],
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),
            )
            for i, (lo, hi) in enumerate(bounds)
        ))
        elapsed = time.monotonic() - started
    total = sum(r["count"] for r in results)
    retried = [(i, r) for i, r in enumerate(results) if r["attempt"] > 1]
    print(f"{total} primes below {CHUNKS * CHUNK_SIZE} in {CHUNKS} chunks on 4 processes: {elapsed:.2f} s")
    for i, r in retried:
        print(f"chunk {i} was retried: attempt {r['attempt']} resumed at {r['resumed_at']}, "
              f"not at {bounds[i][0]}")
    assert total == sieve_count(CHUNKS * CHUNK_SIZE), "the chunks disagree with the sieve"
    print("matches a sieve of Eratosthenes run in this process")


def sieve_count(limit: int) -> int:
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\x00\x00"
    for n in range(2, math.isqrt(limit - 1) + 1):
        if sieve[n]:
            sieve[n * n::n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve)


if __name__ == "__main__":
    asyncio.run(main())
