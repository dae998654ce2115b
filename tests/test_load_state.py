"""Where loads keep their state (no node needed: the cluster's name comes from the client's configured hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from splade_os.indexing.state import STATE_ENV, cluster_key, private_folder, state_folder, state_root


def test_the_state_root_follows_the_flag_the_variable_then_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "env"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_root(tmp_path / "flag") == tmp_path / "flag"
    assert state_root() == tmp_path / "env"
    monkeypatch.delenv(STATE_ENV)
    assert state_root() == tmp_path / "xdg" / "splade-os"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")  # as the XDG specification says
    assert state_root() == tmp_path / "home" / ".local" / "state" / "splade-os"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state_root() == tmp_path / "home" / ".local" / "state" / "splade-os"


def test_the_cluster_is_named_after_its_hosts_without_credentials() -> None:
    one = OpenSearch(hosts=["http://127.0.0.1:9200"])
    assert cluster_key(one) == "127.0.0.1-9200"
    many = OpenSearch(hosts=["https://admin:secret@b.example.com:443/prefix", "https://a.example.com:9243"])
    assert cluster_key(many) == "a.example.com-9243+b.example.com-443_prefix"
    assert state_folder(one, "docs", Path("/s")) == Path("/s/127.0.0.1-9200/docs")
    crowd = OpenSearch(hosts=[f"http://node-{i}.example.com:9200" for i in range(20)])
    assert len(cluster_key(crowd)) == 73 and cluster_key(crowd) != cluster_key(crowd.__class__(hosts=["http://x:1"]))


def test_the_elasticsearch_client_s_hosts_name_its_cluster() -> None:
    elasticsearch = pytest.importorskip("elasticsearch")
    client = elasticsearch.Elasticsearch(["http://127.0.0.1:9200", "https://es.example.com:9243/pre"])
    assert cluster_key(client) == "127.0.0.1-9200+es.example.com-9243_pre"


def test_state_folders_are_private(tmp_path: Path) -> None:
    folder = private_folder(tmp_path / "state" / "cluster" / "docs")
    for path in (folder, folder.parent, folder.parent.parent):
        assert path.stat().st_mode & 0o777 == 0o700
