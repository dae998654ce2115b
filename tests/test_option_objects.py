"""Settings objects are what the calls take: `EncoderSettings` written to an index's `_meta` and read back,
`SearchOptions` and `LoadOptions` checked on creation, the keyword forms of earlier versions still working with a
`KeywordFormWarning` (which fails any other test: see pyproject.toml), and both searchers opening an index through
one setup, a least-privilege user's refusals included."""

from __future__ import annotations

import ast
import asyncio
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from conftest import BUNDLED_MODEL, REPO
from opensearchpy.exceptions import AuthorizationException
from synthetic_corpus import DEMO_CORPUS

from splade_os import ConnectionSettings, LoadOptions, SearchOptions
from splade_os.engines import OpenSearchEngine
from splade_os.errors import ConfigError, KeywordFormWarning
from splade_os.indexing import BulkOptions, index_corpus
from splade_os.indexing.block_worker import SpladeRecipe
from splade_os.indexing.reindex import reindex
from splade_os.indexing.target import document_pruning, encoding_settings
from splade_os.integrations.searchers import Searchers
from splade_os.mappings import index_body, read_index_meta
from splade_os.model.encoder import SpladeEncoder
from splade_os.model.settings import EncoderSettings
from splade_os.retrieval.opening import async_open_index, open_index
from splade_os.retrieval.query import DEFAULT_MAX_CLAUSES, Pruning
from splade_os.retrieval.search import AsyncSearcher, Searcher, _SearchLogic
from splade_os.retrieval.two_phase import DEFAULT_MAX_RESCORE_WINDOW, TwoPhaseSettings
from splade_os.vectors import SparseVector

OPENSEARCH = OpenSearchEngine()
MANIFEST = {"name": "tiny", "sha256": "a" * 64, "max_length": 512}


# -- EncoderSettings in `_meta` ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "recorded"),
    [
        (EncoderSettings(), {"max_length": 512, "long_documents": "truncate"}),
        (EncoderSettings(max_length=16), {"max_length": 16, "long_documents": "truncate"}),
        (
            EncoderSettings(max_length=16, long_documents="split", stride=4),
            {"max_length": 16, "long_documents": "split", "stride": 4},
        ),
    ],
)
def test_the_encoding_meta_is_written_as_before_and_read_back(settings: EncoderSettings, recorded: Any) -> None:
    assert settings.to_meta(512) == recorded  # the keys and values indices already hold
    back = EncoderSettings.from_meta(recorded)
    assert back is not None and back.to_meta() == recorded


def test_an_encoder_without_settings_records_its_models_length() -> None:
    class Fake:
        manifest = MANIFEST

    assert encoding_settings(Fake()) == {"max_length": 512, "long_documents": "truncate"}
    assert document_pruning(Fake()) == {}
    Fake.manifest = {"name": "fake"}  # a manifest without a length: nothing recorded
    assert encoding_settings(Fake()) == {}


def test_a_ray_recipe_records_its_own_settings() -> None:
    recipe = SpladeRecipe(BUNDLED_MODEL, EncoderSettings(max_length=32, top_k=20, min_weight=0.1))
    assert encoding_settings(recipe) == {"max_length": 32, "long_documents": "truncate"}
    assert document_pruning(recipe) == {"top_k": 20, "min_weight": 0.1}


def test_old_and_foreign_encoding_records_are_read_as_far_as_they_go() -> None:
    assert EncoderSettings.from_meta(None) is None and EncoderSettings.from_meta({}) is None
    assert EncoderSettings.from_meta({"max_length": True, "long_documents": "cut"}) is None
    partial = EncoderSettings.from_meta({"max_length": 16, "stride": "wide"})
    assert partial is not None and (partial.max_length, partial.long_documents) == (16, "truncate")
    own_length = EncoderSettings.from_meta({"long_documents": "split", "stride": 8})
    assert own_length is not None and own_length.max_length is None and own_length.stride == 8


def test_an_explanation_cuts_with_the_recorded_settings() -> None:
    text = " ".join(f"word{i}" for i in range(200))
    with SpladeEncoder(BUNDLED_MODEL) as encoder, SpladeEncoder(BUNDLED_MODEL, max_length=32) as cut:
        recorded = EncoderSettings.from_meta({"max_length": 32, "long_documents": "truncate"})
        assert encoder.encode_documents([text], settings=recorded) == cut.encode_documents([text])
        assert encoder.encode_documents([text], max_length=32) == cut.encode_documents([text])
        with pytest.raises(ConfigError, match="not both"):
            encoder.encode_documents([text], settings=recorded, max_length=32)


