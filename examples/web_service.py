"""Embedding actorflow in an asyncio web service.

A tiny HTTP server (``asyncio.start_server``, no framework) answers ``GET /thumbnail?size=N`` by
running an activity on a worker process, with a timeout and a retry policy, and returns JSON. The
event loop never blocks: the handler awaits the activity like any coroutine. If the task that
awaits it is cancelled (``asyncio.wait_for`` giving up, the server shutting down), the activity
is asked to cancel as well.

To stay self-contained, the example serves on 127.0.0.1 (a free port), sends itself a few
requests, prints the answers and exits.

Run: python examples/web_service.py
"""

import asyncio
import json
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from actorflow import ActorSystem, RetryPolicy, activity, workflow
from actorflow.exceptions import ActivityError


@activity.defn
def render_thumbnail(size: int) -> dict:
    """Stands in for CPU-heavy work: a plain def runs on a worker process's thread."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    checksum = sum((x * x) % 251 for x in range(size * 10_000))
    return {"size": size, "checksum": checksum, "attempt": activity.info().attempt}


async def handle_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request_line = (await reader.readline()).decode("latin-1")
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass  # skip the headers
    method, target, _ = request_line.split(" ", 2)
    url = urlsplit(target)
    if method != "GET" or url.path != "/thumbnail":
        status, body = 404, {"error": f"no route for {method} {url.path}"}
    else:
        size = int(parse_qs(url.query).get("size", ["1"])[0])
        try:
            result = await workflow.execute_activity(
                render_thumbnail,
                size,
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=["ValueError"]),
            )
            status, body = 200, result
        except ActivityError as err:
            status, body = 422, {"error": str(err.cause), "retry_state": err.retry_state.name}
    payload = json.dumps(body).encode()
    reason = {200: b"OK", 404: b"Not Found", 422: b"Unprocessable Entity"}[status]
    writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n" % (status, reason))
    writer.write(b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(payload), payload))
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def get(port: int, path: str) -> str:
    """A minimal HTTP client, so the example can call itself."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    await writer.wait_closed()
    status = response.split(" ", 2)[1]
    body = response.split("\r\n\r\n", 1)[1]
    return f"{status} {body}"


async def main() -> None:
    async with ActorSystem(activities=[render_thumbnail], workers=2):
        server = await asyncio.start_server(handle_request, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(f"serving on http://127.0.0.1:{port}")
        async with server:
            started = time.monotonic()
            answers = await asyncio.gather(
                get(port, "/thumbnail?size=64"),
                get(port, "/thumbnail?size=32"),
                get(port, "/thumbnail?size=0"),  # the activity raises ValueError: not retried
                get(port, "/nope"),
            )
            for answer in answers:
                print(answer)
            print(f"4 requests served concurrently in {time.monotonic() - started:.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
