"""``env_out`` builds the API's environment without validation (the hot list): the values
it takes from the domain must be exactly what the schema would have validated."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone

import pytest

from remotegpu.application.environments.service import EnvironmentView
from remotegpu.domain.environments.models import Desired, Environment, EnvStatus, HostPort
from remotegpu.domain.fleet.models import parse_fake_gpus
from remotegpu.entrypoints.http.handlers.environments import env_out
from remotegpu.entrypoints.http.schemas.environments import EnvironmentOut

T = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _view(**kw) -> EnvironmentView:
    env = Environment(
        id="e1", name="train", workspace_id="w1", owner_id="u1", image="img:1", gpu_count=2, gpu_model="NVIDIA L4",
        cpu_cores=4, memory_gib=16, created_at=T, updated_at=T, status=EnvStatus.RUNNING, desired=Desired.RUNNING,
        env={"A": "1"}, host_id="h1", started_at=T, stop_after_minutes=60, shared=True, status_message="ok", **kw,
    )
    gpus = parse_fake_gpus("2xNVIDIA L4", seed="x")
    return EnvironmentView(env, None, [HostPort("h1", 40022, "ssh", "e1")], None, gpus, host_name="gpu-01")


@pytest.mark.parametrize("view", [
    _view(),
    EnvironmentView(Environment(id="e2", name="q", workspace_id="w1", owner_id="u1", image="i", gpu_count=0,
                                gpu_model=None, cpu_cores=1, memory_gib=1, created_at=T, updated_at=T), 3, [], None),
])
def test_env_out_is_what_validation_would_give(view):
    out = env_out(view)
    assert out.model_fields_set == set(EnvironmentOut.model_fields)  # nothing left to a default
    validated = EnvironmentOut.model_validate(out.model_dump())
    assert validated == out
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic warns when a value is not of its field's type
        assert out.model_dump_json() == validated.model_dump_json()


T_MICRO = datetime(2026, 3, 1, 12, 0, 5, 123456, tzinfo=timezone.utc)


@pytest.mark.parametrize("view", [
    _view(),
    _view(secret_env={"TOKEN": "sealed", "A_KEY": "sealed"}, queued_at=T_MICRO),
    EnvironmentView(Environment(id="e2", name="q", workspace_id="w1", owner_id="u1", image="i", gpu_count=0,
                                gpu_model=None, cpu_cores=1, memory_gib=1, created_at=T_MICRO, updated_at=T), 3, [], None),
    EnvironmentView(Environment(id="e3", name="n", workspace_id="w1", owner_id="u1", image="i", gpu_count=1,
                                gpu_model="X", cpu_cores=1, memory_gib=1, created_at=T.replace(tzinfo=None), updated_at=T,
                                env={"Z": "1", "B": "ü"}, status=EnvStatus.STOPPED, desired=Desired.STOPPED), None, [], None),
])
@pytest.mark.parametrize("manageable", [True, False])
def test_fast_json_is_byte_for_byte_what_the_schema_writes(view, manageable):
    """The list and detail answer from ``env_fields`` through orjson: the same bytes as
    the validated schema (field order, datetimes with ``Z``, enums, hidden values)."""
    from dataclasses import replace

    from remotegpu.entrypoints.http.handlers.environments import env_fields, fast_json

    view = replace(view, manageable=manageable)
    expected = env_out(view).model_dump_json().encode()
    assert fast_json(env_fields(view)).body == expected
    assert EnvironmentOut.model_validate_json(fast_json(env_fields(view)).body) == EnvironmentOut.model_validate_json(expected)


def test_fast_json_of_events_is_what_the_schema_writes():
    from remotegpu.entrypoints.http.handlers.environments import fast_json
    from remotegpu.entrypoints.http.schemas.common import Page
    from remotegpu.entrypoints.http.schemas.environments import EnvironmentEventOut

    rows = [{"at": T_MICRO, "from_status": None, "to_status": "queued", "reason": "created"},
            {"at": T, "from_status": "queued", "to_status": "starting", "reason": "placed — “ok”"}]
    expected = Page[EnvironmentEventOut](items=[EnvironmentEventOut(**r) for r in rows], total=7).model_dump_json().encode()
    assert fast_json({"items": rows, "total": 7}).body == expected


def test_fragments_are_kept_per_environment_object_and_viewer_class():
    """The list serialises each shared environment object once per "values shown or not";
    another object (a newer read) is serialised afresh, whatever its id."""
    from dataclasses import replace

    from remotegpu.entrypoints.http.handlers.environments import _Fragments, env_fields

    fragments = _Fragments(max_entries=2)
    view = _view()
    shown, hidden = replace(view, manageable=True), replace(view, manageable=False)
    assert fragments.of(shown) == env_out(shown).model_dump_json().encode()
    assert fragments.of(hidden) == env_out(hidden).model_dump_json().encode() != fragments.of(shown)
    assert fragments.of(shown) is fragments.of(shown)  # kept
    newer = replace(shown, env=replace(view.env, name="renamed"))
    assert b'"name":"renamed"' in fragments.of(newer)
    assert fragments.of(newer) == env_out(newer).model_dump_json().encode()
    assert env_fields(newer)["name"] == "renamed"
