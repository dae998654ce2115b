"""Fixtures for every test. Engine tests talk to a real node; in CI a missing node fails the run.

The node under test is the one `OPENSEARCH_URL` (or `ELASTICSEARCH_URL`) points at, OpenSearch or Elasticsearch:
the engine is asked from the cluster, and tests marked `opensearch_only` / `elasticsearch_only` are deselected
(not skipped) on the other engine. CI runs the engine tests once against each engine and version it supports.

Tests use only what the repository holds, what the test command installs and data they generate
(tests/synthetic_corpus.py, tests/golden/): nothing from outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from splade_os.connection import ConnectionSettings
from splade_os.engines import Engine, engine_for
from splade_os.engines.clients import client_for

REPO = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = REPO / "models" / "splade-tiny"
IN_CI = os.environ.get("CI", "").lower() == "true"
# Loads keep their checkpoints and dead letters in a state folder (splade_os.indexing.state): in this session's own,
# never in the home folder; `splade-os` processes the tests start inherit it.
STATE_DIR = Path(tempfile.mkdtemp(prefix="splade-os-state-"))
os.environ["SPLADE_OS_STATE_DIR"] = str(STATE_DIR)


def unavailable(reason: str) -> None:
    """Fail in CI, where the node and every test dependency must be there; skip with the reason elsewhere."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def _wait_for_node() -> tuple[Any, Engine]:
    settings = ConnectionSettings.from_env()
    deadline = time.monotonic() + 60
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        client = client_for(settings)  # asks the engine again each round: the node may still be starting
        try:
            engine = engine_for(client)
            patient, timeout = engine.with_timeout(client, 40)
            patient.cluster.health(wait_for_status="yellow", **timeout)
            return client, engine
        except Exception as err:  # connection refused, timeout, red cluster: retry until the deadline
            last_error = err
            client.close()
            time.sleep(2)
    unavailable(
        f"no node at {', '.join(settings.urls)} ({type(last_error).__name__}); start one with `splade-os node start`"
    )
    raise AssertionError("unreachable")


_NODE: dict[str, Any] = {}


def node() -> tuple[Any, Engine]:
    """The client and engine of the node under test, made once per session."""
    if not _NODE:
        _NODE["client"], _NODE["engine"] = _wait_for_node()
    return _NODE["client"], _NODE["engine"]


@pytest.fixture(scope="session")
def engine_client() -> Any:
    """A client of the node under test (opensearch-py or the official Elasticsearch client)."""
    return node()[0]


@pytest.fixture(scope="session")
def engine(engine_client: Any) -> Engine:
    """The engine and version of the node under test."""
    return node()[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests written for the other engine; ask the node only when such a test was collected."""
    marked = [i for i in items if i.get_closest_marker("opensearch_only") or i.get_closest_marker("elasticsearch_only")]
    if not marked:
        return
    try:
        name = node()[1].name
    except BaseException:  # no node: leave them in, and their fixtures report the missing node
        return
    other = "elasticsearch_only" if name == "opensearch" else "opensearch_only"
    deselected = [i for i in items if i.get_closest_marker(other)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [i for i in items if not i.get_closest_marker(other)]


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _NODE:
        _NODE.pop("client").close()
    shutil.rmtree(STATE_DIR, ignore_errors=True)


def state_file(client: Any, alias: str, suffix: str) -> Path:
    """Where a load into `alias` keeps its `checkpoint.json` or `dead-letter.jsonl` unless told otherwise."""
    from splade_os.indexing.state import state_folder

    return state_folder(client, alias) / f"{alias}.{suffix}"


def delete_indices(client: Any, pattern: str) -> None:
    """Delete the indices matching `pattern` by name (Elasticsearch refuses wildcard deletes by default)."""
    names = list(client.indices.get(index=pattern, allow_no_indices=True, ignore_unavailable=True))
    if names:
        client.indices.delete(index=",".join(names), ignore_unavailable=True)


@pytest.fixture
def index_name(engine_client: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh index name for one test, deleted afterwards whatever happened."""
    name = f"test-{request.node.name.lower()[:40].strip('_-[]')}-{uuid.uuid4().hex[:8]}"
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
    yield name
    delete_indices(engine_client, f"{name}*")


@pytest.fixture(scope="module")
def serve_encoder() -> Iterator[Any]:
    """The bundled model, loaded once per test module (the serve tests compare the service with it)."""
    from splade_os.model.encoder import SpladeEncoder

    with SpladeEncoder(BUNDLED_MODEL) as encoder:
        yield encoder


@pytest.fixture(scope="module")
def serve_index(engine_client: Any, serve_encoder: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """The 42 demo documents in a fresh index for one test module, deleted afterwards."""
    from helpers import indexed_demo

    yield from indexed_demo(engine_client, serve_encoder, f"test-{request.module.__name__.replace('_', '-')}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI nothing may skip: a skip there (a missing node, model or torch) is turned into a failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"
