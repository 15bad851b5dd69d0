"""Two starts of one container (an agent killed mid-start and started again): Docker
refuses the second with "port is already allocated" while the first completes; the
runtime takes the container running as success, and a refusal that stays one fails."""

from __future__ import annotations

import pytest
from docker.errors import APIError

from remotegpu.adapters.runtime.docker_runtime import start_once_running


class Container:
    def __init__(self, running_after_reloads: int | None) -> None:
        self.status = "created"
        self._running_after = running_after_reloads
        self.reloads = 0

    def start(self) -> None:
        raise APIError("500 Server Error: Bind for 127.0.0.1:23111 failed: port is already allocated")

    def reload(self) -> None:
        self.reloads += 1
        if self._running_after is not None and self.reloads >= self._running_after:
            self.status = "running"


def test_a_start_racing_another_counts_once_the_container_runs():
    container = Container(running_after_reloads=3)
    start_once_running(container, wait_seconds=2, poll_seconds=0.001)
    assert container.status == "running" and container.reloads == 3


def test_a_refusal_that_stays_one_is_raised():
    container = Container(running_after_reloads=None)
    with pytest.raises(APIError, match="already allocated"):
        start_once_running(container, wait_seconds=0.05, poll_seconds=0.001)
    assert container.reloads >= 2
