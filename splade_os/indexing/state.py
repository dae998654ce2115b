"""Where a load keeps its checkpoint and dead letters: a state folder per cluster and alias, so `--resume` finds an
interrupted run from any folder.

`$SPLADE_OS_STATE_DIR` (or `LoadOptions.state_dir`, `--state-dir`), else `$XDG_STATE_HOME/splade-os`, else
`~/.local/state/splade-os`; below it `<cluster>/<alias>/`, the cluster named after the nodes the client was given.
Folders are made 0700 and the files 0600: dead letters hold documents' text. A checkpoint an earlier version left in
the current folder (`ALIAS.checkpoint.json`) is still found, so a run interrupted before an upgrade resumes.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from splade_os.engines.clients import client_hosts
from splade_os.indexing.ledger import default_checkpoint, default_dead_letter
from splade_os.indexing.options import LoadOptions

STATE_ENV = "SPLADE_OS_STATE_DIR"


def state_root(given: Path | None = None) -> Path:
    """The folder holding every load's state: `given`, `$SPLADE_OS_STATE_DIR`, `$XDG_STATE_HOME/splade-os`, or
    `~/.local/state/splade-os`."""
    if given is not None:
        return Path(given).expanduser()
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"  # the XDG rule
    return base / "splade-os"


def cluster_key(client: Any) -> str:
    """A folder name for the cluster a client talks to: its nodes' `host-port` (and path prefix)."""
    parts = []
    for url in client_hosts(client):
        split = urlsplit(url)
        parts.append(f"{split.hostname}-{split.port}{split.path.rstrip('/')}")
    key = re.sub(r"[^A-Za-z0-9._+-]", "_", "+".join(parts)) or "cluster"
    if len(key) > 100:  # many nodes: a readable start and a hash of the whole list
        key = f"{key[:60]}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    return key


def state_folder(client: Any, alias: str, root: Path | None = None) -> Path:
    """The state folder of loads into `alias` on the client's cluster (not created)."""
    return state_root(root) / cluster_key(client) / alias


def private_folder(folder: Path) -> Path:
    """`folder`, created with the folders above it that are missing, each 0700."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
    return folder


def locate(client: Any, alias: str, opts: LoadOptions) -> LoadOptions:
    """`opts` with the checkpoint and dead-letter files of a load into `alias` named: those given, else in the
    state folder (created); an interrupted run's checkpoint that an earlier version left in the current folder is
    used where it is, with its dead letters beside it."""
    if opts.checkpoint is not None and opts.dead_letter is not None:
        return opts
    folder = state_folder(client, alias, opts.state_dir)
    legacy = default_checkpoint(alias)
    if opts.checkpoint is None and legacy.is_file() and not (folder / legacy.name).exists():
        return opts.for_alias(alias)
    private_folder(folder)
    return replace(
        opts,
        checkpoint=opts.checkpoint or folder / legacy.name,
        dead_letter=opts.dead_letter or folder / default_dead_letter(alias).name,
    )
