"""config/asgi.py: Django's WSGI handler on a pool of threads, async streams relayed on the loop (core.asgi)."""

import asyncio
import threading

from core.asgi import ThreadedWSGI, accepts_event_stream

MAX_BODY = 1000


def http_scope(path="/x", accept="", method="GET", length: int | None = None):
    headers = [(b"accept", accept.encode())] if accept else []
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"a=1",
        "root_path": "",
        "headers": [*headers, (b"content-type", b"text/plain")],
        "client": ("203.0.113.9", 5000),
        "server": ("127.0.0.1", 8000),
    }


def run(app, scope, body_parts=(b"",), hang_up_after: int | None = None):
    """Drive an ASGI app with a request body in parts; the messages it sent.

    With `hang_up_after`, the client disconnects once that many messages have been sent (0: before
    the response starts).
    """
    sent = []
    parts = list(body_parts)
    gone = asyncio.Event()
    if hang_up_after == 0:
        gone.set()

    async def receive():
        if parts:
            body = parts.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(parts)}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        finished = message["type"] == "http.response.body" and not message.get("more_body")
        if finished or (hang_up_after is not None and len(sent) >= hang_up_after):
            gone.set()  # uvicorn answers receive() with a disconnect once the response is complete

    asyncio.run(app(scope, receive, send))
    return sent


def test_event_stream_accept_values():
    assert accepts_event_stream("text/event-stream")
    assert accepts_event_stream("application/json, text/event-stream;q=0.5")
    assert not accepts_event_stream("text/event-stream;q=0")
    assert not accepts_event_stream("application/json")


def test_threaded_wsgi_answers_in_one_piece_with_the_whole_body_and_closes_on_its_thread():
    calls = {}

    class Response(list):
        def close(self):
            calls["closed_on"] = threading.current_thread().name

    def app(environ, start_response):
        calls["ran_on"] = threading.current_thread().name
        calls["body"] = environ["wsgi.input"].read()
        calls["environ"] = {
            k: environ[k] for k in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR")
        }
        start_response("201 Created", [("Content-Type", "application/json"), ("X-Thing", "1")])
        return Response([b'{"a":', b" 1}"])

    sent = run(
        ThreadedWSGI(app, threads=2, max_body=MAX_BODY), http_scope(method="POST"), body_parts=(b"hel", b"lo")
    )
    assert sent == [
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"application/json"), (b"x-thing", b"1")],
        },
        {"type": "http.response.body", "body": b'{"a": 1}'},
    ]
    assert calls["body"] == b"hello"
    assert calls["environ"] == {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/x",
        "QUERY_STRING": "a=1",
        "REMOTE_ADDR": "203.0.113.9",
    }
    assert calls["ran_on"].startswith("wsgi") and calls["closed_on"] == calls["ran_on"]


def body_app(seen):
    def app(environ, start_response):
        seen["length"] = environ.get("CONTENT_LENGTH")
        seen["body"] = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


def test_a_chunked_body_reaches_django_with_its_length():
    # Without a Content-Length (Transfer-Encoding: chunked) Django read an empty body: a bad request
    # to create a session was served as an empty one, and created a default session.
    seen = {}
    run(ThreadedWSGI(body_app(seen), threads=1, max_body=MAX_BODY), http_scope(method="POST"), (b"ab", b"cd"))
    assert seen == {"length": "4", "body": b"abcd"}


def test_a_body_declared_too_large_is_not_read():
    seen = {}
    parts = [b"x" * 600] * 500  # 300 KB sent
    run(
        ThreadedWSGI(body_app(seen), threads=1, max_body=MAX_BODY),
        http_scope(method="POST", length=300_000),
        parts,
    )
    assert seen == {"length": "300000", "body": b""}  # none of it read; the middleware answers 413


def test_a_chunked_body_too_large_is_read_only_past_the_limit():
    # It was read whole into memory (300 MB: a worker at 956 MB) before the 413.
    seen = {}
    parts = [b"x" * 600] * 500
    run(ThreadedWSGI(body_app(seen), threads=1, max_body=MAX_BODY), http_scope(method="POST"), parts)
    # Two parts read, past MAX_BODY: every path's limit refuses that length.
    assert seen["length"] == "1200" and seen["body"] == b"x" * 1200


def test_threaded_wsgi_streams_a_streaming_response_chunk_by_chunk_from_one_thread():
    threads = set()

    class Streaming:
        streaming = True

        def __iter__(self):
            for chunk in (b"a,b\\n", b"", b"1,2\\n"):
                threads.add(threading.current_thread().name)
                yield chunk

        def close(self):
            threads.add(threading.current_thread().name)

    def app(environ, start_response):
        threads.add(threading.current_thread().name)
        start_response("200 OK", [("Content-Type", "text/csv")])
        return Streaming()

    sent = run(ThreadedWSGI(app, threads=2, max_body=MAX_BODY), http_scope())
    assert [m.get("body") for m in sent] == [None, b"a,b\\n", b"1,2\\n", b""]
    assert [m.get("more_body", False) for m in sent[1:]] == [True, True, False]
    assert len(threads) == 1  # the view, every chunk and close() on one thread (its connection)


class AsyncStream:
    """What Django's WSGI handler returns for a StreamingHttpResponse over an async iterator."""

    is_async = True
    streaming = True

    def __init__(self, parts, log):
        self.parts, self.log = parts, log

    async def __aiter__(self):
        self.log.append("iterated")
        try:
            for part in self.parts:
                await asyncio.sleep(0.01)
                yield part
        except asyncio.CancelledError:
            self.log.append("cancelled")  # the view charges a hang-up here
            raise

    def close(self):
        self.log.append(("closed on", threading.current_thread().name))


def streaming_app(log, parts=(b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n")):
    def app(environ, start_response):
        log.append(("view on", threading.current_thread().name))
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return AsyncStream(parts, log)

    return app


def test_an_async_stream_is_relayed_from_the_loop_and_closed_on_the_pool():
    log = []
    sent = run(
        ThreadedWSGI(streaming_app(log), threads=1, max_body=MAX_BODY), http_scope(accept="text/event-stream")
    )
    assert [m.get("body") for m in sent] == [None, b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", b""]
    assert log[0][0] == "view on" and log[-1][0] == "closed on"
    assert log[0][1] == log[-1][1]  # the pool's one thread; the stream itself held none


def test_a_client_that_hangs_up_cancels_the_stream():
    log = []
    sent = run(ThreadedWSGI(streaming_app(log), threads=1, max_body=MAX_BODY), http_scope(), hang_up_after=2)
    assert "cancelled" in log and log[-1][0] == "closed on"
    assert len(sent) < 5  # the rest was never sent


def test_a_client_gone_before_the_response_starts_never_starts_the_stream():
    log = []
    sent = run(ThreadedWSGI(streaming_app(log), threads=1, max_body=MAX_BODY), http_scope(), hang_up_after=0)
    assert sent == []
    assert "iterated" not in log  # its producer never ran: closing it gives the hold back
    assert log[0][0] == "view on" and log[-1][0] == "closed on"
