"""What a large index needs, against a real node: the document-frequency table (`df`), force-merging (`merge`,
`index --optimize`), concurrent segment search, and Elasticsearch's own query pruning (`pruning_config`)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import assert_df_exact
from test_indexing_engine import FakeEncoder, make_docs, write_jsonl

from splade_os import aliases
from splade_os.cli import main
from splade_os.connection import ConnectionSettings
from splade_os.df import build_df, read_df
from splade_os.doctor import OK, WARN, run_checks
from splade_os.engines import ElasticsearchEngine, Engine, OpenSearchEngine, PruningConfig
from splade_os.errors import ConfigError
from splade_os.indexing import BulkOptions, LoadOptions, index_corpus
from splade_os.indexing.merge import segment_state
from splade_os.mappings import VECTOR_FIELD, index_body, read_index_meta
from splade_os.vectors import SparseVector

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[1]
MODEL = str(REPO / "models" / "splade-tiny")
# Tokens a raw `rank_features` key would get wrong: dots split the field name, and `%2E` is what an escaped `.` is.
TOKENS = ["retrieval", ".", "u.s.", "##.", "100%", "%2E", "a%25b", "##s", "sparse"]


def _vectors(n: int, seed: int = 7) -> list[SparseVector]:
    rng = random.Random(seed)
    return [SparseVector({t: rng.uniform(0.1, 3.0) for t in TOKENS if rng.random() < 0.5}) for _ in range(n)]


def _versioned_index(client: Any, engine: Engine, alias: str, vectors: list[SparseVector], *, start: int = 0) -> str:
    """`alias-v1` behind `alias`, holding one document per vector (ids from `start`), refreshed."""
    concrete = f"{alias}-v1"
    if not client.indices.exists(index=concrete):
        body = index_body(replicas=0, engine=engine, analyzer="standard")
        body["aliases"] = {alias: {}}
        client.indices.create(index=concrete, body=body)
    for i, vector in enumerate(vectors, start):
        client.index(index=concrete, id=f"d{i}", body={"text": f"doc {i}", VECTOR_FIELD: engine.to_field(vector)})
    client.indices.refresh(index=concrete)
    return concrete


def test_df_table_is_the_exact_count_of_documents_holding_each_token(
    engine_client: Any, engine: Engine, index_name: str
) -> None:
    vectors = _vectors(30)
    concrete = _versioned_index(engine_client, engine, index_name, vectors)
    expected = {t: sum(t in v for v in vectors) for t in TOKENS}
    assert 0 < min(expected.values()) and max(expected.values()) < 30  # every token is in some documents only

    table = build_df(engine_client, index_name, [*TOKENS, "absent"], per_request=4)  # 3 _msearch requests
    assert table.index == concrete and table.documents == 30 and table.vocabulary_size == len(TOKENS) + 1
    assert dict(table.counts) == expected and table.df("absent") == 0
    stored = read_df(engine_client, index_name)
    assert stored is not None and dict(stored.counts) == expected
    assert (stored.documents, stored.vocabulary_size, stored.computed_at) == (30, 10, table.computed_at)
    assert stored.mean(["retrieval", "u.s.", "absent"]) == pytest.approx((expected["retrieval"] + expected["u.s."]) / 3)
    assert engine_client.indices.exists(index=aliases.df_index_name(concrete))


def test_doctor_says_when_the_df_table_is_missing_or_stale(engine_client: Any, engine: Engine, index_name: str) -> None:
    _versioned_index(engine_client, engine, index_name, _vectors(20))
    settings = ConnectionSettings.from_env()

    def df_check() -> Any:
        return {c.name: c for c in run_checks(settings, index=index_name)}["df"]

    missing = df_check()
    assert missing.status == WARN and f"no document-frequency table for {index_name}-v1" in missing.detail
    assert missing.fix == f"splade-os df {index_name} --model MODEL"
    build_df(engine_client, index_name, TOKENS)
    assert df_check().status == OK
    _versioned_index(engine_client, engine, index_name, _vectors(2, seed=1), start=20)  # 22: 9% more
    assert df_check().status == OK
    _versioned_index(engine_client, engine, index_name, _vectors(2, seed=2), start=22)  # 24: 17% more
    stale = df_check()
    assert stale.status == WARN and "counted at 20 documents" in stale.detail and "holds 24 now" in stale.detail
    assert stale.fix == f"splade-os df {index_name} --model MODEL"


def test_df_command_and_deleting_a_version_deletes_its_table(
    engine_client: Any, engine: Engine, index_name: str, tmp_path: Path
) -> None:
    concrete = _versioned_index(engine_client, engine, index_name, [SparseVector({"retrieval": 1.0})])
    result = CliRunner().invoke(main, ["df", index_name, "--model", MODEL])
    assert result.exit_code == 0, result.output
    assert f"df table of {concrete} ({concrete}-df): 1 of " in result.output, result.output
    assert "tokens with df > 0, over 1 document, computed in " in result.output
    stored = read_df(engine_client, index_name)
    assert stored is not None and dict(stored.counts) == {"retrieval": 1} and stored.vocabulary_size > 20_000
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("retrieval\nu.s.\n")
    result = CliRunner().invoke(main, ["df", index_name, "--tokens", str(tokens)])  # the tokens seen, say
    assert result.exit_code == 0 and "1 of 2 tokens with df > 0" in result.output, result.output
    both = CliRunner().invoke(main, ["df", index_name, "--tokens", str(tokens), "--model", MODEL])
    assert both.exit_code == 2 and "give either --model (count its vocabulary) or --tokens FILE" in both.stderr

    engine_client.indices.create(
        index=f"{index_name}-v2", body=index_body(replicas=0, engine=engine, analyzer="standard")
    )
    moved = CliRunner().invoke(main, ["alias", index_name, f"{index_name}-v2", "--delete-previous"])
    assert moved.exit_code == 0, moved.output
    assert not engine_client.indices.exists(index=concrete)
    assert not engine_client.indices.exists(index=f"{concrete}-df")


def test_every_load_keeps_a_df_table_of_every_token_the_index_holds(
    engine_client: Any, index_name: str, tmp_path: Path
) -> None:
    def load(docs: list[dict[str, Any]], name: str, encoder: Any = None) -> list[str]:
        summary = index_corpus(
            engine_client,
            write_jsonl(tmp_path / f"{name}.jsonl", docs),
            index=index_name,
            encoder=encoder or FakeEncoder(),
            load=LoadOptions(replicas=0, dead_letter=tmp_path / f"{name}.dead", checkpoint=tmp_path / f"{name}.cp"),
        )
        assert summary.problems() == [], summary.verification
        return summary.notes

    # A new index: counted over the tokens its first load sent, which are all it holds.
    notes = load(make_docs(30), "first")
    table = assert_df_exact(engine_client, index_name)
    assert table.documents == 30 and table.df("café") == 30 and table.df("29") == 1
    assert any(n.startswith(f"df table of {index_name}-v1 counted: ") for n in notes), notes
    # In place: the documents' new tokens are counted too.
    extra = [{"_id": f"e{i}", "title": "Added", "text": f"brandnew {i + 100}"} for i in range(5)]
    load(extra, "more")
    table = assert_df_exact(engine_client, index_name)
    assert (table.documents, table.df("brandnew"), table.df("café")) == (35, 5, 30)

    # Into an index no load made (so without a table), the documents already there may hold tokens this run never
    # sent: the table counts the encoder's whole vocabulary where it knows it, and says it could not otherwise.
    engine_client.indices.delete(index=aliases.df_index_name(f"{index_name}-v1"))

    class KnowsItsTokens(FakeEncoder):
        tokens = sorted({w for d in make_docs(40) + extra for w in FakeEncoder().vector(f"{d['title']} {d['text']}")})

    notes = load(make_docs(1, prefix="partial"), "partial")
    partial = read_df(engine_client, index_name)
    assert partial is not None and partial.df("brandnew") == 0  # in the index, but never sent by this run
    assert any("over the tokens this run sent only" in n and f"splade-os df {index_name}-v1" in n for n in notes)
    engine_client.indices.delete(index=aliases.df_index_name(f"{index_name}-v1"))
    notes = load(make_docs(40)[30:], "whole", KnowsItsTokens())
    assert assert_df_exact(engine_client, index_name).df("brandnew") == 5
    assert not any("sent only" in n for n in notes), notes


def _segmented(client: Any, index: str, segments: int) -> None:
    """An index of `segments` segments: one document per refresh."""
    client.indices.create(index=index, body={"settings": {"index": {"number_of_replicas": 0}}})
    for i in range(segments):
        client.index(index=index, id=str(i), body={"text": f"document {i}"}, refresh=True)
    assert segment_state(client, index).segments == segments


def test_merge_leaves_n_segments_prints_progress_and_refuses_a_live_alias(engine_client: Any, index_name: str) -> None:
    plain = f"{index_name}-plain"
    _segmented(engine_client, plain, 6)
    result = CliRunner().invoke(main, ["merge", plain, "--segments", "2"])
    assert result.exit_code == 0, result.output
    assert f"merging {plain}: 6 segments, 0 s" in result.stderr, result.stderr
    assert f"merged {plain}: 6 -> " in result.stdout
    assert segment_state(engine_client, plain).segments <= 2

    missing = CliRunner().invoke(main, ["merge", f"{index_name}-missing"])
    assert missing.exit_code == 1 and f"no index or alias '{index_name}-missing' to merge" in missing.stderr

    live = f"{index_name}-v1"
    _segmented(engine_client, live, 4)
    engine_client.indices.put_alias(index=live, name=index_name)
    for name in (index_name, live):
        refused = CliRunner().invoke(main, ["merge", name])
        assert refused.exit_code == 1 and "--yes" in refused.stderr, refused.output
        assert "a force-merge of a live index costs I/O and CPU" in refused.stderr, refused.stderr
        assert f"alias {index_name}" in refused.stderr or "is an alias" in refused.stderr
    assert segment_state(engine_client, live).segments == 4  # refused before any request that merges
    result = CliRunner().invoke(main, ["merge", index_name, "--yes"])
    assert result.exit_code == 0, result.output
    assert f"merged {index_name}: 4 -> 1 segment in " in result.stdout
    assert segment_state(engine_client, live).segments == 1


@pytest.mark.parametrize("optimize", [False, True])
def test_index_optimize_leaves_one_segment(engine_client: Any, index_name: str, tmp_path: Path, optimize: bool) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(40))
    concrete = f"{index_name}-v1"

    def refresh_each_batch(progress: object) -> None:  # a segment per batch, as a long load leaves many
        engine_client.indices.refresh(index=concrete)

    summary = index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=FakeEncoder(),
        on_progress=refresh_each_batch,
        load=LoadOptions(
            replicas=0,
            analyzer="standard",
            optimize=optimize,
            dead_letter=tmp_path / "dl.jsonl",
            bulk=BulkOptions(batch_size=8),
        ),
    )
    assert summary.problems() == [], summary.verification
    segments = segment_state(engine_client, concrete).segments
    if optimize:
        assert segments == 1 and any(n.startswith(f"merged {concrete} from ") for n in summary.notes), summary.notes
    else:
        assert segments > 1  # what --optimize has to undo


def test_index_optimize_on_the_command_line(engine_client: Any, index_name: str, tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(6))
    args = [
        "index",
        str(corpus),
        "--index",
        index_name,
        "--model",
        MODEL,
        "--replicas",
        "0",
        "--analyzer",
        "standard",
        "--dead-letter",
        str(tmp_path / "dl.jsonl"),
        "--checkpoint",
        str(tmp_path / "cp.json"),
    ]
    result = CliRunner().invoke(main, [*args, "--optimize"])
    assert result.exit_code == 0, result.output
    assert f"note: merged {index_name}-v1 from " in result.output and " to 1 segment in " in result.output


def test_reindex_optimize_merges_the_new_version_before_the_alias_moves(
    engine_client: Any, index_name: str, tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(6))
    index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=FakeEncoder(),
        load=LoadOptions(replicas=0, analyzer="standard", dead_letter=tmp_path / "dl.jsonl"),
    )
    result = CliRunner().invoke(
        main,
        [
            "reindex",
            index_name,
            "--from-index",
            "--model",
            MODEL,
            "--replicas",
            "0",
            "--optimize",
            "--dead-letter",
            str(tmp_path / "r.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"note: merged {index_name}-v2 from " in result.output and " to 1 segment in " in result.output
    assert aliases.resolve(engine_client, index_name) == [f"{index_name}-v2"]
    assert segment_state(engine_client, f"{index_name}-v2").segments == 1


def _concurrent_mode(client: Any, concrete: str) -> str:
    settings = client.indices.get_settings(index=concrete, flat_settings=True)[concrete]["settings"]
    return str(settings["index.search.concurrent_segment_search.mode"])


@pytest.mark.opensearch_only
def test_reindex_keeps_the_sources_concurrent_segment_search_unless_told(
    engine_client: Any, index_name: str, tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(4))
    index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=FakeEncoder(),
        load=LoadOptions(
            replicas=0, analyzer="standard", concurrent_segment_search=True, dead_letter=tmp_path / "dl.jsonl"
        ),
    )
    args = ["reindex", index_name, "--from-index", "--model", MODEL, "--replicas", "0"]
    for version, extra, mode in [
        (2, [], "all"),
        (3, ["--no-concurrent-segment-search"], "none"),
        (4, [], "none"),
        (5, ["--concurrent-segment-search"], "all"),
    ]:
        result = CliRunner().invoke(main, [*args, *extra, "--dead-letter", str(tmp_path / f"r{version}.jsonl")])
        assert result.exit_code == 0, result.output
        concrete = f"{index_name}-v{version}"
        assert aliases.resolve(engine_client, index_name) == [concrete]
        assert _concurrent_mode(engine_client, concrete) == mode
        assert read_index_meta(engine_client, concrete)["concurrent_segment_search"] is (mode == "all")


@pytest.mark.opensearch_only
@pytest.mark.parametrize(("asked", "mode"), [(True, "all"), (False, "none")])
def test_concurrent_segment_search_is_set_on_the_index_when_asked(
    engine_client: Any, index_name: str, tmp_path: Path, asked: bool, mode: str
) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(4))
    index_corpus(
        engine_client,
        corpus,
        index=index_name,
        encoder=FakeEncoder(),
        load=LoadOptions(
            replicas=0, analyzer="standard", concurrent_segment_search=asked, dead_letter=tmp_path / "dl.jsonl"
        ),
    )
    concrete = f"{index_name}-v1"
    assert _concurrent_mode(engine_client, concrete) == mode
    assert read_index_meta(engine_client, concrete)["concurrent_segment_search"] is asked


@pytest.mark.elasticsearch_only
def test_concurrent_segment_search_is_refused_where_the_engine_has_no_setting(
    engine_client: Any, engine: Engine, index_name: str, tmp_path: Path
) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", make_docs(4))
    for asked in (True, False):
        with pytest.raises(ConfigError, match="has no index setting for concurrent segment search"):
            index_corpus(
                engine_client,
                corpus,
                index=index_name,
                encoder=FakeEncoder(),
                load=LoadOptions(
                    replicas=0, analyzer="standard", concurrent_segment_search=asked, dead_letter=tmp_path / "dl.jsonl"
                ),
            )
    assert not engine_client.indices.exists(index=f"{index_name}-v1")  # refused before anything was created
    result = CliRunner().invoke(
        main,
        [
            "index",
            str(corpus),
            "--index",
            index_name,
            "--model",
            MODEL,
            "--concurrent-segment-search",
            "--dead-letter",
            str(tmp_path / "d.jsonl"),
        ],
    )
    assert result.exit_code == 1 and f"{engine.label} has no index setting" in result.stderr, result.output


def test_concurrent_search_settings_by_engine_and_version() -> None:
    assert OpenSearchEngine(version=(2, 11, 1)).concurrent_search_settings(True) is None  # before 2.12
    assert OpenSearchEngine(version=(2, 12, 0)).concurrent_search_settings(False) == {
        "search": {"concurrent_segment_search": {"enabled": False}}
    }
    assert OpenSearchEngine(version=(3, 6, 0)).concurrent_search_settings(True) == {
        "search": {"concurrent_segment_search": {"mode": "all"}}
    }
    assert ElasticsearchEngine(version=(9, 2, 0)).concurrent_search_settings(True) is None


@pytest.mark.elasticsearch_only
def test_elasticsearch_runs_a_query_with_pruning_config(engine_client: Any, engine: Engine, index_name: str) -> None:
    vectors = _vectors(20)
    _versioned_index(engine_client, engine, index_name, vectors)
    query = SparseVector({"retrieval": 1.0, "u.s.": 0.2, "sparse": 0.05})
    clause = engine.vector_clauses(query, VECTOR_FIELD)[0]
    options = engine.pruning_options(PruningConfig(tokens_freq_ratio_threshold=1, tokens_weight_threshold=0.5))
    clause["sparse_vector"].update(options)
    hits = engine_client.search(index=index_name, body={"query": clause, "size": 30})["hits"]["hits"]
    holding = {f"d{i}" for i, v in enumerate(vectors) if set(v) & set(query)}
    assert hits and {h["_id"] for h in hits} <= holding
    assert clause["sparse_vector"]["pruning_config"] == {
        "tokens_freq_ratio_threshold": 1,
        "tokens_weight_threshold": 0.5,
        "only_score_pruned_tokens": False,
    }


@pytest.mark.opensearch_only
def test_opensearch_says_it_has_no_pruning_config(engine: Engine) -> None:
    with pytest.raises(ConfigError, match=f"{engine.label} has no query-time token pruning of its own"):
        engine.pruning_options(PruningConfig())


def test_pruning_config_refuses_values_out_of_bounds() -> None:
    with pytest.raises(ConfigError, match=r"tokens_freq_ratio_threshold must be in \[1, 100\], got 0.5"):
        PruningConfig(tokens_freq_ratio_threshold=0.5)
    with pytest.raises(ConfigError, match=r"tokens_weight_threshold must be in \[0, 1\], got 1.5"):
        PruningConfig(tokens_weight_threshold=1.5)
    with pytest.raises(ConfigError, match="has no query-time token pruning"):
        OpenSearchEngine().pruning_options(PruningConfig())
