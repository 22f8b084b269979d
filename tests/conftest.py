"""Suite-wide guard for Swift: importing it loads eventlet, whose process-wide side effects made
an unrelated test hang (an HTTP server thread set up earlier never answered). Tests that need
Swift in-process are marked `swift`: they run last, and `make test` runs them in a pytest
process of their own. Any other test that loads eventlet fails here, loudly, instead."""

import sys

import pytest


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.get_closest_marker("swift") is not None)


@pytest.fixture(autouse=True)
def _keep_eventlet_out_of_the_shared_process(request):
    loaded_before = "eventlet" in sys.modules
    yield
    if (not loaded_before and "eventlet" in sys.modules
            and request.node.get_closest_marker("swift") is None):
        pytest.fail("this test imported Swift (eventlet) into the shared test process: mark it "
                    "`swift`, or run Swift in a subprocess as the modules do", pytrace=False)
