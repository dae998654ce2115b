"""splade-os against real secured nodes: OpenSearch 2.19.4 with its security plugin, Elasticsearch 9.2.0 with x-pack
security (tests/secured_nodes.py starts them with `splade-os node start --secure`, or finds them running).

Every command runs as the indexer and as the searcher of docs/security.md, over TLS verified with the node's CA;
the searcher's writes are refused with one line naming the action, the user and the privilege to add. A wrong
password is refused (401), an untrusted CA is refused with the --ca-certs hint, and --insecure works with a warning.
A bulk refused midway loses nothing and `index --resume` completes once the role is fixed. Each privilege of each
role is removed in turn, to show which command then fails. The password never shows in output, logs or tracebacks.
The nodes' own setup: the security plugin's public demo admin certificate is refused, and every key and secret on
disk is readable by the node's user alone, after the first start and after a restart.

What real nodes cannot do here stays in tests/test_secured_engine.py, behind the TLS proxy: native API keys (the
Elasticsearch zip cannot create them: its `.security` index needs an analysis module that is not published, and
the OpenSearch setup has none) and client certificates of users.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import stat
import subprocess
import sys
import textwrap
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from secured_nodes import SecuredNode, restart_secured, start_secured, write_beir
from test_distributed_engine import LandedThenDies, ray_on_this_machine
from test_indexing_engine import SMALL, FakeEncoder, assert_exactly, make_docs, write_jsonl

from splade_os.cli import main
from splade_os.engines.clients import connect
from splade_os.engines.elasticsearch import import_client
from splade_os.engines.errors import describe_error
from splade_os.engines.roles import INDEXER, SEARCHER, privileges
from splade_os.errors import EngineError
from splade_os.indexing import BulkOptions, IndexingRefused, LoadOptions, RayWorkers, index_corpus, index_corpus_on_ray
from splade_os.model.encoder import SpladeEncoder
from splade_os.node.distributions import OPENSEARCH, dist_dir
from splade_os.node.java import find_java
from splade_os.node.run import stop_node
from splade_os.node.security import ADMIN, Access, admin_access, load_credentials, request

pytestmark = pytest.mark.secured

REPO = Path(__file__).resolve().parents[1]
MODEL = str(REPO / "models" / "splade-tiny")
# The privilege that lets the indexer read back what landed (mget), which `index --resume` needs after a crash.
READ_BACK = {"opensearch": "indices:data/read/mget*", "elasticsearch": "read"}
READ_BACK_ADVICE = {
    "opensearch": "indices:data/read/mget* to the index_permissions",
    "elasticsearch": "the index privilege read",
}
MGET = "indices:data/read/mget"
RESUME_ONLY = {("opensearch", "cluster", MGET)}
"""Needed by `index --resume` alone: test_refused_bulk_midway_loses_nothing_and_resume_completes shows it."""


@pytest.fixture(scope="session", params=["opensearch", "elasticsearch"])
def node(request: pytest.FixtureRequest) -> Iterator[SecuredNode]:
    secured = start_secured(request.param)
    secured.restore_roles()
    yield secured
    secured.restore_roles()


@pytest.fixture(scope="session")
def beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir(tmp_path_factory.mktemp("beir"))


@pytest.fixture
def alias(node: SecuredNode) -> Iterator[str]:
    name = f"secured-{uuid.uuid4().hex[:8]}"
    yield name
    admin = connect(node.settings())
    try:
        names = list(admin.indices.get(index=f"{name}*", allow_no_indices=True, ignore_unavailable=True))
        if names:
            admin.indices.delete(index=",".join(names), ignore_unavailable=True)
    finally:
        admin.close()


def run(node: SecuredNode, user: str, args: list[str], *, password: str | None = None, ca: bool = True) -> Result:
    return CliRunner().invoke(main, args, env=node.env(user, password, ca=ca), catch_exceptions=True)


def assert_secret_kept(node: SecuredNode, result: Result, caplog: pytest.LogCaptureFixture, what: str) -> None:
    texts = [result.stdout, result.stderr, caplog.text]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"{what} raised instead of printing one line: {trace}")
    for text in texts:
        for user, password in node.creds.users.items():
            assert password not in text, f"{what} printed the password of {user}: {text}"


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def index_args(corpus: Path, alias: str, tmp: Path, *extra: str) -> list[str]:
    return [
        "index",
        str(corpus),
        "--index",
        alias,
        "--model",
        MODEL,
        "--replicas",
        "0",
        "--analyzer",
        "standard",
        "--dead-letter",
        str(tmp / "dl.jsonl"),
        "--checkpoint",
        str(tmp / "cp.json"),
        *extra,
    ]


def df_args(alias: str, tmp: Path) -> list[str]:
    # A few tokens rather than the whole vocabulary: the security plugin checks every search of an _msearch.
    tokens = tmp / "tokens.txt"
    tokens.write_text("secure\ntls\ncluster\n.\n")
    return ["df", alias, "--tokens", str(tokens)]


def indexer_commands(beir: Path, alias: str, tmp: Path) -> list[list[str]]:
    corpus = beir / "corpus.jsonl"
    return [
        index_args(corpus, alias, tmp),
        df_args(alias, tmp),
        ["alias", alias],
        ["search", "secure tls cluster", "--index", alias, "--model", MODEL, "--explain"],
        [
            "reindex",
            alias,
            "--from-index",
            "--model",
            MODEL,
            "--replicas",
            "0",
            "--delete-previous",
            "--dead-letter",
            str(tmp / "dl2.jsonl"),
            "--batch-size",
            "5",
        ],  # more than one page of the source
        index_args(corpus, alias, tmp, "--recreate", "--delete-previous"),
        ["stats", alias, "--model", MODEL],
        ["doctor", "--index", alias, "--model", MODEL],
        ["eval", str(beir), "--model", MODEL, "--index", alias, "--mode", "splade"],
    ]


def searcher_commands(beir: Path, alias: str) -> list[list[str]]:
    return [
        ["alias", alias],
        ["search", "secure tls cluster", "--index", alias, "--model", MODEL, "--explain"],
        ["eval", str(beir), "--model", MODEL, "--index", alias, "--mode", "splade"],
    ]


def test_node_keeps_the_passwords_in_a_private_file(node: SecuredNode) -> None:
    mode = stat.S_IMODE(os.stat(node.creds.path).st_mode)
    assert mode == 0o600, oct(mode)
    assert {ADMIN, INDEXER, SEARCHER} <= set(node.creds.users)
    assert Path(node.ca).is_file() and node.url.startswith("https://127.0.0.1:")
    result = CliRunner().invoke(main, ["node", "status", "--port", node.url.rsplit(":", 1)[1]])
    assert result.exit_code == 0, result.output
    assert f"running at {node.url}" in result.output and node.ca in result.output
    assert all(password not in result.output for password in node.creds.users.values())


def test_indexer_runs_every_command(
    node: SecuredNode, beir: Path, alias: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the clients' own request logs must not carry the password either
    for args in indexer_commands(beir, alias, tmp_path):
        result = run(node, INDEXER, args)
        assert_secret_kept(node, result, caplog, args[0])
        assert result.exit_code == 0, f"{args[0]} as the indexer failed: {result.output}"
    doctor = run(node, INDEXER, ["doctor", "--index", alias])
    assert "ok    privileges" in doctor.output, doctor.output


def test_searcher_searches_and_is_refused_writes(
    node: SecuredNode, beir: Path, alias: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    indexed = run(node, INDEXER, index_args(beir / "corpus.jsonl", alias, tmp_path))
    # The indexer's load counts the new index's df table itself.
    assert indexed.exit_code == 0 and f"df table of {alias}-v1 counted: " in indexed.output, indexed.output
    assert run(node, INDEXER, df_args(alias, tmp_path)).exit_code == 0
    for args in searcher_commands(beir, alias):
        result = run(node, SEARCHER, args)
        assert_secret_kept(node, result, caplog, args[0])
        assert result.exit_code == 0, f"{args[0]} as the searcher failed: {result.output}"
    doctor = run(node, SEARCHER, ["doctor", "--index", alias, "--model", MODEL])
    assert doctor.exit_code == 0, doctor.output
    assert f"may search {alias} but not index into it, lacks: " in doctor.output
    # The table `df --tokens` counted over a few listed tokens is partial: doctor says so rather than trust it.
    partial = "is partial: counted over 4 listed tokens only"
    assert "warn  df " in doctor.output and partial in doctor.output, doctor.output
    refused = [
        index_args(beir / "corpus.jsonl", f"{alias}-new", tmp_path / "new"),
        index_args(beir / "corpus.jsonl", alias, tmp_path, "--recreate"),
        ["reindex", alias, "--from-index", "--model", MODEL, "--replicas", "0"],
        ["stats", alias],
        df_args(alias, tmp_path),
    ]
    (tmp_path / "new").mkdir()
    for args in refused:
        result = run(node, SEARCHER, args)
        assert_secret_kept(node, result, caplog, args[0])
        line = one_line_error(result)
        assert "refused indices:" in line and f"for user {SEARCHER}" in line and "(403): add " in line, line


def test_wrong_password_is_refused_with_401_in_one_line(
    node: SecuredNode, beir: Path, alias: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = node.password(INDEXER) + "-wrong"
    for args in indexer_commands(beir, alias, tmp_path):
        result = run(node, INDEXER, args, password=wrong)
        assert_secret_kept(node, result, caplog, args[0])
        assert wrong not in result.output and wrong not in caplog.text
        assert result.exit_code == 1 and "refused the credentials (401)" in result.output, result.output
        if args[0] != "doctor":  # doctor prints its checklist; the others one line
            one_line_error(result)
    with pytest.raises(EngineError, match=r"refused the credentials \(401\)"):
        connect(node.settings(INDEXER, password=wrong, max_retries=0))
    # Commands that never connect still see the password in their environment.
    for args in (
        ["encode", str(beir / "queries.jsonl"), "--queries", "--model", MODEL],
        ["node", "status", "--port", "1"],
        ["export", "/no/such/model", str(tmp_path / "out")],
    ):
        assert_secret_kept(node, run(node, INDEXER, args), caplog, args[0])


def test_config_file_drives_the_cli(node: SecuredNode, tmp_path: Path) -> None:
    config = tmp_path / "splade-os.toml"
    config.write_text(
        f'[opensearch]\nurl = "{node.url}"\nuser = "{SEARCHER}"\npassword = "{node.password(SEARCHER)}"\n'
        f'ca_certs = "{node.ca}"\n'
    )
    env = {var: None for var in node.env(SEARCHER)}
    result = CliRunner().invoke(main, ["doctor", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    assert f"{node.url} (basic auth as {SEARCHER}, TLS verified with CA {node.ca})" in result.output
    assert node.password(SEARCHER) not in result.output


def test_untrusted_ca_is_refused_and_insecure_warns(node: SecuredNode, beir: Path, alias: str) -> None:
    result = run(node, SEARCHER, ["alias", alias], ca=False)  # the node's CA is in no system bundle
    assert "TLS verification of" in one_line_error(result) and "--ca-certs" in result.stderr
    result = run(node, SEARCHER, ["alias", alias, "--insecure"], ca=False)
    assert "--insecure: the cluster's TLS certificate is not verified" in result.stderr
    assert result.exit_code == 1 and f"no index or alias {alias!r}" in result.output  # through TLS: no such alias


def test_refused_bulk_midway_loses_nothing_and_resume_completes(
    node: SecuredNode, beir: Path, alias: str, tmp_path: Path
) -> None:
    full = privileges(node.engine, INDEXER)
    write = "indices:data/write/index" if node.engine == "opensearch" else "write"
    no_write = {**full, "index": [p for p in full["index"] if p != write]}
    checkpoint, dead_letter = tmp_path / "cp.json", tmp_path / "dl.jsonl"
    batches: list[int] = []

    def revoke_after_first_batch(progress: object) -> None:
        batches.append(1)
        if len(batches) == 1:  # the second batch meets the refusal
            node.set_role(INDEXER, no_write, dropped=("index", write))

    client = connect(node.settings(INDEXER))
    encoder = SpladeEncoder(MODEL)
    try:
        with pytest.raises(IndexingRefused) as caught:
            index_corpus(
                client,
                beir / "corpus.jsonl",
                index=alias,
                encoder=encoder,
                on_progress=revoke_after_first_batch,
                load=LoadOptions(
                    replicas=0,
                    analyzer="standard",
                    checkpoint=checkpoint,
                    dead_letter=dead_letter,
                    bulk=BulkOptions(batch_size=4),
                ),
            )
    finally:
        client.close()
        encoder.close()
    message = str(caught.value)
    assert f"for user {INDEXER}" in message and "(403)" in message and "--resume" in message, message
    assert "\n" not in message
    assert checkpoint.is_file()
    assert not dead_letter.exists() or dead_letter.read_text() == ""  # no document is at fault
    if node.engine == "opensearch":  # --resume alone reads documents by id: mget, which the plugin checks as a whole
        no_mget = {**full, "cluster": [p for p in full["cluster"] if p != MGET]}
        node.set_role(INDEXER, no_mget)
        refused = run(node, INDEXER, index_args(beir / "corpus.jsonl", alias, tmp_path, "--resume"))
        assert f"refused {MGET} for user {INDEXER} (403)" in one_line_error(refused)
        assert checkpoint.is_file()
    node.restore_roles()
    resumed = run(node, INDEXER, index_args(beir / "corpus.jsonl", alias, tmp_path, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert "holds 12 documents" in resumed.output and "failed 0" in resumed.output, resumed.output
    assert not checkpoint.exists()


# `splade-os index` in a process that dies once the batch holding d4 (its second) has landed, before its checkpoint
# records it: the checkpoint lists that batch as pending, exactly as after a crash at that instant.
DIES_AFTER_A_LANDED_BATCH = textwrap.dedent(
    """
    import sys

    from test_indexing_engine import die_once_landed
    from splade_os.cli import main

    die_once_landed("d4")
    main(sys.argv[1:], prog_name="splade-os")
    """
)


def crash_after_a_landed_batch(node: SecuredNode, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `args` (an `index` command) as the indexer in a process that dies once its second batch has landed."""
    env = {k: v for k, v in os.environ.items() if k not in node.env(INDEXER)}
    env.update({k: v for k, v in node.env(INDEXER).items() if v is not None})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-c", DIES_AFTER_A_LANDED_BATCH, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def crashed_index_args(beir: Path, alias: str, tmp: Path) -> list[str]:
    return index_args(beir / "corpus.jsonl", alias, tmp, "--batch-size", "4")  # 12 documents: 3 batches


