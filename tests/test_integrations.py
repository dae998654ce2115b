"""The framework adapters without a node: the missing-extra error, the sparse embedding functions for LlamaIndex
vector stores, and bad arguments. The searches themselves are in test_integrations_engine.py."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import pytest
from conftest import BUNDLED_MODEL

from splade_os.errors import InputError, MissingDependencyError
from splade_os.model.encoder import SpladeEncoder

TEXTS = ["what causes a heart attack", "U.S. founding documents", ""]


@pytest.mark.parametrize(
    ("module", "package", "extra"),
    [("langchain", "langchain_core", "langchain"), ("llamaindex", "llama_index", "llamaindex")],
)
def test_a_missing_extra_is_one_line_naming_the_install(
    monkeypatch: pytest.MonkeyPatch, module: str, package: str, extra: str
) -> None:
    importlib.import_module(package)  # installed here (the dev extra): block it as if it were not
    for name in [n for n in sys.modules if n == package or n.startswith(f"{package}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, f"splade_os.integrations.{module}", raising=False)
    with pytest.raises(MissingDependencyError) as caught:
        importlib.import_module(f"splade_os.integrations.{module}")
    message = str(caught.value)
    assert "\n" not in message and f"pip install 'splade-os[{extra}]'" in message


@pytest.fixture(scope="module")
def encoder() -> Iterator[SpladeEncoder]:
    with SpladeEncoder(BUNDLED_MODEL) as encoder:
        yield encoder


def test_sparse_functions_give_the_encoders_vectors_as_vocabulary_ids(encoder: SpladeEncoder) -> None:
    from splade_os.integrations.llamaindex import sparse_doc_fn, sparse_query_fn

    for make, encode in ((sparse_query_fn, encoder.encode_queries), (sparse_doc_fn, encoder.encode_documents)):
        indices, values = make(encoder)(TEXTS)
        assert len(indices) == len(values) == len(TEXTS)
        for ids, weights, vector in zip(indices, values, encode(TEXTS), strict=True):
            assert all(isinstance(i, int) for i in ids) and ids == sorted(ids) and len(set(ids)) == len(ids)
            assert {encoder.tokenizer.id_to_token(i): w for i, w in zip(ids, weights, strict=True)} == dict(vector)
        assert indices[0] and indices[2] == [] and values[2] == []  # an empty text has an empty vector


def test_a_retriever_needs_a_searcher_and_sound_settings() -> None:
    from splade_os.integrations import langchain, llamaindex

    with pytest.raises(InputError, match="from_index"):
        langchain.SpladeRetriever()
    with pytest.raises(InputError, match="from_index"):
        llamaindex.SpladeRetriever()
    with pytest.raises(InputError, match="expected a splade_os Searcher"):
        llamaindex.SpladeRetriever(object())  # type: ignore[arg-type]
    with pytest.raises(InputError, match="k must be"):
        llamaindex.SpladeRetriever(k=0)
    with pytest.raises(InputError, match="unknown mode 'dense'"):
        llamaindex.SpladeRetriever(mode="dense")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="list of field names"):
        llamaindex.SpladeRetriever(fields="doc_id")
