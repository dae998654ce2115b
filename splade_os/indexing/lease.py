"""One load per alias at a time: a lease held in the cluster while a load runs.

The lease is one document, id = the alias, in a small index beside the alias's versions (`ALIAS-lock`: the same
index patterns and privileges as the versions, see docs/security.md). It is created with `op_type=create`, so of two
loads that start together exactly one wins; the other reads who holds it and stops before it touches anything. The
holder renews it from a background thread (every third of its duration) and releases it at the end, on failure and
on Ctrl-C too; a holder that was killed leaves a lease that simply expires, and the next load may take it over, with
`break_lock`, only then, unless it ran on this very machine and process namespace and its process is gone (a crash
followed by `--resume`), or is this process's own earlier load that could not release it, when it is known to be
dead and is taken over at once. Every change after the first is conditional on the document's sequence number, so
two loads that both try to take over an expired lease cannot both win. Expiry is judged by the clocks of the
machines that run loads: keep them in sync (NTP) or the lease long.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from splade_os.engines.refusals import http_status
from splade_os.errors import LeaseHeldError

log = logging.getLogger(__name__)

LEASE_ENV = "SPLADE_OS_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 60.0
_MAPPING = {"dynamic": False, "properties": {"expires": {"type": "double"}, "released": {"type": "boolean"}}}


def lock_index(alias: str) -> str:
    """The index holding the lease of `alias`'s loads."""
    return f"{alias}-lock"


def lease_seconds() -> float:
    """How long a lease lasts without renewal: `$SPLADE_OS_LEASE_SECONDS`, else 60."""
    value = os.environ.get(LEASE_ENV)
    try:
        seconds = float(value) if value else DEFAULT_LEASE_SECONDS
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise LeaseHeldError(f"{LEASE_ENV}={value!r} is not a number of seconds above 0")
    return seconds


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def describe(holder: dict[str, Any]) -> str:
    return f"{holder.get('host')} pid {holder.get('pid')} (started {holder.get('started')})"


