"""The ASGI application `make serve` runs: Django's WSGI handler on a fixed pool of threads, streams on the loop.

Every request runs Django's WSGI handler (middleware, view) on one of `threads` pool threads: the
views and the ORM are synchronous, and Django's async handler runs such a request at about 1.5x the
CPU of its WSGI handler (a thread made per request, hops in and out of it). A response that streams
from an async iterator (a streamed turn's server-sent events) is handed back to the event loop,
where it waits on the model holding no thread, as under Django's async handler: its database steps
get a thread of their own (ThreadSensitiveContext), a client that hangs up cancels it (one gone
before it starts never starts it), and its close() runs on the pool. A stream that sets `holds_start`
is not started (no status sent) until its first part: it finds `start_held` set once it runs, and
one that ends without a part, having set `instead` = (status, content type, body), is answered that
instead (a gateway stream whose model failed before writing is then a plain 502, as OpenAI's API). A response that streams from
a sync iterator (the CSV export) stays on its thread, which sends each chunk as it comes (its
database cursor is that thread's), as a WSGI server would. Everything else is sent from the loop in
one piece. docs/performance.md measures it.

A request body is read before the handler runs, and never more of it than the largest any path
takes (`max_body`): a body declared larger is not read at all, and one sent in chunks (no
Content-Length) is read up to one byte past it; either way the handler sees the length (declared,
or what was read) and the body-limit middleware answers 413. A chunked body within the limit is
given to Django with its length, which it reads the body by (without it, it read an empty one).
"""

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing

from a2wsgi.wsgi import build_environ
from asgiref.sync import ThreadSensitiveContext

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


class ThreadedWSGI:
    """A WSGI application served to ASGI on a fixed pool of threads, in one hop there and one back."""

    def __init__(self, app, *, threads: int, max_body: int):
        self.app = app
        self.max_body = max_body
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send)
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body:
            body = b""  # not read: the declared length is refused (413) before anything reads it
        else:
            body = await self._read_body(receive)
            if body is None:
                return
        loop = asyncio.get_running_loop()
        environ = build_environ(scope, io.BytesIO(body))
        if declared is None:  # sent in chunks: the length read (past max_body when it was cut short)
            environ["CONTENT_LENGTH"] = str(len(body))
        start, body = await loop.run_in_executor(self.executor, self._respond, environ, send, loop)
        if isinstance(body, bytes):  # finished on the thread: sent from here in one piece
            await send(start)
            await send({"type": "http.response.body", "body": body})
        elif body is not None:  # an async stream, relayed from the loop
            await self._relay(start, body, receive, send, loop)

    async def _read_body(self, receive) -> bytes | None:
        """The whole body, or its first max_body + 1 bytes when it is longer; None: the client left."""
        chunks, size = [], 0
        while size <= self.max_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    def _respond(self, environ, send, loop):
        """On a pool thread: run the app; (start, body bytes), (start, async response), or (None, None) once streamed."""
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
        if getattr(result, "is_async", False):
            return started["message"], result  # closed by _relay, after the stream
        try:
            if not getattr(result, "streaming", False):
                return started["message"], b"".join(result)
            asyncio.run_coroutine_threadsafe(send(started["message"]), loop).result()
            for chunk in result:
                if chunk:
                    message = {"type": "http.response.body", "body": chunk, "more_body": True}
                    asyncio.run_coroutine_threadsafe(send(message), loop).result()
            asyncio.run_coroutine_threadsafe(send({"type": "http.response.body", "body": b""}), loop).result()
            return None, None
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # Django's request_finished: the thread's connection goes back to the pool

    async def _relay(self, start, response, receive, send, loop) -> None:
        """Send an async streaming response from the loop, as Django's async handler would."""

        async def stream():
            async with aclosing(aiter(response)) as content:
                if getattr(response, "holds_start", False):
                    response.start_held = True  # what the stream may now rely on (see the top)
                    first = await anext(content, None)
                    if first is None and response.instead is not None:
                        status, content_type, body = response.instead
                        await send(
                            _replaced(start, status=status, content_type=content_type, length=len(body))
                        )
                        await send({"type": "http.response.body", "body": body})
                        return
                    await send(start)
                    if first is not None:
                        await send({"type": "http.response.body", "body": first, "more_body": True})
                else:
                    await send(start)
                async for part in content:
                    await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        async def hang_up():
            while (await receive())["type"] != "http.disconnect":
                pass

        async with ThreadSensitiveContext():  # the stream's database steps: one thread, as per request
            watching = asyncio.create_task(hang_up())
            # A client gone already (it left while the view ran) has its disconnect answered at once:
            # the stream is then never started, and its close() finds it unread (nothing asked of a model).
            await asyncio.sleep(0)
            if watching.done():
                await loop.run_in_executor(self.executor, response.close)
                return
            streaming = asyncio.create_task(stream())
            try:
                await asyncio.wait({streaming, watching}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watching, streaming):  # a hang-up cancels the stream: the view charges it
                    task.cancel()
                outcome = await asyncio.gather(streaming, watching, return_exceptions=True)
                await loop.run_in_executor(self.executor, response.close)
        if isinstance(outcome[0], Exception):
            raise outcome[0]


def _replaced(start: dict, *, status: int, content_type: str, length: int) -> dict:
    """The start of a response sent instead of a stream: its status and body's type, the stream's other
    headers (what the middleware added) kept."""
    replaced = {b"content-type", b"content-length", b"cache-control", b"x-accel-buffering"}
    headers = [(name, value) for name, value in start["headers"] if name not in replaced]
    headers += [(b"content-type", content_type.encode("latin1")), (b"content-length", str(length).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers}


def _declared_length(scope) -> int | None:
    """The request's Content-Length, if it declares one (the server has checked it is a number)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _lifespan(receive, send) -> None:
    """Nothing to start or stop: acknowledge the server's startup and shutdown."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
