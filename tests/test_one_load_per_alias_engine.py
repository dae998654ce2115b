"""One load per alias at a time, on a real node: a second load fails fast naming the one that holds the alias's
lease, from the same folder or another, by `index`, `index --from-index`, `reindex` and `index --ray`; a killed
holder's lease expires, and only then does `--break-lock` take it over.

The first load reads its corpus from a pipe the test holds open: it has taken the lease and created its index, and
stays in the middle of its run for as long as the test needs, with no timing involved.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import BUNDLED_MODEL, REPO
from synthetic_corpus import DEMO_CORPUS

from splade_os import aliases
from splade_os.cli import main
from splade_os.connection import ConnectionSettings
from splade_os.engines.refusals import http_status
from splade_os.errors import LeaseHeldError
from splade_os.indexing import LoadOptions
from splade_os.indexing.lease import LEASE_ENV, Lease, lock_index

pytestmark = pytest.mark.engine

HOST = socket.gethostname()


def _holder(client: Any, alias: str) -> dict[str, Any] | None:
    """The lease document of `alias`; None until its lock index exists and answers (a load may be creating it)."""
    try:
        return Lease._read(client, lock_index(alias), alias)[0]
    except Exception as err:
        if http_status(err) not in (404, 503):
            raise
        return None


@contextmanager
def started_load(client: Any, alias: str, folder: Path) -> Iterator[subprocess.Popen[str]]:
    """A load into `alias` from stdin, started in `folder`, holding the lease until its input ends (or it is
    killed); the lease lasts `$SPLADE_OS_LEASE_SECONDS`."""
    folder.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "splade_os",
            "index",
            "-",
            "--index",
            alias,
            "--model",
            str(BUNDLED_MODEL),
            "--replicas",
            "0",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=folder,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while (held := _holder(client, alias)) is None or held.get("pid") != proc.pid:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the first load never took the lease"
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture
def first_load(engine_client: Any, index_name: str, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    with started_load(engine_client, index_name, tmp_path / "first") as proc:
        yield proc


def _second(folder: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    folder.mkdir(exist_ok=True)
    monkeypatch.chdir(folder)
    return CliRunner().invoke(main, [*args, "--model", str(BUNDLED_MODEL), "--replicas", "0"])


def test_a_second_load_fails_fast_naming_the_holder_from_any_folder(
    engine_client: Any,
    index_name: str,
    first_load: subprocess.Popen[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = f"{index_name!r} is being loaded by {HOST} pid {first_load.pid} (started "
    attempts = {
        "same folder": (tmp_path / "first", ["index", str(DEMO_CORPUS), "--index", index_name]),
        "same folder, --resume": (tmp_path / "first", ["index", str(DEMO_CORPUS), "--index", index_name, "--resume"]),
        "other folder": (tmp_path / "other", ["index", str(DEMO_CORPUS), "--index", index_name, "--recreate"]),
        "--break-lock on a live lease": (
            tmp_path / "other",
            ["index", str(DEMO_CORPUS), "--index", index_name, "--break-lock"],
        ),
        "--from-index": (
            tmp_path / "other",
            ["index", "--from-index", index_name, "--index", index_name, "--recreate"],
        ),
        "reindex": (tmp_path / "other", ["reindex", index_name, "--from-index"]),
    }
    for what, (folder, args) in attempts.items():
        result = _second(folder, monkeypatch, *args)
        assert result.exit_code == 1, (what, result.output)
        line = result.output.strip()
        assert line.startswith(f"Error: {held}") and "wait for it to finish" in line, (what, line)
        assert "\n" not in line, (what, result.output)
    assert aliases.versions(engine_client, index_name) == [f"{index_name}-v1"]  # nothing built beside it
    assert not list((tmp_path / "other").iterdir())  # no checkpoint, no dead letters
    out, _ = first_load.communicate(DEMO_CORPUS.read_text(encoding="utf-8"), timeout=300)
    assert first_load.returncode == 0, out
    assert f"verified: {index_name}-v1 holds 42 documents" in out
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v1"]
    released = _holder(engine_client, index_name)
    assert released is not None and released["released"] is True


def test_a_ray_load_takes_the_lease_in_its_driver(
    engine_client: Any, index_name: str, first_load: subprocess.Popen[str]
) -> None:
    pytest.importorskip("ray")
    from splade_os.indexing import SpladeRecipe, index_corpus_on_ray

    with pytest.raises(LeaseHeldError, match=f"is being loaded by {HOST} pid {first_load.pid} "):
        index_corpus_on_ray(
            ConnectionSettings.from_env(),
            DEMO_CORPUS,
            index=index_name,
            recipe=SpladeRecipe(str(BUNDLED_MODEL)),
            load=LoadOptions(replicas=0),
        )
    assert aliases.versions(engine_client, index_name) == [f"{index_name}-v1"]


def test_a_load_killed_on_this_machine_is_taken_over_at_once(
    engine_client: Any, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its process is provably gone (same boot, same pid namespace): a crash followed by --resume needs no wait.
    with started_load(engine_client, index_name, tmp_path / "first") as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    held = _holder(engine_client, index_name)
    assert held is not None and held["released"] is False and float(held["expires"]) > time.time()
    # It left a checkpoint of its stdin input: this load starts over, with no --break-lock and no wait.
    taken = _second(tmp_path / "next", monkeypatch, "index", str(DEMO_CORPUS), "--index", index_name, "--recreate")
    assert taken.exit_code == 0, taken.output
    (now,) = aliases.resolve(engine_client, index_name)
    assert f"verified: {now} holds 42 documents" in taken.output
    assert _holder(engine_client, index_name)["released"] is True  # type: ignore[index]


def test_a_killed_holder_s_lease_expires_and_only_then_break_lock_takes_it_over(
    engine_client: Any, index_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LEASE_ENV, "3")
    with started_load(engine_client, index_name, tmp_path / "first") as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # As a load killed on another machine leaves it: nothing here can tell whether its process still runs.
    engine_client.update(
        index=lock_index(index_name), id=index_name, body={"doc": {"home": "another-machine"}}, refresh=True
    )
    held = _holder(engine_client, index_name)
    assert held is not None and held["released"] is False
    while time.time() <= float(held["expires"]) + 0.5:  # the lease outlives its holder until it expires
        time.sleep(0.2)
    refused = _second(tmp_path / "next", monkeypatch, "index", str(DEMO_CORPUS), "--index", index_name)
    assert refused.exit_code == 1
    assert refused.output.strip().startswith(
        f"Error: {index_name!r} was being loaded by {HOST} pid {proc.pid} (started {held['started']}), whose lease "
        "expired at "
    ) and refused.output.strip().endswith(
        "(it was stopped or killed): pass --break-lock to take it over (resume its work with --resume)"
    ), refused.output
    # Whether the killed load left a checkpoint (of its stdin) depends on when it died: start over either way.
    taken = _second(
        tmp_path / "next", monkeypatch, "index", str(DEMO_CORPUS), "--index", index_name, "--break-lock", "--recreate"
    )
    assert taken.exit_code == 0, taken.output
    (now,) = aliases.resolve(engine_client, index_name)  # v1, or v2 when the killed load had created v1
    assert f"verified: {now} holds 42 documents" in taken.output
    assert _holder(engine_client, index_name)["released"] is True  # type: ignore[index]
