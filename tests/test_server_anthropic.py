"""The built-in server's Anthropic-compatible `POST /v1/messages` and the OpenAI stand-in's
chunking knobs, read over real sockets on 127.0.0.1 with the standard library's client:
the Messages streaming event sequence, event names matching each data's `type`, usage,
errors before and inside the stream, and batched chunks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from fanin.server.app import ServerThread, build_app, endpoint_paths


@pytest.fixture(scope="module")
def server():
    with ServerThread() as srv:
        yield srv


def post(server, path: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(server.url(path), data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def events(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((fields["event"], json.loads(fields["data"])))
    return out


MESSAGE = {"model": "claude-test", "max_tokens": 3, "stream": True,
           "messages": [{"role": "user", "content": "four words of prompt"}]}


def test_messages_stream_follows_the_documented_sequence(server):
    status, raw = post(server, "/v1/messages?ttft_ms=0&itl_ms=0", MESSAGE)
    assert status == 200
    seq = events(raw)
    assert all(name == data["type"] for name, data in seq)
    assert [name for name, _ in seq] == ["message_start", "content_block_start", "ping", "content_block_delta",
                                         "content_block_delta", "content_block_delta", "content_block_stop",
                                         "message_delta", "message_stop"]
    start = seq[0][1]["message"]
    assert start["role"] == "assistant" and start["model"] == "claude-test" and start["usage"]["input_tokens"] == 4
    assert seq[1][1]["content_block"] == {"type": "text", "text": ""}
    assert [d["delta"] for _, d in seq[3:6]] == [{"type": "text_delta", "text": f"t{i} "} for i in range(3)]
    assert seq[7][1]["delta"]["stop_reason"] == "max_tokens" and seq[7][1]["usage"] == {"output_tokens": 3}


def test_messages_errors_and_knobs(server):
    status, raw = post(server, "/v1/messages?error_rate=1&error_status=529", MESSAGE)
    assert status == 529 and json.loads(raw) == {"type": "error", "error": {
        "type": "overloaded_error", "message": "Injected failure (error_rate)."}}
    status, raw = post(server, "/v1/messages", {**MESSAGE, "messages": None})
    assert status == 400 and json.loads(raw)["type"] == "error"
    status, raw = post(server, "/v1/messages?ttft_ms=0&itl_ms=0&error_after=1", {**MESSAGE, "max_tokens": 5})
    seq = events(raw)
    assert [name for name, _ in seq][-2:] == ["content_block_delta", "error"]
    assert seq[-1][1]["error"]["type"] == "overloaded_error"
    status, raw = post(server, "/v1/messages?ttft_ms=0&itl_ms=0&tokens_per_chunk=2", {**MESSAGE, "max_tokens": 5})
    texts = [d["delta"]["text"] for name, d in events(raw) if name == "content_block_delta"]
    assert texts == ["t0 t1 ", "t2 t3 ", "t4 "]
    status, raw = post(server, "/v1/messages?itl_ms=slow", MESSAGE)
    assert status == 400 and "itl_ms" in json.loads(raw)["error"]["message"]
    status, raw = post(server, "/v1/messages", {**MESSAGE, "stream": False})
    answer = json.loads(raw)
    assert answer["content"] == [{"type": "text", "text": "t0 t1 t2 "}] and answer["usage"]["output_tokens"] == 3


def test_openai_batched_chunks_role_and_prompt_usage(server):
    body = {"stream": True, "max_tokens": 5, "ttft_ms": 0, "itl_ms": 0, "tokens_per_chunk": 2, "role_chunk": 0,
            "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "one two three"}]}
    status, raw = post(server, "/v1/chat/completions", body)
    chunks = [json.loads(b[6:]) for b in raw.decode().split("\n\n") if b.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"] and c["choices"][0]["delta"]]
    assert deltas == [{"role": "assistant", "content": "t0 t1 "}, {"content": "t2 t3 "}, {"content": "t4 "}]
    assert chunks[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    status, raw = post(server, "/v1/chat/completions", {**body, "error_after": 2, "tokens_per_chunk": 1})
    blocks = [b for b in raw.decode().split("\n\n") if b]
    assert json.loads(blocks[-2][6:])["error"]["type"] == "server_error" and blocks[-1] == "data: [DONE]"


def test_messages_endpoint_is_listed():
    assert "/v1/messages" in endpoint_paths(build_app())
