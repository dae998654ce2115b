"""`splade-os encode`: JSON Lines of BEIR records in, JSON Lines of sparse vectors out."""

from __future__ import annotations

from typing import Any

import click

from splade_os.cli.options import cli_errors, device_options, model_option
from splade_os.cli.progress import ProgressFactory, progress_options
from splade_os.words import plural


@click.command("encode")
@click.argument("input_path", metavar="INPUT", default="-")
@model_option(required=True)
@click.option("--output", "-o", "output", default="-", show_default=True, help="Output file; - for stdout.")
@click.option("--queries", is_flag=True, help="INPUT is queries: encode with the query encoder, ignore titles.")
@click.option("--id-field", default="_id", show_default=True, help="Input field holding the record id.")
@click.option("--text-field", default="text", show_default=True, help="Input field holding the text to encode.")
@click.option("--title-field", default="title", show_default=True, help="Input field holding the title.")
@click.option("--allow-failures", is_flag=True, help="Exit 0 even when some records were bad and left out.")
@click.option(
    "--threads",
    type=int,
    default=None,
    envvar="SPLADE_OS_THREADS",
    help="onnxruntime threads. [env: SPLADE_OS_THREADS]",
)
@click.option("--batch-size", type=int, default=None, help="Texts per model run. [default: by length]")
@click.option("--max-length", type=int, default=None, help="Tokens per text or window. [default: the export's]")
@click.option("--top-k", type=int, default=None, help="Keep only the k heaviest tokens of each vector.")
@click.option("--min-weight", type=float, default=0.0, show_default=True, help="Drop weights below this.")
@click.option(
    "--long-documents",
    type=click.Choice(["truncate", "split"]),
    default="truncate",
    show_default=True,
    help="Cut texts at --max-length (and count them) or max-pool overlapping windows.",
)
@click.option(
    "--provider", "providers", multiple=True, help="onnxruntime execution provider, e.g. CUDAExecutionProvider."
)
@click.option("--vectors-only", is_flag=True, help="Write only _id and vector, not the record's title, text and "
              "other fields (which `index --vectors` stores beside the vector).")
@progress_options
@device_options
def encode(
    input_path: str,
    model_dir: str,
    output: str,
    queries: bool,
    id_field: str,
    text_field: str,
    title_field: str,
    allow_failures: bool,
    threads: int | None,
    batch_size: int | None,
    max_length: int | None,
    top_k: int | None,
    min_weight: float,
    long_documents: str,
    providers: tuple[str, ...],
    vectors_only: bool,
    progress: ProgressFactory,
    device: dict[str, Any],
) -> None:
    """Encode INPUT (BEIR corpus.jsonl or queries.jsonl; - for stdin) into JSON Lines of records with a vector.

    Each output line is the record's _id, title, text and other fields with its "vector" ({token: weight}), as
    `index --vectors` reads them (--vectors-only: _id and vector alone). Corpus records are encoded as
    title + " " + text (text alone when the title is empty), as BEIR does; with --queries only the text is used.
    Output lines follow input order. Records are checked as `index` checks them: each bad one (invalid JSON or
    UTF-8, no id or text, a duplicate id, ...) is named on stderr with its line and left out, the good ones are all
    written, and the exit code is 1 unless --allow-failures.
    """
    with cli_errors():
        from splade_os.corpus import FieldNames
        from splade_os.indexing.encode_file import encode_path
        from splade_os.model.encoder import SpladeEncoder

        names = FieldNames(id=id_field, text=text_field, title=title_field)
        with SpladeEncoder(
            model_dir, threads=threads, providers=list(providers) or None, batch_size=batch_size,
            max_length=max_length, top_k=top_k, min_weight=min_weight, long_documents=long_documents, **device,
        ) as encoder:  # fmt: skip
            with progress("encode", unit="records") as bar:
                summary = encode_path(
                    encoder, input_path, output, queries=queries, names=names, on_progress=bar.update,
                    on_error=bar.write, keep_fields=not vectors_only,
                )  # fmt: skip
    note = f", {encoder.truncated:,} truncated to {encoder.max_length} tokens" if encoder.truncated else ""
    bad = f", {plural(summary.failed, 'bad record')} left out (listed above)" if summary.failed else ""
    click.echo(f"encoded {plural(summary.written, 'record')}{note}{bad}", err=True)
    if summary.failed and not allow_failures:
        raise click.ClickException(
            f"{summary.failed:,} of {summary.read:,} records were not encoded: fix those lines and encode them "
            "again, or pass --allow-failures to accept the output without them"
        )
