"""`splade-os df` (the document-frequency table of an index) and `splade-os merge` (force-merge after a bulk load)."""

from __future__ import annotations

from pathlib import Path

import click

from splade_os.cli.options import cli_errors, connection_options, echo_json, json_option, model_option
from splade_os.cli.output import size
from splade_os.cli.progress import ProgressFactory, progress_options
from splade_os.cli.sections import OUTPUT, option
from splade_os.connection import ConnectionSettings
from splade_os.engines.clients import connect
from splade_os.errors import ConfigError
from splade_os.words import plural


@click.command()
@click.argument("index")
@model_option(required=False)
@click.option(
    "--tokens",
    "tokens_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Count these tokens (one per line; e.g. the tokens seen) instead of the model's vocabulary.",
)
@click.option(
    "--per-request",
    default=500,
    show_default=True,
    type=click.IntRange(min=1),
    help="Token counts asked in one _msearch.",
)
@progress_options
@json_option
@connection_options
def df(
    index: str,
    model_dir: str | None,
    tokens_file: Path | None,
    per_request: int,
    progress: ProgressFactory,
    as_json: bool,
    settings: ConnectionSettings,
) -> None:
    """Count in how many documents of INDEX each token of the model's vocabulary occurs, and store the table.

    The counts come from the index itself (one search per token, batched), whatever loaded it; they are stored in
    the side index INDEX-vN-df, replacing an earlier table. `doctor --index` says when the table is missing or was
    counted at a document count more than 10% away from today's.
    """
    from splade_os.aliases import df_index_name
    from splade_os.df import build_df
    from splade_os.model.encoder import model_vocabulary

    with cli_errors():
        if (model_dir is None) == (tokens_file is None):
            raise click.UsageError("give either --model (count its vocabulary) or --tokens FILE")
        if tokens_file is not None:
            try:
                tokens = [t for t in tokens_file.read_text(encoding="utf-8").splitlines() if t]
            except (OSError, UnicodeDecodeError) as err:
                raise ConfigError(f"cannot read --tokens {tokens_file}: {err}") from None
            if not tokens:
                raise ConfigError(
                    f"--tokens {tokens_file} lists no tokens (one per line): give them, or --model "
                    "MODEL to count the model's vocabulary"
                )
        else:
            assert model_dir is not None
            tokens = model_vocabulary(model_dir)
        client = connect(settings)
        try:
            with progress("df", len(tokens), unit="tokens") as bar:
                # A list may miss tokens the documents hold: the table says so, and doctor and loads never take it
                # for complete.
                table = build_df(
                    client,
                    index,
                    tokens,
                    per_request=per_request,
                    partial=tokens_file is not None,
                    on_batch=lambda done, total: bar.advance_to(done),
                )
        finally:
            client.close()
    if as_json:
        echo_json(
            {
                "index": table.index,
                "df_index": df_index_name(table.index),
                "tokens_with_df": len(table.counts),
                "vocabulary_size": table.vocabulary_size,
                "documents": table.documents,
                "seconds": round(table.seconds, 3),
                "partial": table.partial,
            }
        )
        return
    click.echo(
        f"df table of {table.index} ({df_index_name(table.index)}): {len(table.counts):,} of "
        f"{table.vocabulary_size:,} tokens with df > 0, over {plural(table.documents, 'document')}, computed in "
        f"{table.seconds:.1f} s"
    )
    if table.partial:
        click.echo(
            f"note: recorded as partial (only the tokens of {tokens_file}): `splade-os df {index} --model "
            "MODEL` counts the whole vocabulary"
        )


@click.command()
@click.argument("index")
@click.option(
    "--segments",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Segments each shard is merged down to.",
)
@click.option("--yes", is_flag=True, help="Merge even an index readers search through an alias.")
@option(
    OUTPUT,
    "--every",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between progress lines.",
)
@json_option
@connection_options
def merge(index: str, segments: int, yes: bool, every: float, as_json: bool, settings: ConnectionSettings) -> None:
    """Force-merge INDEX to --segments segments per shard, after a bulk load: fewer segments, faster searches.

    A merge rewrites the whole index, with I/O and CPU that searches on the same nodes feel while it runs, so an
    alias, or an index an alias points at, is merged only with --yes. Progress goes to stderr every --every seconds.
    """
    from splade_os import aliases
    from splade_os.indexing.merge import SegmentState, check_not_live, force_merge

    def progress(state: SegmentState, elapsed: float) -> None:
        merging = f", {state.merging} merges running ({size(state.merging_bytes)})" if state.merging else ""
        click.echo(f"merging {index}: {plural(state.segments, 'segment')}{merging}, {elapsed:.0f} s", err=True)

    with cli_errors():
        client = connect(settings)
        try:
            if not yes and aliases.resolve(client, index):  # a missing index: force_merge says so
                check_not_live(client, index)
            done = force_merge(client, index, segments, on_poll=progress, every=every)
        finally:
            client.close()
    if as_json:
        echo_json({"index": index, "before": done.before, "after": done.after, "seconds": round(done.seconds, 3)})
        return
    click.echo(f"merged {index}: {done.before} -> {plural(done.after, 'segment')} in {done.seconds:.1f} s")
