"""docs/security.md shows exactly the roles the secured-node tests prove minimal (splade_os/engines/roles.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from splade_os.engines.roles import (
    INDEXER,
    ROLES,
    SEARCHER,
    alias_patterns,
    elasticsearch_role,
    opensearch_role,
    privileges,
    roles_yml,
)

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "security.md").read_text(encoding="utf-8")


def _body_after(request_line: str) -> object:
    found = re.search(re.escape(request_line) + r"\n(.*?)\n```", DOC, re.S)
    assert found, f"docs/security.md has no `{request_line}` block"
    return json.loads(found.group(1))


@pytest.mark.parametrize("role", ROLES)
def test_opensearch_roles_are_the_tested_ones(role: str) -> None:
    body = _body_after(f"PUT _plugins/_security/api/roles/{role}")
    assert body == opensearch_role(privileges("opensearch", role), alias_patterns("docs", role))


@pytest.mark.parametrize("role", ROLES)
def test_elasticsearch_roles_are_the_tested_ones(role: str) -> None:
    patterns = alias_patterns("docs", role)
    assert _body_after(f"PUT _security/role/{role}") == elasticsearch_role(privileges("elasticsearch", role), patterns)
    every = {name: alias_patterns("docs", name) for name in ROLES}
    assert roles_yml({name: privileges("elasticsearch", name) for name in ROLES}, every) in DOC


def test_every_privilege_is_in_the_table_and_readme_links_the_guide() -> None:
    table = DOC.split("## Which command fails without each privilege", 1)[1]
    for engine in ("opensearch", "elasticsearch"):
        for role in (INDEXER, SEARCHER):
            for kind, names in privileges(engine, role).items():
                for name in names:
                    assert f"`{name}`" in table, f"{engine} {role} {kind} {name} is not in the table"
    assert "docs/security.md" in (REPO / "README.md").read_text(encoding="utf-8")
