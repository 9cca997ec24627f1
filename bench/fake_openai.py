"""A fake OpenAI-compatible chat-completions server on loopback that misbehaves on command.

The fault is chosen per request by a marker in the last user message, so concurrent clients can
mix faults deterministically: `[fault:error]` (HTTP 500), `[fault:garbage]` (200 with a body that is
not a completion), `[fault:timeout]` (answers after the client's timeout), `[fault:hang]` (sends the
headers and half a body, then stalls past the timeout), `[fault:slow=SECONDS]` (a good answer, late).
No marker: a good completion whose usage follows the echo provider's token rule.

Tool calls: when the request offers `tools`, each `[tool:NAME {json arguments}]` marker in the last user
message is asked for in turn, one tool call per answer (as a model would, in the OpenAI format), and
once every one has a `tool` result the answer echoes the message and the results (streamed too: a
tool call's arguments arrive in two pieces).

`"stream": true` requests are answered as the real API streams (chunked `data:` lines of
`chat.completion.chunk`, then, with `stream_options.include_usage`, a last chunk carrying the usage,
then `data: [DONE]`): the reply in 4-token pieces, `stream_delay` seconds apart (the server's
default, or `[fault:drip=SECONDS]`). `[fault:midstream]` sends half of the pieces and then drops the
connection mid-body (no usage ever arrives).

Run by hand: `python bench/fake_openai.py --port 8765` (prints its base URL).
"""

