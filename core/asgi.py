"""One ASGI application over Django's two handlers: streams on the async one, every other request on WSGI threads.

A streamed answer (`Accept: text/event-stream`) waits on the model for seconds; Django's async
handler holds no thread meanwhile. Everything else is short and synchronous (the views, the ORM),
and Django's async handler runs such a request at about 1.5x the CPU of its WSGI handler (a thread
made per request for the sync middleware and view, hops in and out of it), so those requests go to
the WSGI handler on a fixed pool of threads (a2wsgi). docs/performance.md has the measurements.
"""

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
