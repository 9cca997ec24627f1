"""config/asgi.py: streams on Django's async handler, every other request on WSGI threads (core.asgi)."""

import asyncio
import threading

from core.asgi import StreamRouter, ThreadedWSGI, accepts_event_stream


def http_scope(path="/x", accept="", method="GET"):
    headers = [(b"accept", accept.encode())] if accept else []
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


def run(app, scope, body_parts=(b"",)):
    """Drive an ASGI app with a request body in parts; the messages it sent."""
    sent = []
    parts = list(body_parts)

    async def receive():
        body = parts.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(parts)}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_event_stream_accept_values():
    assert accepts_event_stream("text/event-stream")
    assert accepts_event_stream("application/json, text/event-stream;q=0.5")
    assert not accepts_event_stream("text/event-stream;q=0")
    assert not accepts_event_stream("application/json")


def test_router_sends_streams_to_the_async_handler_and_the_rest_to_threads():
    seen = []

    def named(name):
        async def app(scope, receive, send):
            seen.append(name)

        return app

    router = StreamRouter(
        streaming=named("async"), threaded=named("threads"), async_paths=("/v1/chat/completions",)
    )
    run(router, http_scope(accept="text/event-stream"))
    run(router, http_scope(accept="application/json"))
    run(router, http_scope(path="/v1/chat/completions"))
    assert seen == ["async", "threads", "async"]


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

    sent = run(ThreadedWSGI(app, threads=2), http_scope(method="POST"), body_parts=(b"hel", b"lo"))
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

    sent = run(ThreadedWSGI(app, threads=2), http_scope())
    assert [m.get("body") for m in sent] == [None, b"a,b\\n", b"1,2\\n", b""]
    assert [m.get("more_body", False) for m in sent[1:]] == [True, True, False]
    assert len(threads) == 1  # the view, every chunk and close() on one thread (its connection)
