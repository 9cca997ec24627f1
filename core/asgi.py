"""One ASGI application over Django's two handlers: streams on the async one, every other request on WSGI threads.

A streamed answer (`Accept: text/event-stream`) waits on the model for seconds; Django's async
handler holds no thread meanwhile. Everything else is short and synchronous (the views, the ORM),
and Django's async handler runs such a request at about 1.5x the CPU of its WSGI handler (a thread
made per request for the sync middleware and view, hops in and out of it), so those requests go to
the WSGI handler on a fixed pool of threads (ThreadedWSGI). docs/performance.md has the measurements.
"""

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor

from a2wsgi.wsgi import build_environ

EVENT_STREAM = "text/event-stream"


def accepts_event_stream(accept: str) -> bool:
    """Whether an Accept header asks for text/event-stream (with a q above 0)."""
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if media.lower() != EVENT_STREAM:
            continue
        q = next((p.split("=", 1)[1] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            return True
    return False


def _accept(scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return value.decode("latin-1")
    return ""


class StreamRouter:
    """Streams (and the paths in `async_paths`) to `streaming`, other HTTP requests to `threaded`."""

    def __init__(self, *, streaming, threaded, async_paths: tuple[str, ...] = ()):
        self.streaming = streaming
        self.threaded = threaded
        self.async_paths = async_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        if scope["type"] == "http" and (
            scope["path"] in self.async_paths or accepts_event_stream(_accept(scope))
        ):
            return await self.streaming(scope, receive, send)
        return await self.threaded(scope, receive, send)


async def _lifespan(receive, send) -> None:
    """Nothing to start or stop: acknowledge the server's startup and shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class ThreadedWSGI:
    """A WSGI application served to ASGI on a fixed pool of threads, in one hop there and one back.

    The request body is read on the loop first (the API's bodies are bounded: 1 MB, uploads a few),
    then the whole request runs on a pool thread, and a finished response comes back to the loop in
    one piece. A streaming response (the CSV export) stays on its thread, which sends each chunk as
    it comes (its database cursor is that thread's), as a WSGI server would. a2wsgi (whose environ
    builder this uses) hops to the loop for every message; docs/performance.md measures the difference.
    """

    def __init__(self, app, *, threads: int):
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")

    async def __call__(self, scope, receive, send):
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        loop = asyncio.get_running_loop()
        environ = build_environ(scope, io.BytesIO(b"".join(chunks)))
        start, body = await loop.run_in_executor(self.executor, self._respond, environ, send, loop)
        if start is not None:  # finished on the thread: sent from here in one piece
            await send(start)
            await send({"type": "http.response.body", "body": body})

    def _respond(self, environ, send, loop):
        """On a pool thread: run the app; (start, body) to send, or (None, None) once streamed from here."""
        started = {}

        def start_response(status, headers, exc_info=None):
            started["message"] = {
                "type": "http.response.start",
                "status": int(status.split(" ", 1)[0]),
                "headers": [
                    (name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers
                ],
            }

        result = self.app(environ, start_response)
        try:
            if not getattr(result, "streaming", False):
                return started["message"], b"".join(result)
            asyncio.run_coroutine_threadsafe(send(started["message"]), loop).result()
            for chunk in result:
                if chunk:
                    asyncio.run_coroutine_threadsafe(
                        send({"type": "http.response.body", "body": chunk, "more_body": True}), loop
                    ).result()
            asyncio.run_coroutine_threadsafe(send({"type": "http.response.body", "body": b""}), loop).result()
            return None, None
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # Django's request_finished: the thread's connection goes back to the pool
