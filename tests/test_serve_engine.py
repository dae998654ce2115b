"""`splade-os serve` as a real uvicorn process against a real node: every endpoint's answer and every refusal.

Encoding answers are compared with the library's own vectors, searches with `Searcher` and `search --json`.
"""

from __future__ import annotations

import json
import signal
import socket
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from conftest import BUNDLED_MODEL
from serve_process import Service, running_service
from synthetic_corpus import demo_documents

from splade_os.cli import main
from splade_os.model.encoder import SpladeEncoder
from splade_os.retrieval.results import result_to_json
from splade_os.retrieval.search import Searcher

pytestmark = pytest.mark.engine

KEY = "serve-test-key-0123456789abcdef"
LIMITS = ("--max-inputs", "4", "--max-text-chars", "600", "--max-body-bytes", "4096", "--max-k", "20")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, serve_index: str) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("serve")
    key_file = tmp / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    with running_service(tmp, "--index", serve_index, "--api-key-file", str(key_file), *LIMITS, key=KEY) as svc:
        yield svc


def _texts() -> list[str]:
    docs = demo_documents()
    return [d["title"] for d in docs] + [d["text"][:200] for d in docs[:22]]  # 64 texts of many lengths


def test_encode_answers_the_vectors_encode_writes(
    service: Service, serve_encoder: SpladeEncoder, tmp_path: Path
) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": str(i), "text": t}) + "\n" for i, t in enumerate(_texts()[:4])))
    out = tmp_path / "vectors.jsonl"
    result = CliRunner().invoke(
        main,
        ["encode", str(queries), "--model", str(BUNDLED_MODEL), "--queries", "--output", str(out), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    written = [json.loads(line)["vector"] for line in out.read_text().splitlines()]
    answer = service.post("/encode", {"texts": _texts()[:4], "kind": "query"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"kind": "query", "vectors": written}
    documents = service.post("/encode", {"texts": _texts()[:4], "kind": "document"}).json()["vectors"]
    assert documents == [v.to_dict() for v in serve_encoder.encode_documents(_texts()[:4])]


def test_embed_sparse_speaks_text_embeddings_inference(service: Service, serve_encoder: SpladeEncoder) -> None:
    one = service.post("/embed_sparse", {"inputs": "what causes a heart attack"})
    assert one.status_code == 200, one.text
    [pairs] = one.json()
    expected = serve_encoder.encode_queries(["what causes a heart attack"])[0]
    assert [p["index"] for p in pairs] == sorted(p["index"] for p in pairs)
    assert {serve_encoder.tokenizer.id_to_token(p["index"]): p["value"] for p in pairs} == expected.to_dict()
    many = service.post("/embed_sparse", {"inputs": ["heart", "sleep"], "truncate": True}).json()
    assert len(many) == 2 and all(isinstance(p["index"], int) for v in many for p in v)


def test_embed_sparse_refuses_an_input_longer_than_the_model_without_truncate(
    service: Service, serve_encoder: SpladeEncoder
) -> None:
    long = "!" * 600  # within max_text_chars, and one token per character: more than the model's 512
    refused = service.post("/embed_sparse", {"inputs": ["short", long]})
    assert refused.status_code == 413, refused.text
    assert refused.json() | {"error": ""} == {
        "error": "",
        "error_type": "Validation",
        "limit": "max_input_length",
        "value": serve_encoder.max_length,
    }
    assert refused.json()["error"].startswith("inputs[1] has 602 tokens")
    cut = service.post("/embed_sparse", {"inputs": [long], "truncate": True})
    assert cut.status_code == 200 and len(cut.json()) == 1


def test_64_concurrent_clients_each_get_what_encoding_alone_gives(
    service: Service, serve_encoder: SpladeEncoder
) -> None:
    texts = _texts()
    alone = [serve_encoder.encode_queries([t])[0].to_dict() for t in texts]
    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda t: service.post("/encode", {"texts": [t]}), texts))
    assert [a.status_code for a in answers] == [200] * 64
    assert [a.json()["vectors"][0] for a in answers] == alone
    metrics = service.get("/metrics").text
    batches = [line for line in metrics.splitlines() if line.startswith("splade_os_batch_texts_count")]
    runs = float(batches[0].split()[-1])
    assert 0 < runs <= 64 + 4 + 2  # every text ran, in no more runs than requests (the other tests' included)


def test_search_answers_what_search_json_prints(
    service: Service, serve_index: str, engine_client: Any, serve_encoder: SpladeEncoder
) -> None:
    with Searcher(serve_index, serve_encoder, client=engine_client) as searcher:
        for mode in ("splade", "bm25", "hybrid", "two-phase"):
            answer = service.post(
                "/search", {"query": "what causes a heart attack", "mode": mode, "k": 3, "explain": True}
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            expected = result_to_json(searcher.search("what causes a heart attack", k=3, mode=mode, explain=True), True)
            assert body["index"] == serve_index and body["mode"] == mode
            for field in ("hits", "query_terms", "expansion_terms", "notes"):
                assert body[field] == expected[field], (mode, field)
    paged = service.post("/search", {"query": "heart", "k": 2, "from": 1, "index": serve_index}).json()
    full = service.post("/search", {"query": "heart", "k": 3}).json()
    assert [h["id"] for h in paged["hits"]] == [h["id"] for h in full["hits"][1:3]]
    nothing = service.post("/search", {"query": "heart", "filter": {"term": {"_id": "no-such-id"}}}).json()
    assert nothing["hits"] == []


def test_health_says_model_cluster_and_index(service: Service, serve_index: str, engine: Any) -> None:
    health = service.get("/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "ok" and body["model"]["loaded"] and body["model"]["name"] == "splade-tiny"
    assert body["cluster"]["reachable"] and body["cluster"]["engine"] == engine.label
    assert body["index"] == {"name": serve_index, "exists": True, "encoder_matches": True}
    missing = service.get("/health?index=no-such-index")
    assert missing.status_code == 503 and missing.json()["index"]["exists"] is False


def test_metrics_count_requests_errors_latency_batches_and_queue(service: Service) -> None:
    service.post("/encode", {"texts": ["heart"]})
    service.post("/encode", {"texts": ["heart"], "kind": "poem"})
    text = service.get("/metrics").text
    for name in (
        'splade_os_requests_total{endpoint="encode",status="200"}',
        'splade_os_errors_total{endpoint="encode",error_type="Validation"}',
        'splade_os_request_seconds_bucket{endpoint="encode",le="+Inf"}',
        "splade_os_batch_texts_bucket",
        "splade_os_queue_texts ",
    ):
        assert any(line.startswith(name) for line in text.splitlines()), name


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/encode", b"{not json", 400, "not valid JSON"),
        ("/encode", b"[1, 2]", 400, "not an object"),
        ("/encode", b'{"texts": ["a"], "kind": "poem"}', 400, "'kind' is 'poem'"),
        ("/encode", b'{"texts": []}', 400, "non-empty list"),
        ("/encode", b'{"texts": ["a", 3]}', 400, "texts[1] is a JSON int"),
        ("/embed_sparse", b'{"input": "a"}', 400, '"inputs" is missing'),
        ("/search", b'{"query": " "}', 400, '"query" must be'),
        ("/search", b'{"query": "a", "mode": "fuzzy"}', 400, "'mode' is 'fuzzy'"),
        ("/search", b'{"query": "a", "k": 0}', 400, "'k' is 0"),
        ("/search", b'{"query": "a", "filter": "lang:en"}', 400, '"filter" must be'),
    ],
)
def test_bad_requests_get_one_line_saying_what_is_wrong(
    service: Service, path: str, body: bytes, status: int, words: str
) -> None:
    answer = service.post(path, data=body)
    assert answer.status_code == status
    assert words in answer.json()["error"] and "Traceback" not in answer.text


@pytest.mark.parametrize(
    ("path", "body", "limit", "value"),
    [
        ("/encode", {"texts": ["a"] * 5}, "max_inputs", 4),
        ("/embed_sparse", {"inputs": ["a"] * 5}, "max_inputs", 4),
        ("/encode", {"texts": ["a" * 601]}, "max_text_chars", 600),
        ("/search", {"query": "a" * 601}, "max_text_chars", 600),
        ("/search", {"query": "a", "k": 21}, "max_k", 20),
        ("/encode", {"texts": ["a"], "padding": "x" * 5000}, "max_body_bytes", 4096),
    ],
)
def test_each_limit_is_refused_naming_the_limit_and_its_value(
    service: Service, path: str, body: Any, limit: str, value: int
) -> None:
    answer = service.post(path, body)
    assert answer.status_code == 413, answer.text
    assert answer.json()["limit"] == limit and answer.json()["value"] == value
    assert f"the limit {limit} is {value}" in answer.json()["error"]


def test_a_body_sent_in_chunks_is_cut_at_the_limit(service: Service) -> None:
    chunks = iter([b'{"texts": ["', b"a" * 3000, b"b" * 3000, b'"]}'])  # no Content-Length: chunked
    answer = requests.post(service.url + "/encode", data=chunks, headers=service.headers(), timeout=60)
    assert answer.status_code == 413 and answer.json()["limit"] == "max_body_bytes"


def test_a_missing_or_wrong_key_is_refused_and_never_echoed(service: Service) -> None:
    missing = requests.post(service.url + "/encode", json={"texts": ["a"]}, timeout=30)
    wrong = service.post("/encode", {"texts": ["a"]}, key="wrong-key-0123456789")
    for answer in (missing, wrong):
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
        assert "API key" in answer.json()["error"] and "wrong-key" not in answer.text
    assert service.get("/metrics", key="wrong-key-0123456789").status_code == 401
    assert service.get("/health", key="-").status_code == 200  # load balancers probe without a key
    assert KEY not in service.output()


def test_an_unknown_index_is_a_404(service: Service) -> None:
    answer = service.post("/search", {"query": "heart", "index": "no-such-index"})
    assert answer.status_code == 404
    assert answer.json()["error"] == "index 'no-such-index' does not exist: give an index that splade-os built"


def test_cors_is_off_unless_asked(service: Service) -> None:
    answer = requests.options(
        service.url + "/encode",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=30,
    )
    assert "access-control-allow-origin" not in {h.lower() for h in answer.headers}


def test_the_key_file_must_be_private(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)
    result = CliRunner().invoke(main, ["serve", "--model", str(BUNDLED_MODEL), "--api-key-file", str(key_file)])
    assert result.exit_code == 1 and "chmod 600" in result.output and KEY not in result.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o644


def test_a_cluster_that_is_down_is_a_503_and_encoding_goes_on(tmp_path: Path) -> None:
    env = {"OPENSEARCH_URL": "http://127.0.0.1:9", "ELASTICSEARCH_URL": "", "OPENSEARCH_MAX_RETRIES": "0"}
    with running_service(tmp_path, "--index", "anything", env=env) as down:
        answer = down.post("/search", {"query": "heart attack"})
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert answer.json()["error"].startswith("cannot reach the cluster at http://127.0.0.1:9")
        health = down.get("/health")
        assert health.status_code == 503 and health.json()["cluster"]["reachable"] is False
        assert down.post("/encode", {"texts": ["heart"]}).status_code == 200
        assert down.stop() in (0, -signal.SIGTERM)  # uvicorn raises the signal again once it has shut down
    assert "Traceback" not in down.output() and "Application shutdown complete" in down.output()


def test_cors_when_asked_names_the_origin(tmp_path: Path, serve_index: str) -> None:
    with running_service(tmp_path, "--index", serve_index, "--cors-origin", "https://app.example") as svc:
        answer = requests.post(
            svc.url + "/encode", json={"texts": ["a"]}, headers={"Origin": "https://app.example"}, timeout=30
        )
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        other = requests.post(
            svc.url + "/encode", json={"texts": ["a"]}, headers={"Origin": "https://evil.example"}, timeout=30
        )
        assert "access-control-allow-origin" not in other.headers


def test_the_playground_page_is_served(service: Service) -> None:
    page = service.get("/", key="-")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="query"' in page.text and "__DEFAULT_INDEX__" not in page.text


def test_shutdown_finishes_the_requests_in_flight(tmp_path: Path, serve_encoder: SpladeEncoder) -> None:
    """Eight requests whose bodies are half sent are in flight for certain when SIGTERM arrives; their bodies
    complete after it, and each is still encoded and answered before the service exits."""
    texts = [f"what causes a heart attack {i}" for i in range(8)]
    bodies = [json.dumps({"texts": [t]}).encode() for t in texts]
    with running_service(tmp_path) as svc:
        port = int(svc.url.rsplit(":", 1)[1])
        sockets = []
        for body in bodies:
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            sock.sendall(
                b"POST /encode HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body[:10]
            )
            sockets.append(sock)
        gauge = 'splade_os_requests_in_flight{endpoint="encode"}'
        deadline = time.monotonic() + 60
        while not any(line == f"{gauge} 8.0" for line in svc.get("/metrics").text.splitlines()):
            # Each request waits for the rest of its body: none can be answered before it is sent.
            assert time.monotonic() < deadline, "the service never had the 8 requests in flight"
            time.sleep(0.01)
        svc.process.send_signal(signal.SIGTERM)
        for sock, body in zip(sockets, bodies, strict=True):
            sock.sendall(body[10:])
        answers = []
        for sock in sockets:
            with sock, sock.makefile("rb") as reader:
                status = reader.readline()
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                answers.append((status, json.loads(reader.read(length))))
        assert svc.stop() in (0, -signal.SIGTERM)
    assert [status.split()[1] for status, _ in answers] == [b"200"] * 8
    assert [a["vectors"][0] for _, a in answers] == [serve_encoder.encode_queries([t])[0].to_dict() for t in texts]
    assert "Application shutdown complete" in svc.output()
