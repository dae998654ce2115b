"""One `Searcher` per index the service is asked about, sharing one client and the batched query encoder.

The client is made on first need, not at start: a service whose cluster is down still encodes, answers 503 to
searches with the reason, and connects once the cluster answers. A searcher is kept once it was made; one that
failed to be made is not, so the next request tries again.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from splade_os.connection import ConnectionSettings
from splade_os.engines import engine_for
from splade_os.engines.clients import connect
from splade_os.errors import EngineError
from splade_os.mappings import check_encoder_meta, meta_from_mapping
from splade_os.retrieval.search import Searcher
from splade_os.serve.encoding import QueriesThroughBatcher
from splade_os.serve.errors import Refusal, refusal_for, unavailable


class Searchers:
    """The searchers of one service (thread-safe: searches run on worker threads)."""

    def __init__(self, settings: ConnectionSettings, encoder: QueriesThroughBatcher, *, threads: int) -> None:
        # Every search thread may hold a connection at once.
        self.settings = replace(settings, pool_maxsize=max(settings.pool_maxsize, threads))
        self.encoder = encoder
        self._client: Any = None
        self._searchers: dict[str, Searcher] = {}
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return ", ".join(self.settings.urls) if not self.settings.cloud_id else "Elastic Cloud"

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = connect(self.settings)
                except EngineError as err:
                    raise unavailable(str(err)) from None
            return self._client

    def get(self, index: str) -> Searcher:
        with self._lock:
            searcher = self._searchers.get(index)
        if searcher is not None:
            return searcher
        client = self.client()
        try:
            if not client.indices.exists(index=index):
                raise Refusal(404, f"index {index!r} does not exist: give an index that splade-os built", "NotFound")
            searcher = Searcher(index, self.encoder, client=client)
        except Exception as err:
            refusal = refusal_for(err, self.where)
            if refusal is None:
                raise
            raise refusal from None
        with self._lock:
            return self._searchers.setdefault(index, searcher)

    def health(self, index: str | None) -> dict[str, Any]:
        """Whether the cluster answers and, for `index`, whether it exists and was built by this model."""
        report: dict[str, Any] = {"cluster": {"url": self.where, "reachable": False}}
        try:
            client = self.client()
            engine = engine_for(client)
            report["cluster"].update(reachable=True, engine=engine.label)
            if index is None:
                return report
            entry: dict[str, Any] = {"name": index, "exists": bool(client.indices.exists(index=index))}
            report["index"] = entry
            if entry["exists"]:
                meta = meta_from_mapping(client.indices.get_mapping(index=index))
                try:
                    check_encoder_meta(index, meta, self.encoder.manifest)
                    entry["encoder_matches"] = True
                except Exception as err:
                    entry.update(encoder_matches=False, error=str(err))
        except Exception as err:
            refusal = refusal_for(err, self.where)
            report["cluster"]["error"] = refusal.message if refusal else type(err).__name__
            if refusal is None or refusal.status != 503:
                report["cluster"]["reachable"] = True
        return report

    def close(self) -> None:
        with self._lock:
            searchers, self._searchers = list(self._searchers.values()), {}
            client, self._client = self._client, None
        for searcher in searchers:
            searcher.close()  # the encoder and client are the service's: closes nothing of theirs
        if client is not None:
            client.close()