def _resume_failure(node: SecuredNode, beir: Path, alias: str, tmp: Path) -> str | None:
    """Why an `index` that died once a batch landed, then its `index --resume`, fail as the indexer; None if not."""
    tmp.mkdir()
    args = crashed_index_args(beir, alias, tmp)
    crashed = crash_after_a_landed_batch(node, args)
    if crashed.returncode != 3:
        return f"index (crashed run), exit {crashed.returncode}: {crashed.stderr.strip()[-300:]}"
    resumed = run(node, INDEXER, [*args, "--resume"])
    if resumed.exit_code != 0:
        return f"index --resume: {resumed.output.strip().splitlines()[-1]}"
    return None


def drop_read_back(node: SecuredNode) -> None:
    full = privileges(node.engine, INDEXER)
    fewer = {**full, "index": [p for p in full["index"] if p != READ_BACK[node.engine]]}
    node.set_role(INDEXER, fewer, dropped=("index", READ_BACK[node.engine]))


def _count(node: SecuredNode, index: str) -> int:
    admin = connect(node.settings())
    try:
        admin.indices.refresh(index=index)
        return int(admin.count(index=index)["count"])
    finally:
        admin.close()


def test_resume_after_a_crash_past_a_landed_batch_keeps_every_document_once(
    node: SecuredNode, beir: Path, alias: str, tmp_path: Path
) -> None:
    args = crashed_index_args(beir, alias, tmp_path)
    checkpoint, dead_letter = tmp_path / "cp.json", tmp_path / "dl.jsonl"
    crashed = crash_after_a_landed_batch(node, args)
    assert crashed.returncode == 3, f"the run did not die where it should: {crashed.stderr}"
    pending = json.loads(checkpoint.read_text())["pending_ids"]
    assert pending == ["d4", "d5", "d6", "d7"] and _count(node, f"{alias}-v1") == 8  # the batch did land

    # Not allowed to read back what landed: one line with the privilege to add, nothing dead-lettered or lost.
    drop_read_back(node)
    try:
        refused = run(node, INDEXER, [*args, "--resume"])
    finally:
        node.restore_roles()
    line = one_line_error(refused)
    # On Elasticsearch `read` also lets the load read its lease (a search), so the refusal comes before the read-back.
    refused_action = "indices:data/read/" if node.engine == "elasticsearch" else "indices:data/read/mget"
    assert f"refused {refused_action}" in line and f"for user {INDEXER}" in line, line
    assert f"(403): add {READ_BACK_ADVICE[node.engine]}" in line, line
    assert json.loads(checkpoint.read_text())["pending_ids"] == pending
    assert not dead_letter.exists() or dead_letter.read_text() == ""

    resumed = run(node, INDEXER, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "indexed 12, failed 0" in resumed.output and "holds 12 documents" in resumed.output, resumed.output
    assert not dead_letter.exists() or dead_letter.read_text() == "", dead_letter.read_text()
    assert not checkpoint.exists()
    admin = connect(node.settings())
    try:
        hits = admin.search(index=alias, body={"query": {"match_all": {}}, "size": 100})["hits"]["hits"]
    finally:
        admin.close()
    assert sorted(h["_id"] for h in hits) == sorted(f"d{i}" for i in range(12))


def test_an_mget_item_refused_raises_instead_of_reading_as_not_found(node: SecuredNode, alias: str) -> None:
    from splade_os.indexing.pipeline import stored_documents

    admin = connect(node.settings())
    try:
        admin.index(index=alias, id="landed", body={"text": "here"}, refresh=True)
    finally:
        admin.close()
    client = connect(node.settings(INDEXER))
    try:
        assert stored_documents(client, alias, ["landed", "absent"], source=True) == {"landed": {"text": "here"}}
        drop_read_back(node)
        # OpenSearch answers 200 with a security_exception per item; Elasticsearch refuses the whole request.
        refused = IndexingRefused if node.engine == "opensearch" else import_client().AuthorizationException
        with pytest.raises(refused) as caught:
            stored_documents(client, alias, ["landed", "absent"])
    finally:
        node.restore_roles()
        client.close()
    line = str(caught.value) if node.engine == "opensearch" else describe_error(caught.value)
    # On Elasticsearch `read` also lets the load read its lease (a search), so the refusal comes before the read-back.
    refused_action = "indices:data/read/" if node.engine == "elasticsearch" else "indices:data/read/mget"
    assert f"refused {refused_action}" in line and f"for user {INDEXER}" in line, line
    assert f"(403): add {READ_BACK_ADVICE[node.engine]}" in line, line


@pytest.fixture(scope="module")
def ray() -> Iterator[None]:
    with ray_on_this_machine():
        yield


def test_a_ray_block_run_again_is_not_taken_for_duplicates(
    node: SecuredNode, alias: str, tmp_path: Path, ray: None
) -> None:
    docs = make_docs(120)
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    log, marker, dead = tmp_path / "encoded.txt", tmp_path / "died", tmp_path / "dead.jsonl"
    # d100 is in the 3rd batch of 16 of the second block (d60-d119): the worker dies once d60-d107 have landed.
    recipe = LandedThenDies(str(log), marker=str(marker), doc_id="d100")
    summary = index_corpus_on_ray(
        node.settings(INDEXER),
        corpus,
        index=alias,
        recipe=recipe,
        pool=RayWorkers(workers=1),
        block_size=60,
        load=LoadOptions(
            replicas=0,
            analyzer="standard",
            checkpoint=tmp_path / "cp.json",
            dead_letter=dead,
            bulk=SMALL,
        ),
    )
    assert marker.exists(), "the worker never died: the test proves nothing"
    c = summary.counters
    assert (c.read, c.indexed, c.failed, c.skipped, c.replaced) == (120, 120, 0, 0, 48), summary.counters
    assert summary.verified and summary.problems() == [], summary.verification
    assert not dead.exists() or dead.read_text() == "", dead.read_text()
    admin = connect(node.settings())
    try:
        assert_exactly(admin, alias, docs, FakeEncoder())  # every id once, each with its own content
    finally:
        admin.close()


@pytest.fixture(scope="session")
def searched(node: SecuredNode, beir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An index built by the indexer, for the searcher's commands."""
    name = f"secured-searched-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("searched")
    assert run(node, INDEXER, index_args(beir / "corpus.jsonl", name, tmp)).exit_code == 0
    yield name
    admin = connect(node.settings())
    try:
        left = list(admin.indices.get(index=f"{name}*", allow_no_indices=True, ignore_unavailable=True))
        if left:  # a node started again from scratch meanwhile holds none
            admin.indices.delete(index=",".join(left), ignore_unavailable=True)
    finally:
        admin.close()


def _first_failure(node: SecuredNode, user: str, commands: list[list[str]]) -> str | None:
    for args in commands:
        result = run(node, user, args)
        if result.exit_code != 0:
            return f"{' '.join(args[:2])}: {result.output.strip().splitlines()[-1]}"
    return None


@pytest.mark.parametrize("role", [INDEXER, SEARCHER])
def test_every_privilege_is_needed(
    node: SecuredNode, role: str, beir: Path, searched: str, tmp_path: Path, alias: str
) -> None:
    full = privileges(node.engine, role)
    unneeded: list[str] = []
    shown: list[str] = []
    for kind in ("cluster", "index"):
        for privilege in full[kind]:
            if (node.engine, kind, privilege) in RESUME_ONLY:
                continue
            fewer = {**full, kind: [p for p in full[kind] if p != privilege]}
            node.set_role(role, fewer, dropped=(kind, privilege))
            try:
                tmp = tmp_path / f"{kind}-{len(shown) + len(unneeded)}"
                tmp.mkdir()
                name = f"{alias}-{len(shown) + len(unneeded)}"
                commands = indexer_commands(beir, name, tmp) if role == INDEXER else searcher_commands(beir, searched)
                failure = _first_failure(node, role, commands)
                if failure is None and role == INDEXER:
                    failure = _resume_failure(node, beir, f"{name}-crashed", tmp / "crashed")
            finally:
                node.set_role(role, full)
            (shown if failure else unneeded).append(f"{kind} {privilege} -> {failure}")
    print(f"\n{node.engine} {role} without each privilege:\n  " + "\n  ".join(shown + unneeded))
    assert not unneeded, f"{node.engine} {role}: nothing fails without {unneeded}"


# ------------------------------------------------------------------------------- the nodes' own setup

DEMO_FILES = {"kirk.pem", "kirk-key.pem", "esnode.pem", "esnode-key.pem", "root-ca.pem"}
REALM_FILES = {"users", "users_roles", "roles.yml", "internal_users.yml"}
DEMO_CERTIFICATES = """
import java.nio.file.Files;
import java.nio.file.Path;
import org.opensearch.security.tools.democonfig.Certificates;

public class DemoCertificates {
    public static void main(String[] args) throws Exception {
        for (Certificates c : Certificates.values()) {
            Files.writeString(Path.of(args[0], c.getFileName()), c.getContent());
        }
    }
}
"""


def demo_certificates(node: SecuredNode, folder: Path) -> Path:
    """The demo certificates as the security plugin ships them (in its jar, the same in every copy): written out
    by the plugin's own code, from the node's installation."""
    plugin = dist_dir(node.home, node.version, OPENSEARCH, secure=True) / "plugins" / "opensearch-security"
    source = folder / "DemoCertificates.java"
    source.write_text(DEMO_CERTIFICATES)
    java = find_java(
        "OpenSearch", OPENSEARCH.java_range(node.version), dict(os.environ), ("OPENSEARCH_JAVA_HOME", "JAVA_HOME")
    )
    done = subprocess.run(
        [str(java.java), "-cp", f"{plugin}/*", str(source), str(folder)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    kirk = x509.load_pem_x509_certificate((folder / "kirk.pem").read_bytes())
    assert kirk.subject.rfc4514_string().startswith("CN=kirk,"), kirk.subject
    return folder


def answer_to(url: str, access: Access) -> str:
    """The HTTP status, or why TLS refused the connection (the node does not trust the client certificate)."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=access.context())
    )
    try:
        with opener.open(url, timeout=30) as resp:
            return str(resp.status)
    except urllib.error.HTTPError as err:
        return str(err.code)
    except urllib.error.URLError as err:
        if isinstance(err.reason, ssl.SSLError):
            return f"TLS refused: {err.reason.reason}"
        raise
    except ssl.SSLError as err:  # TLS 1.3 reports a refused client certificate on the first read
        return f"TLS refused: {err.reason}"


@pytest.fixture(scope="session")
def opensearch_node() -> SecuredNode:
    return start_secured("opensearch")


def test_public_demo_admin_certificate_is_refused(opensearch_node: SecuredNode, tmp_path: Path) -> None:
    node = opensearch_node
    demo = demo_certificates(node, tmp_path)
    url = f"{node.url}/_plugins/_security/api/internalusers"
    kirk = Access(node.ca, "kirk", "", (str(demo / "kirk.pem"), str(demo / "kirk-key.pem")))
    refused = answer_to(url, kirk)
    assert refused in ("401", "403") or refused.startswith("TLS refused"), f"the demo admin certificate got {refused}"
    # The node's own admin certificate is what may change the security configuration.
    answer = request(url, 30, admin_access(node.creds))
    assert answer is not None and answer[0] == 200 and set(answer[2]) == set(node.creds.users), answer


def _private_files_problems(node: SecuredNode) -> tuple[list[str], int]:
    """Keys, passwords, keystores and realm files that group or others may read, and how many were checked: in the
    node's folder and its credentials, and any private key in the distributions it runs from."""
    own = [node.config.parent, node.creds.path.parent]
    problems, checked = [], 0
    for root in [*own, node.home / "dist"]:
        for path in root.rglob("*"):
            if path.name in DEMO_FILES:
                problems.append(f"{path}: a file of the security plugin's public demo setup")
            if not path.is_file() or path.is_symlink():
                continue
            if root != node.creds.path.parent and not _holds_secret(path, named=root in own):
                continue  # the credentials folder holds nothing else
            checked += 1
            for where in (path, path.parent):
                mode = stat.S_IMODE(where.stat().st_mode)
                if mode & 0o077:
                    problems.append(f"{where}: mode {mode:o}")
    return problems, checked


def _holds_secret(path: Path, *, named: bool) -> bool:
    if named and (path.name in REALM_FILES or path.suffix in (".key", ".keystore", ".p12", ".jks")):
        return True
    if path.suffix in (".jar", ".zip", ".so") or path.stat().st_size > 1_000_000:
        return False
    return b"PRIVATE KEY-----" in path.read_bytes()


def test_keys_and_secrets_are_private_after_the_first_start_and_a_restart(node: SecuredNode) -> None:
    problems, checked = _private_files_problems(node)
    assert not problems, "\n".join(problems)
    assert checked >= 5, f"only {checked} files with keys or secrets found under {node.config.parent}"
    restarted = restart_secured(node)
    # A restart keeps the CA that users copied and the passwords.
    assert (restarted.url, restarted.ca, restarted.creds.users) == (node.url, node.ca, node.creds.users)
    problems, _ = _private_files_problems(restarted)
    assert not problems, "\n".join(problems)
    missing = f"secured-{uuid.uuid4().hex[:8]}"
    result = run(restarted, SEARCHER, ["alias", missing])  # answered through TLS, as the searcher: no such alias
    assert result.exit_code == 1 and f"no index or alias {missing!r}" in result.output, result.output


def test_a_node_whose_folder_was_deleted_starts_again_with_new_credentials(node: SecuredNode) -> None:
    """`rm -r` of a stopped secured node's folder: status says in one line that nothing answers, and a start makes
    new certificates and passwords rather than failing on the CA file that is gone."""
    port = node.url.rsplit(":", 1)[1]
    args = ["--engine", node.engine, "--version", node.version, "--port", port, "--secure"]
    assert stop_node(engine=node.engine, version=node.version, port=int(port), home=node.home, secure=True)
    shutil.rmtree(node.config.parent)
    status = CliRunner().invoke(main, ["node", "status", *args])
    assert isinstance(status.exception, SystemExit) and status.exit_code == 1, status.exception
    assert status.output.endswith(f"node answers at {node.url}\n"), status.output
    started = CliRunner().invoke(main, ["node", "start", *args, "--heap", "512m", "--timeout", "300"])
    assert started.exit_code == 0, started.output
    fresh = load_credentials(node.creds.path)
    assert fresh is not None and Path(fresh.ca_certs).is_file()
    assert set(fresh.users) == set(node.creds.users) and not set(fresh.users.values()) & set(node.creds.users.values())
    assert f"users and passwords: {node.creds.path} (mode 0600; new passwords of " in started.output
    assert all(password not in started.output for password in fresh.users.values())
    node.creds = fresh  # the other tests of the session go on with the new passwords
    result = run(node, ADMIN, ["doctor"])  # the new CA verifies the node and the new admin password logs in
    assert result.exit_code == 0 and "ok    reachable" in result.output, result.output
