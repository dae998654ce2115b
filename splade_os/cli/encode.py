"""`splade-os encode`: JSON Lines of BEIR records in, JSON Lines of sparse vectors out."""

from __future__ import annotations

import sys

import click

from splade_os.cli.options import cli_errors, model_option


@click.command("encode")
@click.argument("input_path", metavar="INPUT", default="-")
@model_option(required=True)
@click.option("--output", "-o", "output", default="-", show_default=True, help="Output file; - for stdout.")
@click.option("--queries", is_flag=True, help="INPUT is queries: encode with the query encoder, ignore titles.")
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
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def encode(
    input_path: str,
    model_dir: str,
    output: str,
    queries: bool,
    threads: int | None,
    batch_size: int | None,
    max_length: int | None,
    top_k: int | None,
    min_weight: float,
    long_documents: str,
    providers: tuple[str, ...],
    no_progress: bool,
) -> None:
    """Encode INPUT (BEIR corpus.jsonl or queries.jsonl; - for stdin) into {"_id", "vector"} JSON Lines.

    Corpus records are encoded as title + " " + text (text alone when the title is empty), as BEIR does;
    with --queries only the text is used. Output lines follow input order.
    """
    from tqdm import tqdm

    with cli_errors():
        from splade_os.encode_file import encode_path
        from splade_os.encoder import SpladeEncoder

        encoder = SpladeEncoder(
            model_dir, threads=threads, providers=list(providers) or None, batch_size=batch_size,
            max_length=max_length, top_k=top_k, min_weight=min_weight, long_documents=long_documents,
        )  # fmt: skip
        with tqdm(unit=" records", file=sys.stderr, disable=no_progress, desc="encode") as bar:
            count = encode_path(encoder, input_path, output, queries=queries, on_progress=bar.update)
    note = f", {encoder.truncated:,} truncated to {encoder.max_length} tokens" if encoder.truncated else ""
    click.echo(f"encoded {count:,} records{note}", err=True)
