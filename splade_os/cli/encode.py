"""`splade-os encode`: JSON Lines of BEIR records in, JSON Lines of sparse vectors out."""

from __future__ import annotations

import click

from splade_os.cli.groups import ModelChoice, Reading, encoder_options, reading_options
from splade_os.cli.options import cli_errors
from splade_os.cli.progress import ProgressFactory, progress_options
from splade_os.cli.sections import OUTPUT, READING, option
from splade_os.words import plural


@click.command("encode")
@click.argument("input_path", metavar="INPUT", default="-")
@encoder_options(model_required=True, runtime=True)
@reading_options(formats=False)
@option(READING, "--queries", is_flag=True, help="INPUT is queries: encode with the query encoder, ignore titles.")
@option(OUTPUT, "--output", "-o", "output", default="-", show_default=True, help="Output file; - for stdout.")
@option(
    OUTPUT,
    "--vectors-only",
    is_flag=True,
    help="Write only _id and vector, not the record's title, text and "
    "other fields (which `index --vectors` stores beside the vector).",
)
@click.option("--allow-failures", is_flag=True, help="Exit 0 even when some records were bad and left out.")
@progress_options
def encode(
    input_path: str,
    encoder: ModelChoice,
    reading: Reading,
    queries: bool,
    output: str,
    vectors_only: bool,
    allow_failures: bool,
    progress: ProgressFactory,
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
        from splade_os.indexing.encode_file import encode_path

        with encoder.load() as model, progress("encode", unit="records") as bar:
            summary = encode_path(
                model,
                input_path,
                output,
                queries=queries,
                names=reading.names,
                on_progress=bar.update,
                on_error=bar.write,
                keep_fields=not vectors_only,
            )
    note = f", {model.truncated:,} truncated to {model.max_length} tokens" if model.truncated else ""
    bad = f", {plural(summary.failed, 'bad record')} left out (listed above)" if summary.failed else ""
    click.echo(f"encoded {plural(summary.written, 'record')}{note}{bad}", err=True)
    if summary.failed and not allow_failures:
        raise click.ClickException(
            f"{summary.failed:,} of {summary.read:,} records were not encoded: fix those lines and encode them "
            "again, or pass --allow-failures to accept the output without them"
        )
