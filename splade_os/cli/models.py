"""`splade-os models`: what each model folder holds, and the one line that says why a folder is unusable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from splade_os.errors import SpladeOSError
from splade_os.redaction import redact


@click.command("models")
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per folder, in a list.")
def models(paths: tuple[Path, ...], as_json: bool) -> None:
    """Describe each model folder PATH: layout, output kind, vocabulary, max length, precision, query mode.

    Folders written by `splade-os export`, fastembed folders (model.onnx + tokenizer files), Hugging Face and
    sentence-transformers folders (onnx/model.onnx) and inference-free ones (idf.json) are read as they are.
    Exits 1 when a folder cannot be used, after saying why in one line.
    """
    from splade_os.model.folders import describe

    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            rows.append(describe(path))
        except SpladeOSError as err:
            rows.append({"path": str(path), "error": redact(str(err))})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    for row in rows:
        if "error" in row:
            if not as_json:
                click.echo(f"{row['path']}: {row['error']}", err=True)
            continue
        if not as_json:
            click.echo(
                f"{row['path']}: {row['name']} ({row['layout']}), {row['output_kind']} output {row['output']!r}, "
                f"vocab {row['vocab_size']:,}, max length {row['max_length']}, {row['precision']}, "
                f"query mode {row['query_mode']}, sha256 {str(row['sha256'])[:12]}"
            )
    if any("error" in row for row in rows):
        raise SystemExit(1)