# -- SearchOptions ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"field_name": ""}, "field_name must name the vector field"),
        ({"pruning": {"top_k": 4}}, "pruning must be a Pruning"),
        ({"hybrid": "rrf"}, "hybrid must be a HybridParams"),
        ({"two_phase": {"ratio": 0.5}}, "two_phase must be a TwoPhaseSettings"),
        ({"two_phase_ratio": 2.0}, r"the two-phase ratio must be in \(0, 1\]"),
        ({"two_phase_ratio": 0.5, "two_phase": TwoPhaseSettings()}, "not both"),
        ({"bm25_fields": "text"}, "bm25_fields must list the text fields"),
        ({"bm25_fields": ()}, "bm25_fields must list the text fields"),
    ],
)
def test_search_options_are_checked_in_one_line(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        SearchOptions(**given)
    assert "\n" not in str(refused.value)


def test_search_options_fill_their_defaults() -> None:
    options = SearchOptions(pruning=None, bm25_fields=["headline", "body"])  # type: ignore[arg-type]
    assert options.pruning == Pruning() and options.bm25_fields == ("headline", "body")
    assert options.given_two_phase is None
    assert SearchOptions(two_phase_ratio=0.4).given_two_phase == TwoPhaseSettings(ratio=0.4)


# -- The keyword forms ----------------------------------------------------------------------------------------------


def test_the_keyword_form_fails_any_other_test() -> None:
    with pytest.raises(KeywordFormWarning):
        LoadOptions.of_call("index_corpus", None, {"replicas": 0})


def test_the_keyword_form_of_a_load_warns_where_it_is_called_and_gives_the_same_options() -> None:
    with pytest.warns(KeywordFormWarning) as caught:
        opts = LoadOptions.of_call("index_corpus", None, {"replicas": 0, "options": BulkOptions(batch_size=8)})
    assert opts == LoadOptions(replicas=0, bulk=BulkOptions(batch_size=8))
    (warning,) = caught
    assert str(warning.message) == (
        "index_corpus(options=, replicas=) is deprecated and goes in a later release: pass load=LoadOptions(...) "
        "(options= is its bulk=)"
    )
    assert warning.filename == __file__
    with pytest.raises(ConfigError, match=r"not both \(replicas\)"):
        LoadOptions.of_call("index_corpus", LoadOptions(), {"replicas": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no keyword, no warning
        assert LoadOptions.of_call("reencode_index", None, {}, recreate=True) == LoadOptions(recreate=True)


LOADS = {"index_corpus", "reencode_index", "index_corpus_on_ray", "reindex"}
SEARCHERS = {"Searcher", "create"}


def _keyword_forms(path: Path) -> list[str]:
    """The calls in `path` that give an entry point the fields of its options object as keywords."""
    load_fields = {f.name for f in fields(LoadOptions)} | {"options", "keep_previous"}
    search_fields = {f.name for f in fields(SearchOptions)}
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        given = {k.arg for k in node.keywords if k.arg}
        loose = given & load_fields if name in LOADS else given & search_fields if name in SEARCHERS else set()
        if loose:
            keywords = ", ".join(f"{k}=" for k in sorted(loose))
            found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}({keywords})")
    return found


def test_no_test_or_benchmark_uses_a_keyword_form() -> None:
    # Tests fail on the warning too (pyproject.toml); benchmarks run outside pytest, so they are read here.
    found = [
        call
        for folder in ("tests", "benchmarks")
        for path in sorted((REPO / folder).glob("*.py"))
        if path.name != "test_option_objects.py"
        for call in _keyword_forms(path)
    ]
    assert not found, "pass load=LoadOptions(...) or options=SearchOptions(...):\n" + "\n".join(found)


def test_the_keyword_form_of_a_recipe_warns() -> None:
    with pytest.deprecated_call(match=r"SpladeRecipe\(threads=\) is deprecated"):
        recipe = SpladeRecipe(BUNDLED_MODEL, threads=2)
    assert recipe.settings == EncoderSettings(threads=2)


@pytest.mark.engine
def test_the_keyword_forms_of_loads_and_searchers_still_work(
    engine_client: Any, index_name: str, tmp_path: Path
) -> None:
    with SpladeEncoder(BUNDLED_MODEL) as encoder:
        with pytest.warns(KeywordFormWarning, match=r"index_corpus\(dead_letter=, replicas=\)") as caught:
            summary = index_corpus(
                engine_client,
                DEMO_CORPUS,
                index=index_name,
                encoder=encoder,
                replicas=0,
                dead_letter=tmp_path / "d.jsonl",
            )
        assert summary.problems() == [] and caught[0].filename == __file__
        with pytest.warns(KeywordFormWarning, match=r"reindex\(delete_previous=, replicas=\)"):
            result = reindex(engine_client, index_name, encoder, replicas=0, keep_previous=False)
        assert result.swapped and result.deleted == (f"{index_name}-v1",)

        with pytest.warns(KeywordFormWarning, match=r"Searcher\(bm25_fields=\).*options=SearchOptions"):
            by_keyword = Searcher(index_name, encoder, client=engine_client, bm25_fields=("title",))
        by_options = Searcher(index_name, encoder, client=engine_client, options=SearchOptions(bm25_fields=("title",)))
        assert by_keyword.logic.bm25_fields == by_options.logic.bm25_fields == ("title",)
        hits = [[h.id for h in s.search("heart attack", mode="bm25").hits] for s in (by_keyword, by_options)]
        assert hits[0] == hits[1] and hits[0]
        with pytest.raises(ConfigError, match="not both"):
            Searcher(index_name, encoder, client=engine_client, options=SearchOptions(), two_phase_ratio=0.5)

        async def create() -> tuple[str, ...]:
            with pytest.warns(KeywordFormWarning, match=r"AsyncSearcher.create\(bm25_fields=\)"):
                searcher = await AsyncSearcher.create(index_name, encoder, bm25_fields=("title",))
            async with searcher:
                return searcher.logic.bm25_fields

        assert asyncio.run(create()) == ("title",)
    assert read_index_meta(engine_client, index_name)["encoding"] == {"max_length": 512, "long_documents": "truncate"}

    from splade_os.integrations import langchain

    settings = ConnectionSettings.from_env()
    with pytest.warns(KeywordFormWarning, match=r"SpladeRetriever.from_index\(search_options=\) .* instead of a dict"):
        retriever = langchain.SpladeRetriever.from_index(
            index_name, BUNDLED_MODEL, settings=settings, search_options={"bm25_fields": ("title",)}
        )
    try:
        assert retriever._searchers.logic.bm25_fields == ("title",)
    finally:
        retriever.close()
    with pytest.warns(KeywordFormWarning, match=r"Searchers.build\(bm25_fields=\)"):
        built = Searchers.build(index_name, BUNDLED_MODEL, settings=settings, bm25_fields=("title",))
    built.close()


# -- One opening for both searchers ----------------------------------------------------------------------------------


class _Encoder:
    manifest = MANIFEST

    def encode_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        return [SparseVector({"heart": 1.0}) for _ in texts]


def _refused(*args: Any, **kwargs: Any) -> Any:
    raise AuthorizationException(403, "security_exception", {"error": "no permissions"})


class _Indices:
    def __init__(self, requests: list[str]) -> None:
        self.requests = requests

    def exists(self, index: str) -> bool:
        self.requests.append("exists")
        return True

    def get_mapping(self, index: str) -> dict[str, Any]:
        self.requests.append("get_mapping")
        body = index_body(
            engine=OPENSEARCH, manifest=MANIFEST, encoding={"max_length": 64, "long_documents": "split", "stride": 8}
        )
        return {f"{index}-v1": {"mappings": body["mappings"]}}

    def get_settings(self, **kwargs: Any) -> Any:
        self.requests.append("get_settings")
        return _refused()


class _Cluster:
    def __init__(self, requests: list[str]) -> None:
        self.requests = requests

    def get_settings(self, **kwargs: Any) -> Any:
        self.requests.append("cluster.get_settings")
        return _refused()


class _SyncClient:
    """A searcher's view of a cluster whose user may read its index but not cluster or index settings."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.indices, self.cluster = _Indices(self.requests), _Cluster(self.requests)


class _AsyncClient:
    def __init__(self) -> None:
        self.sync = _SyncClient()
        self.requests = self.sync.requests
        self.indices = _Async(self.sync.indices)
        self.cluster = _Async(self.sync.cluster)


class _Async:
    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        async def call(**kwargs: Any) -> Any:
            return getattr(self.wrapped, name)(**kwargs)

        return call


@pytest.fixture
def logics() -> Iterator[tuple[_SearchLogic, _SearchLogic]]:
    yield (_SearchLogic("docs", _Encoder(), engine=OPENSEARCH), _SearchLogic("docs", _Encoder(), engine=OPENSEARCH))


def test_both_searchers_open_an_index_alike_and_a_least_privilege_user_gets_the_defaults(
    logics: tuple[_SearchLogic, _SearchLogic],
) -> None:
    sync_logic, async_logic = logics
    sync_logic.max_clauses = async_logic.max_clauses = 7  # the defaults must be set, not left as they were
    sync_client, async_client = _SyncClient(), _AsyncClient()
    open_index(sync_logic, sync_client, force=False)
    asyncio.run(async_open_index(async_logic, async_client, force=False))
    assert (
        sync_client.requests
        == async_client.requests
        == ["exists", "get_mapping", "cluster.get_settings", "get_settings"]
    )
    for logic in logics:
        assert (logic.max_clauses, logic.max_rescore_window) == (DEFAULT_MAX_CLAUSES, DEFAULT_MAX_RESCORE_WINDOW)
        assert logic.document_encoding == EncoderSettings(max_length=64, long_documents="split", stride=8)


def test_an_error_other_than_a_refusal_stops_the_opening(logics: tuple[_SearchLogic, _SearchLogic]) -> None:
    client = _SyncClient()

    def broken(**kwargs: Any) -> Any:
        raise ConnectionError("the node went away")

    client.cluster.get_settings = broken  # type: ignore[method-assign]
    with pytest.raises(ConnectionError, match="went away"):
        open_index(logics[0], client, force=False)