import argparse
import json
import math
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_MARKER = re.compile(r"\[fault:(?P<kind>[a-z]+)(?:=(?P<arg>[0-9.]+))?\]")
_TOOL_MARKER = re.compile(r"\[tool:(?P<name>[a-z_]+) (?P<arguments>\{.*?\})\]")
# Every stall is bounded: past the client's timeout, never forever.
MAX_STALL_SECONDS = 30.0


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class FakeOpenAIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "FakeOpenAIServer"

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass  # quiet: the load driver prints the figures

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            messages = request.get("messages") or []
            last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        except (ValueError, AttributeError):
            self._send(400, b'{"error": {"message": "bad request"}}')
            return
        match = _MARKER.search(last)
        kind = match["kind"] if match else "ok"
        arg = float(match["arg"]) if match and match["arg"] else None
        self.server.count(kind)
        stall = min(self.server.stall_seconds, MAX_STALL_SECONDS)
        if request.get("stream") and kind in ("ok", "drip", "midstream"):
            delay = arg if kind == "drip" and arg is not None else self.server.stream_delay
            self._stream(
                request, messages, last, delay=min(delay, MAX_STALL_SECONDS), cut=kind == "midstream"
            )
            return
        if kind == "error":
            self._send(500, b'{"error": {"message": "the fake provider failed on purpose"}}')
        elif kind == "garbage":
            self._send(200, b'{"choices": "not a list", "usage": {"prompt_tokens": "many"}}')
        elif kind == "timeout":
            time.sleep(stall)
            self._send(200, self._completion(request, messages, last))
        elif kind == "hang":
            body = self._completion(request, messages, last)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(stall)
            self.close_connection = True
        else:
            if kind == "slow" and arg:
                # Known to be mid-turn (reserved, not settled): bench/faults.py picks its victims here.
                port = self.client_address[1]
                self.server.in_flight.add(port)
                try:
                    time.sleep(min(arg, MAX_STALL_SECONDS))
                finally:
                    self.server.in_flight.discard(port)
            self._send(200, self._completion(request, messages, last))

    def _chunk(self, payload: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.flush()

    def _stream(self, request: dict, messages: list, last: str, *, delay: float, cut: bool) -> None:
        message, finish_reason, prompt_tokens, completion_tokens = self._answer(request, messages, last)
        reply = message.get("content") or ""
        pieces = [reply[i : i + 16] for i in range(0, len(reply), 16)] or [""]
        if message.get("tool_calls"):
            # A tool call streams in pieces too: its id and name first, then its arguments in two halves.
            call = message["tool_calls"][0]
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            pieces = [
                {
                    "index": 0,
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": arguments[:half]},
                },
                {"index": 0, "function": {"arguments": arguments[half:]}},
            ]
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = request.get("model", "fake")
        if self.server.first_byte_delay:
            time.sleep(min(self.server.first_byte_delay, MAX_STALL_SECONDS))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.server.streams_open(+1)
        try:
            for n, piece in enumerate(pieces):
                if cut and n >= max(1, len(pieces) // 2):
                    self.close_connection = True
                    self.wfile.flush()
                    return  # no terminating chunk: the client sees a body cut short
                if delay:
                    time.sleep(delay)
                delta = {"tool_calls": [piece]} if isinstance(piece, dict) else {"content": piece}
                choice = {"index": 0, "delta": delta, "finish_reason": None}
                self._chunk(b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n")
                if n == 0:
                    sent = time.monotonic()  # the model's own first byte, as sent
                    self.server.first_piece_sent = sent
                    self.server.first_piece_by_message[last] = sent
            stop = {"index": 0, "delta": {}, "finish_reason": finish_reason}
            self._chunk(b"data: " + json.dumps({**base, "choices": [stop]}).encode() + b"\n\n")
            if (request.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                payload = json.dumps({**base, "choices": [], "usage": usage}).encode()
                self._chunk(b"data: " + payload + b"\n\n")
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except ConnectionError:
            self.close_connection = True  # the client (our server) stopped reading: it hung up
            self.server.count("stream_abandoned")
        finally:
            self.server.streams_open(-1)

    def _answer(self, request: dict, messages: list, last: str) -> tuple[dict, str, int, int]:
        """(message, finish_reason, prompt_tokens, completion_tokens): a tool call or the echo reply."""
        prompt_tokens = sum(
            _tokens(str(m.get("content") or ""))
            + sum(_tokens(c["function"]["arguments"]) for c in m.get("tool_calls") or ())
            for m in messages
        )
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        since = messages[last_user + 1 :]
        wanted = _TOOL_MARKER.findall(last) if request.get("tools") else []
        asked = sum(len(m.get("tool_calls") or ()) for m in since if m.get("role") == "assistant")
        if asked < len(wanted):
            name, arguments = wanted[asked]
            call = {
                "id": f"call_fake_{asked + 1}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            return message, "tool_calls", prompt_tokens, _tokens(arguments)
        results = "".join(f"\n\n[tool] {m.get('content')}" for m in since if m.get("role") == "tool")
        reply = f"Echo: {last}{results}"
        return {"role": "assistant", "content": reply}, "stop", prompt_tokens, _tokens(reply)

    def _completion(self, request: dict, messages: list, last: str) -> bytes:
        return self._body(request, *self._answer(request, messages, last))

    def _body(
        self, request: dict, message: dict, finish_reason: str, prompt_tokens: int, completion_tokens: int
    ) -> bytes:
        return json.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request.get("model", "fake"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        ).encode()


class FakeOpenAIServer(ThreadingHTTPServer):
    daemon_threads = True
    # A real provider accepts hundreds of connections at once; socketserver's default listen backlog
    # (5) drops a burst's connects, which the client reports as provider failures.
    request_queue_size = 1024

    def __init__(
        self,
        port: int = 0,
        stall_seconds: float = 3.0,
        stream_delay: float = 0.0,
        first_byte_delay: float = 0.0,
    ):
        super().__init__(("127.0.0.1", port), FakeOpenAIHandler)
        self.stall_seconds = stall_seconds
        self.stream_delay = stream_delay
        # A stream's answer starts this long after its request (the model's own time to first byte).
        self.first_byte_delay = first_byte_delay
        self.first_piece_sent = 0.0  # when the latest stream's first piece was written (time.monotonic)
        # The same for every stream, by its last user message (a bench makes each one unique).
        self.first_piece_by_message: dict[str, float] = {}
        self.open_streams = 0
        self.max_open_streams = 0
        self.counts: dict[str, int] = {}
        self.in_flight: set[int] = set()  # client ports of slow requests being answered
        self._lock = threading.Lock()

    def handle_error(self, request, client_address):
        # A client that gave up (its timeout) closes the socket under a stalled answer: expected here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def streams_open(self, step: int) -> None:
        with self._lock:
            self.open_streams += step
            self.max_open_streams = max(self.max_open_streams, self.open_streams)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> "FakeOpenAIServer":
        threading.Thread(target=self.serve_forever, name="fake-openai", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--stall", type=float, default=3.0, help="seconds a timeout/hang stalls")
    parser.add_argument("--stream-delay", type=float, default=0.0, help="seconds between streamed pieces")
    args = parser.parse_args()
    server = FakeOpenAIServer(args.port, args.stall, args.stream_delay)
    print(f"fake OpenAI-compatible server at {server.base_url}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
