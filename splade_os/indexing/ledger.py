"""The ledger of a load: counters that several writers add up into one total, the checkpoint, the dead letters."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from splade_os.errors import ConfigError

CHECKPOINT_VERSION = 1


@dataclass
class Counters:
    """Counts persisted in the checkpoint, so a resumed run reports the whole corpus."""

    read: int = 0
    indexed: int = 0
    failed: int = 0
    skipped: int = 0
    truncated: int = 0
    resumed: int = 0  # found already indexed after an interruption, not encoded again
    replaced: int = 0  # overwrote a document that was already in the index

    def add(self, other: Counters) -> None:
        """Add another writer's counts to these (a batch, or a worker of a distributed load)."""
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


def default_checkpoint(alias: str) -> Path:
    return Path(f"{alias}.checkpoint.json")


def default_dead_letter(alias: str) -> Path:
    return Path(f"{alias}.dead-letter.jsonl")


class Checkpoint:
    """A small JSON file, replaced atomically, so a crash at any instant leaves the last good state."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        if not path.is_file():
            raise ConfigError(f"nothing to resume: no checkpoint {path} (run without --resume to start a load)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(
                f"checkpoint {path} cannot be read ({type(err).__name__}: {err}): start over with --recreate"
            ) from None
        if not isinstance(data, dict) or data.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"{path} was written by another splade-os version: start over with --recreate")
        return cls(path, data)

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
            json.dump(self.data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)


class LetterSink(Protocol):
    """Where the dead-letter entries of a load go: the file, or a worker's list it hands to the driver."""

    def write(self, entry: Mapping[str, Any]) -> None: ...

    def tell(self) -> int: ...


class DeadLetters:
    """The dead-letter JSON Lines file, opened on the first entry; a resume truncates it to the checkpoint."""

    def __init__(self, path: Path, keep_bytes: int = 0) -> None:
        self.path = path
        self._out: Any = None
        if keep_bytes and path.is_file():
            with open(path, "r+b") as existing:
                existing.truncate(keep_bytes)
            self._out = appending(path)
        else:
            path.unlink(missing_ok=True)

    def write(self, entry: Mapping[str, Any]) -> None:
        if self._out is None:
            self._out = appending(self.path)
        self._out.write(json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n")

    def tell(self) -> int:
        if self._out is None:
            return 0
        self._out.flush()
        return int(self._out.tell())

    def close(self) -> Path | None:
        if self._out is None:
            return None
        self._out.close()
        return self.path


def appending(path: Path) -> Any:
    """`path` opened to append bytes, kept open for the whole run; created 0600 (it holds documents' text)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")


def entry(line: int, doc_id: str | None, outcome: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"line": line, "doc_id": doc_id, "outcome": outcome, "reason": reason, **extra}