def _process_home() -> str | None:
    """Where a pid means one process: this boot of this kernel and this pid namespace (None where unknown)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


_LIVE_TOKENS: set[str] = set()  # the leases this process holds and renews now
_LIVE_LOCK = threading.Lock()


def _dead_here(holder: dict[str, Any]) -> bool:
    """Whether `holder` ran on this machine, in this pid namespace, and its process no longer exists, or is this
    process and no longer renews it (an earlier load here stopped, and could not release it)."""
    home = _process_home()
    if home is None or holder.get("home") != home or holder.get("host") != socket.gethostname():
        return False
    if holder.get("pid") == os.getpid():
        with _LIVE_LOCK:
            return holder.get("token") not in _LIVE_TOKENS
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError):
        return False  # alive under another user, or no pid: not provably dead
    return False


def _conflict(err: Exception) -> bool:
    return http_status(err) == 409


class Lease:
    """The lease of one load on `alias`; use `Lease.acquire`, and `release()` (or a `with` block) when done."""

    def __init__(self, client: Any, alias: str, seconds: float, holder: dict[str, Any], answer: Any) -> None:
        self.client, self.alias, self.seconds, self.holder = client, alias, seconds, holder
        self.index = lock_index(alias)
        self._version = (answer["_seq_no"], answer["_primary_term"])
        with _LIVE_LOCK:
            _LIVE_TOKENS.add(holder["token"])
        self.lost: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{alias}", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, client: Any, alias: str, *, break_lock: bool = False) -> Lease:
        """Take the lease of `alias`, or raise LeaseHeldError naming its holder (and, for a lease that expired,
        how to take it over: `break_lock`, which takes over only an expired lease)."""
        seconds = lease_seconds()
        index = lock_index(alias)
        if not client.indices.exists(index=index):
            body = {"settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1"}}, "mappings": _MAPPING}
            try:
                client.indices.create(index=index, body=body)
            except Exception as err:
                if "already_exists" not in str(err):  # another load created it meanwhile: fine
                    raise
        now = time.time()
        holder = {
            "alias": alias,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": _when(now),
            "expires": now + seconds,
            "released": False,
            "token": uuid.uuid4().hex,
            "home": _process_home(),
        }
        try:
            return cls(
                client,
                alias,
                seconds,
                holder,
                client.index(index=index, id=alias, body=holder, op_type="create", refresh=True),
            )
        except Exception as err:
            if not _conflict(err):
                raise
        found, version = cls._read(client, index, alias)
        dead = found is not None and not found.get("released") and _dead_here(found)
        if found is not None and not found.get("released") and not dead:
            expires = float(found.get("expires", 0))
            if expires > now:
                raise LeaseHeldError(
                    f"{alias!r} is being loaded by {describe(found)}, whose lease runs to {_when(expires)} and is "
                    f"renewed while it runs: wait for it to finish (if it was killed, the lease expires within "
                    f"{seconds:.0f} s, and then --break-lock takes it over)"
                )
            if not break_lock:
                raise LeaseHeldError(
                    f"{alias!r} was being loaded by {describe(found)}, whose lease expired at {_when(expires)} (it "
                    "was stopped or killed): pass --break-lock to take it over (resume its work with --resume)"
                )
        try:  # released, expired and broken, or gone: taken over only if nobody changed it since it was read
            conditions = {"if_seq_no": version[0], "if_primary_term": version[1]} if version else {"op_type": "create"}
            answer = client.index(index=index, id=alias, body=holder, refresh=True, **conditions)
        except Exception as err:
            if not _conflict(err):
                raise
            winner, _ = cls._read(client, index, alias)
            raise LeaseHeldError(
                f"{alias!r} is being loaded by {describe(winner or {})}, which took the lease at the same time: wait "
                "for it to finish"
            ) from None
        if dead and found is not None:
            log.warning("took over the lease of %s on %r: that process is no longer running", describe(found), alias)
        elif found is not None and not found.get("released"):
            log.warning("took over the expired lease of %s on %r", describe(found), alias)
        return cls(client, alias, seconds, holder, answer)

    @staticmethod
    def _read(client: Any, index: str, alias: str) -> tuple[dict[str, Any] | None, tuple[int, int] | None]:
        # A search, not a get: the privilege every indexer already has (docs/security.md).
        body = {"query": {"ids": {"values": [alias]}}, "size": 1, "seq_no_primary_term": True}
        hits = client.search(index=index, body=body)["hits"]["hits"]
        if not hits:
            return None, None
        return dict(hits[0]["_source"]), (int(hits[0]["_seq_no"]), int(hits[0]["_primary_term"]))

    def _write(self, **changes: Any) -> None:
        with self._lock:
            body = {**self.holder, **changes}
            answer = self.client.index(
                index=self.index,
                id=self.alias,
                body=body,
                refresh=True,
                if_seq_no=self._version[0],
                if_primary_term=self._version[1],
            )
            self.holder, self._version = body, (answer["_seq_no"], answer["_primary_term"])

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self._write(expires=time.time() + self.seconds)
            except Exception as err:
                if _conflict(err):
                    try:
                        winner, _ = self._read(self.client, self.index, self.alias)
                    except Exception:
                        winner = None
                    self.lost = describe(winner) if winner else "another load"
                    log.error("the lease on %r was taken over by %s", self.alias, self.lost)
                    return
                log.warning(
                    "could not renew the lease on %r (retried in %.0f s): %s", self.alias, self.seconds / 3, err
                )

    def confirm(self) -> None:
        """Raise LeaseHeldError when another load took the lease over (this one was thought dead): it must not move
        the alias."""
        if self.lost:
            raise LeaseHeldError(
                f"the lease on {self.alias!r} was taken over by {self.lost} while this load ran (it could not renew "
                "it in time): the alias was not moved"
            )

    def release(self) -> None:
        """Stop renewing and mark the lease released (best effort: an unreleased lease expires on its own)."""
        self._stop.set()
        self._thread.join()
        with _LIVE_LOCK:
            _LIVE_TOKENS.discard(self.holder["token"])
        if self.lost:
            return
        try:
            self._write(expires=0.0, released=True)
        except Exception as err:
            log.warning(
                "could not release the lease on %r (it expires within %.0f s): %s", self.alias, self.seconds, err
            )

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
