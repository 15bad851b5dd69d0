"""The proxy masks the Jupyter token in streamed bodies, however the chunks fall, and
holds nothing back when a chunk cannot end inside a token (no copy in the common case)."""

from __future__ import annotations

import os
import random

from remotegpu.entrypoints.http.proxy import _scrub_stream

TOKEN = b"3f9c0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5"


def stream(body: bytes, cuts: list[int]) -> bytes:
    out, tail, last = [], b"", 0
    for cut in [*cuts, len(body)]:
        chunk = body[last:cut]
        last = cut
        sent, tail = _scrub_stream(tail + chunk if tail else chunk, TOKEN)
        out.append(sent)
    return b"".join(out) + tail


def test_tokens_are_masked_wherever_the_chunks_split_them():
    rng = random.Random(7)
    for _ in range(300):
        parts = [os.urandom(rng.randrange(0, 200)) for _ in range(4)]
        body = parts[0] + TOKEN + parts[1] + TOKEN[:10] + parts[2] + TOKEN + parts[3]
        cuts = sorted(rng.sample(range(1, len(body)), rng.randrange(0, 12)))
        out = stream(body, cuts)
        assert len(out) == len(body)
        assert TOKEN not in out and out.count(b"*" * len(TOKEN)) >= 2
        assert out == body.replace(TOKEN, b"*" * len(TOKEN))


def test_a_chunk_that_cannot_end_in_a_token_is_passed_whole():
    data = b"x" * 100_000
    sent, tail = _scrub_stream(data, TOKEN)
    assert sent is data and tail == b""
    sent, tail = _scrub_stream(data + TOKEN[:5], TOKEN)
    assert sent == data and tail == TOKEN[:5]
