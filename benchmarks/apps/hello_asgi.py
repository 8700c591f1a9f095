"""The bare-HTTP ceiling: an ASGI app that reads the request body and answers a tiny JSON, no model.

    uvicorn hello_asgi:app --app-dir benchmarks/apps --http httptools --loop uvloop --workers 2

Served by the same HTTP stack modelhost's workers use, it shows how many requests per second the
machine can answer at all, before any decoding, batching or predicting.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]

BODY = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] != "http":
        return
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
