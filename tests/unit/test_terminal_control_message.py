"""A terminal websocket's control messages are small JSON objects; absurd nesting is
just not one (it used to raise RecursionError out of the session)."""

from remotegpu.entrypoints.http.handlers.terminal import _control


def test_deeply_nested_text_is_no_control_message():
    deep = '{"type": ' + "[" * 200_000 + "]" * 200_000 + "}"
    assert _control(deep) is None
    assert _control('{"type": "resize", "cols": 80, "rows": 24}') == {"type": "resize", "cols": 80, "rows": 24}
