"""A small guardrail webhook for tests, speaking the kgateway Guardrail Webhook API.

What it answers depends on the text it is sent:
  "please reject"  -> RejectAction 451 with a body
  "secret"         -> MaskAction replacing the word with ****
  "explode"        -> HTTP 500
  "stall"          -> answers after 2 s (past any sensible timeout)
  otherwise        -> PassAction
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from extproc.devstack import free_port


class GuardServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        doc = await request.json()
        kind = request.path.strip("/")
        self.calls.append(
            {"path": request.path, "body": doc, "headers": {k.lower(): v for k, v in request.headers.items()}}
        )
        items = doc["body"]["messages"] if kind == "request" else doc["body"]["choices"]
        texts = [i["content"] if kind == "request" else i["message"]["content"] for i in items]
        joined = " ".join(texts)
        if "explode" in joined:
            return web.Response(status=500, text="internal error")
        if "stall" in joined:
            await asyncio.sleep(2)
        if "please reject" in joined:
            return web.json_response(
                {"action": {"body": "blocked by the test guard", "status_code": 451, "reason": "test"}}
            )
        if "secret" in joined:
            if kind == "request":
                masked = [{**i, "content": i["content"].replace("secret", "****")} for i in items]
                return web.json_response({"action": {"body": {"messages": masked}, "reason": "mask"}})
            masked = [
                {"message": {**i["message"], "content": i["message"]["content"].replace("secret", "****")}}
                for i in items
            ]
            return web.json_response({"action": {"body": {"choices": masked}}})
        return web.json_response({"action": {"reason": "fine"}})

    def start(self) -> GuardServer:
        async def up() -> None:
            app = web.Application()
            app.router.add_post("/request", self._handle)
            app.router.add_post("/response", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self._thread.start()
        asyncio.run_coroutine_threadsafe(up(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
