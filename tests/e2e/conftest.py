import pytest

from tests.harness import Stack, load_bootstrap


@pytest.fixture(scope="module")
def mock_stack():
    """The stack `scripts/run` starts, from envoy/mock.yaml, on free ports."""
    stack = Stack(load_bootstrap("mock.yaml")).start()
    yield stack
    stack.stop()


@pytest.fixture(autouse=True)
def _fresh_mocks(request):
    """Each test starts with empty request logs and default behaviour on every mock."""
    for name in ("mock_stack", "stack"):
        if name in request.fixturenames:
            for mock in request.getfixturevalue(name).mocks.values():
                mock.reset()
    yield
