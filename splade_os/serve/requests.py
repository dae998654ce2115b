"""The request bodies the service accepts, each checked field by field against the limits before any work.

Every refusal names the field, what was wrong and, for a limit, the limit and its value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.search import MAX_RESULT_WINDOW, MODES, Searcher, SearchResult
from splade_os.serve.encoding import FORMATS, KINDS, as_maps, as_tei
from splade_os.serve.errors import Refusal, over_limit
from splade_os.serve.settings import Limits
from splade_os.vectors import SparseVector


async def read_json(request: Request, limits: Limits) -> Any:
    """The body as JSON, read no further than `max_body_bytes`."""
    declared = request.headers.get("content-length", "")
    too_big = "the request body is too large"
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise over_limit("max_body_bytes", limits.max_body_bytes, too_big)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.max_body_bytes:
            raise over_limit("max_body_bytes", limits.max_body_bytes, too_big)
    try:
        return json.loads(bytes(body))
    except UnicodeDecodeError:
        raise Refusal(400, "the request body is not UTF-8: send JSON in UTF-8") from None
    except json.JSONDecodeError as err:
        raise Refusal(
            400,
            f"the request body is not valid JSON ({err.msg} at line {err.lineno} column "
            f"{err.colno}): send a JSON object",
        ) from None


def _object(body: Any, example: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise Refusal(400, f"the request body is a JSON {type(body).__name__}, not an object: send {example}")
    return body


def _texts(value: Any, field: str, limits: Limits) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise Refusal(400, f"{field!r} must be a string or a non-empty list of strings")
    if len(texts) > limits.max_inputs:
        raise over_limit("max_inputs", limits.max_inputs, f"{field!r} holds {len(texts)} texts")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise Refusal(400, f"{field}[{i}] is a JSON {type(text).__name__}, not a string")
        if len(text) > limits.max_text_chars:
            raise over_limit("max_text_chars", limits.max_text_chars, f"{field}[{i}] has {len(text)} characters")
    return texts


def _choice(value: Any, field: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise Refusal(400, f"{field!r} is {value!r}: use one of {', '.join(map(repr, choices))}")
    return str(value)


@dataclass(frozen=True)
class EncodeRequest:
    """`POST /encode`: `{"texts": [...], "kind": "query" | "document"}`."""

    texts: list[str]
    kind: str

    @classmethod
    def parse(cls, body: Any, limits: Limits) -> EncodeRequest:
        body = _object(body, '{"texts": ["..."], "kind": "query"}')
        if "texts" not in body:
            raise Refusal(400, '"texts" is missing: send {"texts": ["..."], "kind": "query"}')
        return cls(_texts(body["texts"], "texts", limits), _choice(body.get("kind", "query"), "kind", KINDS))


@dataclass(frozen=True)
class EmbedRequest:
    """`POST /embed_sparse`: text-embeddings-inference's `{"inputs": str | [str], "truncate": bool}`, and two query
    parameters of splade-os: `kind` (query, the default, or document) and `format` (see `encoding.py`)."""

    inputs: list[str]
    truncate: bool
    kind: str
    fmt: str

    @classmethod
    def parse(cls, body: Any, params: Mapping[str, str], limits: Limits) -> EmbedRequest:
        body = _object(body, '{"inputs": "..."}')
        if "inputs" not in body:
            raise Refusal(400, '"inputs" is missing: send {"inputs": "..."} or {"inputs": ["...", "..."]}')
        truncate = body.get("truncate", False)
        if not isinstance(truncate, bool):
            raise Refusal(400, f'"truncate" is {truncate!r}: use true or false')
        kind = _choice(params.get("kind", "query"), "kind", KINDS)
        return cls(
            _texts(body["inputs"], "inputs", limits),
            truncate,
            kind,
            _choice(params.get("format", "tei"), "format", FORMATS),
        )

    def check_length(self, encoder: SpladeEncoder) -> None:
        """Without `truncate`, an input longer than the model takes is refused, as text-embeddings-inference does."""
        if self.truncate or (self.kind == "document" and encoder.long_documents == "split"):
            return
        for i, encoding in enumerate(encoder.tokenizer.encode_batch(self.inputs)):
            if len(encoding.ids) > encoder.max_length:
                raise over_limit(
                    "max_input_length",
                    encoder.max_length,
                    f'inputs[{i}] has {len(encoding.ids)} tokens (send "truncate": true to cut it)',
                )

    def answer(self, vectors: Sequence[SparseVector], token_id: Callable[[str], int]) -> Any:
        if self.fmt == "tei":
            return as_tei(vectors, token_id)
        if self.fmt == "elasticsearch":
            return {
                "sparse_embeddings": [
                    {"embedding": [{"token": t, "weight": w} for t, w in v.sorted_items()]} for v in vectors
                ]
            }
        return as_maps(vectors, self.fmt)


@dataclass(frozen=True)
class SearchRequest:
    """`POST /search`: `{"query": "...", "index": ..., "mode": ..., "k": 10, "from": 0, "filter": ...,
    "explain": false, "fields": [...]}`; the answer is what `splade-os search --json` prints."""

    query: str
    index: str
    mode: str
    k: int
    from_: int
    filter: Any
    explain: bool
    fields: list[str] | None

    @classmethod
    def parse(cls, body: Any, limits: Limits, default_index: str | None) -> SearchRequest:
        body = _object(body, '{"query": "...", "k": 10}')
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise Refusal(400, '"query" must be the text to search for, a non-empty string')
        if len(query) > limits.max_text_chars:
            raise over_limit("max_text_chars", limits.max_text_chars, f'"query" has {len(query)} characters')
        index = body.get("index", default_index)
        if not isinstance(index, str) or not index:
            raise Refusal(400, '"index" is missing: name the index to search (or start the service with --index)')
        k, from_ = _count(body, "k", 10, 1), _count(body, "from", 0, 0)
        if k > limits.max_k:
            raise over_limit("max_k", limits.max_k, f'"k" is {k}')
        if from_ + k > MAX_RESULT_WINDOW:
            raise over_limit("max_result_window", MAX_RESULT_WINDOW, f'"from" + "k" is {from_ + k}', status=400)
        filter_ = body.get("filter")
        if filter_ is not None and not (
            isinstance(filter_, Mapping) or (isinstance(filter_, list) and all(isinstance(f, Mapping) for f in filter_))
        ):
            raise Refusal(400, '"filter" must be a query object or a list of them, such as {"term": {"lang": "en"}}')
        explain = body.get("explain", False)
        if not isinstance(explain, bool):
            raise Refusal(400, f'"explain" is {explain!r}: use true or false')
        fields = body.get("fields")
        if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
            raise Refusal(400, '"fields" must be a list of source field names')
        mode = _choice(body.get("mode", "splade"), "mode", MODES)
        return cls(query, index, mode, k, from_, filter_, explain, fields)

    def run(self, searcher: Searcher) -> SearchResult:
        return searcher.search(
            self.query,
            k=self.k,
            mode=self.mode,  # type: ignore[arg-type]
            filter=self.filter,
            explain=self.explain,
            from_=self.from_,
            fields=self.fields,
        )


def _count(body: Mapping[str, Any], field: str, default: int, least: int) -> int:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise Refusal(400, f"{field!r} is {value!r}: use a whole number of at least {least}")
    return value
