"""Fixtures for every test. Engine tests talk to a real OpenSearch node; in CI a missing node fails the run.

Tests use only what the repository holds, what the test command installs and data they generate
(tests/synthetic_corpus.py, tests/golden/): nothing from outside the checkout.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from splade_os.connection import ConnectionSettings

REPO = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = REPO / "models" / "splade-tiny"
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """Fail in CI, where the node and every test dependency must be there; skip with the reason elsewhere."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def os_client() -> Iterator[OpenSearch]:
    settings = ConnectionSettings.from_env()
    client = settings.client()
    deadline = time.monotonic() + 60
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            client.cluster.health(wait_for_status="yellow", request_timeout=40)
            break
        except Exception as err:  # connection refused, timeout, red cluster: retry until the deadline
            last_error = err
            time.sleep(2)
    else:
        unavailable(
            f"no OpenSearch node at {', '.join(settings.urls)} ({type(last_error).__name__}); "
            "start one with `splade-os node start`"
        )
    yield client
    client.close()


@pytest.fixture
def index_name(os_client: OpenSearch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh index name for one test, deleted afterwards whatever happened."""
    name = f"test-{request.node.name.lower()[:40].strip('_-[]')}-{uuid.uuid4().hex[:8]}"
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    yield name
    os_client.indices.delete(index=f"{name}*", ignore_unavailable=True, allow_no_indices=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI nothing may skip: a skip there (a missing node, model or torch) is turned into a failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"
