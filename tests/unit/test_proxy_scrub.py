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


def test_upstream_set_cookie_with_a_domain_or_a_platform_name_is_dropped():
    """What the container's owner serves sets cookies for its own host only: none for
    the apps domain (siblings, the console's site), none named like the platform's."""
    from multidict import CIMultiDict

    from remotegpu.entrypoints.http.proxy import _response_headers

    upstream = CIMultiDict([
        ("Set-Cookie", "_xsrf=abc; Path=/"),
        ("Set-Cookie", "username-x=1; Path=/; HttpOnly"),
        ("Set-Cookie", "evil=1; Domain=localhost; Path=/"),
        ("Set-Cookie", "evil2=1; path=/; domain=.example.com"),
        ("Set-Cookie", "rgpu_app=forged; Path=/"),
        ("Set-Cookie", "__Host-rgpu_app=forged; Path=/; Secure"),
        ("Set-Cookie", "rgpu_session=forged; Path=/"),
        ("Set-Cookie", "__Secure-rgpu_refresh=forged; Path=/api/v1/auth/session; Secure"),
        ("Set-Cookie", "leak=tok; Path=/"),
        ("Content-Type", "text/html"),
    ])
    out = _response_headers(upstream, "tok", {"Set-Cookie": "rgpu_app=renewed; Path=/; HttpOnly"})
    assert out.getall("Set-Cookie") == ["_xsrf=abc; Path=/", "username-x=1; Path=/; HttpOnly", "leak=***; Path=/",
                                        "rgpu_app=renewed; Path=/; HttpOnly"]
    assert out["Content-Type"] == "text/html"
