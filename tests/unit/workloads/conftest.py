from tests.unit.environments.conftest import FakeHost, World, world  # noqa: F401 - the same in-memory world
