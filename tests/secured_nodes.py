"""Real secured nodes for the tests: OpenSearch 2.19.4 with its security plugin and Elasticsearch 9.2.0 with x-pack
security, started by `splade-os node start --secure` (reused when already running, as CI starts them first).

Ports: $SPLADE_OS_SECURED_OPENSEARCH_PORT (default 9210) and $SPLADE_OS_SECURED_ELASTICSEARCH_PORT (default 9212);
node home: $SPLADE_OS_NODE_HOME, as for `splade-os node start` (its credentials and certificates are found there).
Roles are changed as the node's admin: through the security REST API on OpenSearch, and by rewriting roles.yml on
Elasticsearch, which reloads it within a second (`resource.reload.interval.high`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splade_os.connection import ConnectionSettings
from splade_os.engines.roles import ROLES, opensearch_role, privileges, roles_yml
from splade_os.node.run import start_node, stop_node
from splade_os.node.security import ADMIN, NODE_PATTERNS, Access, Credentials, admin_access, load_credentials, request

SECURED_PORTS = {"opensearch": 9210, "elasticsearch": 9212}
CONNECTION_VARS = (
    "OPENSEARCH_URL",
    "OPENSEARCH_USERNAME",
    "OPENSEARCH_PASSWORD",
    "OPENSEARCH_API_KEY",
    "OPENSEARCH_CA_CERTS",
    "ELASTICSEARCH_URL",
    "ELASTICSEARCH_HOSTS",
    "ELASTICSEARCH_USERNAME",
    "ELASTIC_USERNAME",
    "ELASTICSEARCH_PASSWORD",
    "ELASTIC_PASSWORD",
    "ELASTICSEARCH_API_KEY",
    "ELASTIC_API_KEY",
    "ELASTICSEARCH_CA_CERTS",
    "ELASTICSEARCH_CA_CERT",
    "SPLADE_OS_CONFIG",
    "SPLADE_OS_ENGINE",
    "ELASTIC_CLOUD_ID",
)


def secured_port(engine: str) -> int:
    return int(os.environ.get(f"SPLADE_OS_SECURED_{engine.upper()}_PORT", SECURED_PORTS[engine]))


@dataclass
class SecuredNode:
    engine: str
    url: str
    creds: Credentials
    config: Path
    home: Path
    version: str

    @property
    def ca(self) -> str:
        return self.creds.ca_certs

    def password(self, user: str) -> str:
        return self.creds.users[user]

    def env(self, user: str, password: str | None = None, *, ca: bool = True) -> dict[str, str | None]:
        """The environment of a CLI run as `user`, with nothing from the test runner's own connection settings."""
        env: dict[str, str | None] = {var: None for var in CONNECTION_VARS}
        env.update(
            OPENSEARCH_URL=self.url,
            OPENSEARCH_USERNAME=user,
            OPENSEARCH_PASSWORD=password if password is not None else self.password(user),
        )
        if ca:
            env["OPENSEARCH_CA_CERTS"] = self.ca
        return env

    def settings(self, user: str = ADMIN, **overrides: Any) -> ConnectionSettings:
        values: dict[str, Any] = {
            "urls": (self.url,),
            "username": user,
            "password": self.password(user),
            "ca_certs": self.ca,
            "engine": self.engine,
        }
        values.update(overrides)
        return ConnectionSettings(**values)

    def set_role(self, role: str, privs: dict[str, list[str]], *, dropped: tuple[str, str] | None = None) -> None:
        """Replace a role's privileges, and return once the node enforces the new definition."""
        if self.engine == "opensearch":
            answer = request(
                f"{self.url}/_plugins/_security/api/roles/{role}",
                30,
                admin_access(self.creds),
                method="PUT",
                body=opensearch_role(privs, NODE_PATTERNS),
            )
            assert answer is not None and answer[0] in (200, 201), answer
            return
        roles = {name: privileges(self.engine, name) for name in ROLES}
        roles[role] = privs
        (self.config / "roles.yml").write_text(roles_yml(roles, NODE_PATTERNS))
        self._wait_reloaded(role, privs, dropped)

    def restore_roles(self) -> None:
        for role in ROLES:
            self.set_role(role, privileges(self.engine, role))

    def _wait_reloaded(self, role: str, privs: dict[str, list[str]], dropped: tuple[str, str] | None) -> None:
        # Ask as the role's user what it may do, until the file's new content is what it gets.
        cluster = privs["cluster"] + [dropped[1] for _ in [1] if dropped and dropped[0] == "cluster"]
        index = privs["index"] + [dropped[1] for _ in [1] if dropped and dropped[0] == "index"]
        body = {"cluster": cluster, "index": [{"names": ["probe"], "privileges": index}]}
        access = Access(self.ca, role, self.password(role))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            answer = request(f"{self.url}/_security/user/_has_privileges", 10, access, method="POST", body=body)
            if answer is not None and answer[0] == 200:
                granted = {("cluster", p): v for p, v in answer[2]["cluster"].items()}
                granted.update({("index", p): v for p, v in answer[2]["index"]["probe"].items()})
                wanted = {(k, p): (k, p) != dropped for k, ps in (("cluster", cluster), ("index", index)) for p in ps}
                if all(granted.get(key) == want for key, want in wanted.items()):
                    return
            time.sleep(0.3)
        raise AssertionError(f"roles.yml change for {role} not in effect after 20 s (or {dropped} is implied)")


def start_secured(engine: str) -> SecuredNode:
    info = start_node(engine=engine, port=secured_port(engine), secure=True, heap="512m", timeout=300)
    assert info.credentials_file is not None, info
    creds = load_credentials(info.credentials_file)
    assert creds is not None, f"unreadable {info.credentials_file}"
    return SecuredNode(engine, info.url, creds, info.log_file.parent.parent / "config", info.home, info.version)


def restart_secured(node: SecuredNode) -> SecuredNode:
    """Stop the node and start it again (a start, not a reuse: every setup step runs again)."""
    assert stop_node(
        engine=node.engine, version=node.version, port=secured_port(node.engine), home=node.home, secure=True
    )
    return start_secured(node.engine)


def write_beir(root: Path) -> Path:
    """A tiny BEIR folder: corpus, queries and qrels, usable by `index` and by `eval`."""
    topics = [
        "sparse retrieval with learned term weights",
        "opensearch cluster security with tls",
        "alias swaps give zero downtime re-indexing",
        "bm25 ranks documents by term frequency",
    ]
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w") as out:
        for i, text in enumerate(topics * 3):
            out.write(json.dumps({"_id": f"d{i}", "title": f"doc {i}", "text": text}) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "secure cluster tls"}) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return root
