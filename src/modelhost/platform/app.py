"""The one ASGI app on the platform's port: invocations to the front door, everything else to the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from modelhost.frontdoor.proxy import PREFIX as INVOCATIONS_PREFIX
from modelhost.frontdoor.proxy import FrontDoor, Receive, Scope, Send

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class PlatformApp:
    def __init__(self, front_door: FrontDoor, api: ASGIApp) -> None:
        self._front_door = front_door
        self._api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(INVOCATIONS_PREFIX):
            await self._front_door(scope, receive, send)
        else:
            await self._api(scope, receive, send)
