"""The option groups of the commands that encode and load, each folded into one argument of the command so that a flag
is declared once and means the same wherever it is taken:

- `encoder_options`: the model folder and the encoder's settings, a `ModelChoice` (`encoder`);
- `reading_options`: how the input is read, a `Reading` (`reading`);
- `load_options`: how a load runs and the index it builds, a `LoadOptions` with its `BulkOptions` (`load`);
- `ray_options`: a distributed load, a `RayOptions`, or None without --ray (`ray`).

`connection_options` (options.py) does the same for the cluster. The flags a command does not take keep the library's
defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from splade_os.cli.options import DEVICE_OPTIONS, Decorator, fold, model_option
from splade_os.cli.sections import LAYOUT, LOADING, MODEL, RAY, READING, option
from splade_os.corpus import FORMATS, FieldNames
from splade_os.indexing.distributed import DEFAULT_BLOCK_SIZE, RayWorkers
from splade_os.indexing.options import BulkOptions, LoadOptions
from splade_os.mappings import DEFAULT_FIRST_PHASE_K
from splade_os.model.settings import EncoderSettings

if TYPE_CHECKING:
    from splade_os.indexing.block_worker import SpladeRecipe
    from splade_os.indexing.precomputed import PrecomputedVectors
    from splade_os.model.encoder import SpladeEncoder

FILE = click.Path(dir_okay=False, path_type=Path)


# ---------------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """How the input is read: its format (None: from the file name), the fields holding the id, the text and the
    title (None: `text` and `title`, or on a re-encode the fields the source index was encoded from) and the column
    names of a CSV/TSV without a header row."""

    format: str | None = None
    id_field: str = "_id"
    text_field: str | None = None
    title_field: str | None = None
    columns: tuple[str, ...] | None = None

    @property
    def names(self) -> FieldNames:
        """The fields a corpus is read from."""
        return FieldNames(id=self.id_field, text=self.text_field or "text", title=self.title_field or "title")

    def corpus_options(self) -> dict[str, Any]:
        """The keywords of `index_corpus` (and `reindex`'s `corpus_options`) that read a corpus this way."""
        return {"names": self.names, "corpus_format": self.format, "columns": list(self.columns or ()) or None}


def _reading(values: dict[str, Any], _: dict[str, Any]) -> Reading:
    columns = values.get("columns")
    return Reading(
        values.get("corpus_format"),
        values["id_field"],
        values["text_field"],
        values["title_field"],
        tuple(columns.split(",")) if columns else None,
    )


def reading_options(*, formats: bool = True) -> Decorator:
    """--id-field, --text-field, --title-field and (`formats`: a corpus in any format `index` reads, or a re-encode)
    --format and --columns, folded into one `reading` argument (a `Reading`)."""
    source = "; --from-index: the field the source index's vectors were encoded from" if formats else ""
    return fold(
        "reading",
        [
            *(
                [
                    click.option(
                        "--format",
                        "corpus_format",
                        type=click.Choice(FORMATS),
                        help="Input format (default: from the name).",
                    )
                ]
                if formats
                else []
            ),
            click.option("--id-field", default="_id", show_default=True, help="Input field holding the document id."),
            click.option("--text-field", help=f"Input field holding the text to encode. [default: text{source}]"),
            click.option("--title-field", help=f"Input field holding the title. [default: title{source}]"),
            *(
                [click.option("--columns", help="Comma-separated column names for CSV/TSV without a header row.")]
                if formats
                else []
            ),
        ],
        _reading,
        READING,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Ray
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a distributed load runs (`index --ray`)."""

    address: str | None = None  # a running Ray cluster ("auto", "ray://host:10001"); None starts one here
    workers: int = 1
    gpus_per_worker: float = 0.0
    block_size: int = DEFAULT_BLOCK_SIZE  # records per block: what a worker indexes, retries and checkpoints

    def pool(self, cpus_per_worker: float) -> RayWorkers:
        """The pool of workers, each reserving `cpus_per_worker` CPUs (its encoder's threads)."""
        return RayWorkers(self.workers, cpus_per_worker, self.gpus_per_worker, self.address)


_RAY_ONLY = {
    "ray_address": "--ray-address",
    "workers": "--workers",
    "gpus_per_worker": "--gpus-per-worker",
    "block_size": "--block-size",
}


def _ray(values: dict[str, Any], _: dict[str, Any]) -> RayOptions | None:
    if not values["on_ray"]:
        given = [flag for name, flag in _RAY_ONLY.items() if values[name] is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} go with --ray")
        return None
    return RayOptions(
        values["ray_address"],
        values["workers"] or 1,
        values["gpus_per_worker"] or 0.0,
        values["block_size"] or DEFAULT_BLOCK_SIZE,
    )


ray_options = fold(
    "ray",
    [
        click.option(
            "--ray",
            "on_ray",
            is_flag=True,
            help="Encode and send with a pool of Ray workers (JSON Lines and "
            "Parquet files, or a folder of them; needs the ray extra). --threads is then the CPUs of each "
            "worker [default 1].",
        ),
        click.option(
            "--ray-address",
            help="With --ray: the Ray cluster to use ('auto', ray://HOST:10001) [default: start one on this machine].",
        ),
        click.option("--workers", type=click.IntRange(min=1), help="With --ray: encoding workers. [default: 1]"),
        click.option(
            "--gpus-per-worker",
            type=click.FloatRange(min=0),
            help="With --ray: GPUs each worker reserves (and encodes on, where the encoder supports it). [default: 0]",
        ),
        click.option(
            "--block-size",
            type=click.IntRange(min=1),
            help="With --ray: records per block, the unit a "
            f"worker indexes, retries and checkpoints. [default: {DEFAULT_BLOCK_SIZE}]",
        ),
    ],
    _ray,
    RAY,
)
"""--ray and the flags that go with it, folded into one `ray` argument: a `RayOptions`, or None without --ray (the
others are then a usage error). Put it above `encoder_options`, whose settings depend on it."""


# ---------------------------------------------------------------------------------------------------------------------
# Model and encoding
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    """The model folder (None: none given) and the settings of its encoder; for `index`, whether the input carries
    vectors made elsewhere instead (`vectors`, in the input field `vector_field`, None: the default)."""

    folder: str | None
    settings: EncoderSettings
    vectors: bool = False
    vector_field: str | None = None

    def load(self) -> SpladeEncoder:
        """The model's encoder, loaded."""
        from splade_os.model.encoder import SpladeEncoder

        return SpladeEncoder(str(self.folder), settings=self.settings)

    def recipe(self) -> SpladeRecipe:
        """The model's encoder as each Ray worker builds it."""
        from splade_os.indexing.block_worker import SpladeRecipe

        return SpladeRecipe(str(self.folder), self.settings)

    def precomputed(self, *, from_index: bool, reading: Reading) -> PrecomputedVectors | None:
        """The pass-through encoder of --vectors (None without it), once the options make sense together."""
        from splade_os.indexing.precomputed import VectorsOptionError, vectors_for_load

        try:
            made = vectors_for_load(
                self.vectors,
                field=self.vector_field,
                model_dir=self.folder,
                from_index=from_index,
                corpus_format=reading.format,
                columns=reading.columns,
                settings=self.settings,
            )
        except VectorsOptionError as err:
            raise click.UsageError(str(err)) from None
        if made is not None and made.vocabulary is None:
            click.echo(
                "warning: --vectors without --model: the vectors' tokens are not checked against a vocabulary, "
                "and searches cannot tell which model's queries fit them; pass --model with the folder of the "
                "model that made them",
                err=True,
            )
        return made


def _threads(env: bool) -> Decorator:
    env_help = "; env: SPLADE_OS_THREADS" if env else ""
    return click.option(
        "--threads",
        type=int,
        envvar="SPLADE_OS_THREADS" if env else None,
        help=f"Encoder threads. [default: all cores{env_help}]",
    )


_VECTORS = [
    click.option(
        "--vectors",
        is_flag=True,
        help='CORPUS is JSON Lines that carry their vectors ({"_id", '
        '"vector": {token: weight}}, as `splade-os encode` writes): index them as they are, no model '
        "needed; --model checks their tokens against its vocabulary.",
    ),
    click.option("--vector-field", help="With --vectors: the input field holding each vector. [default: vector]"),
]
_RUN = click.option("--batch-size", "texts_per_run", type=int, help="Texts per model run. [default: by length]")
_PROVIDERS = click.option(
    "--provider", "providers", multiple=True, help="onnxruntime execution provider, e.g. CUDAExecutionProvider."
)
_CUTS = [
    click.option(
        "--max-length",
        type=int,
        help="Tokens per text, or per window with --long-documents split. [default: the model's]",
    ),
    click.option("--top-k", type=int, help="Keep only the k heaviest tokens of each vector."),
    click.option("--min-weight", type=float, default=0.0, show_default=True, help="Drop tokens lighter than this."),
    click.option(
        "--prune-ratio",
        "max_ratio",
        type=float,
        default=0.0,
        show_default=True,
        help="Drop tokens lighter than this share of the text's largest weight (e.g. 0.1).",
    ),
    click.option(
        "--long-documents",
        type=click.Choice(("truncate", "split")),
        default="truncate",
        show_default=True,
        help="Past --max-length: keep the start (counted as truncated), or max-pool overlapping windows.",
    ),
]


def _encoder(values: dict[str, Any], arguments: dict[str, Any]) -> ModelChoice:
    folder, device = values.pop("model_dir"), values.pop("device_name")
    vectors, field = values.pop("vectors", False), values.pop("vector_field", None)
    threads, texts_per_run = values.pop("threads", None), values.pop("texts_per_run", None)
    ray = arguments.get("ray")
    if isinstance(ray, RayOptions):  # each worker: one thread unless told, on the GPU it reserves unless --device
        threads = threads or 1
        device = "cuda" if ray.gpus_per_worker and device == "cpu" else device
    providers = values.pop("providers", ()) or None
    settings = EncoderSettings(threads=threads, batch_size=texts_per_run, providers=providers, device=device, **values)
    return ModelChoice(folder, settings, vectors, field)


def encoder_options(
    *, model_required: bool = False, encoding: bool = True, runtime: bool = False, vectors: bool = False
) -> Decorator:
    """--model, --device and --precision, folded into one `encoder` argument (a `ModelChoice`), with:

    - `encoding`: --threads, --max-length, --top-k, --min-weight, --prune-ratio and --long-documents;
    - `runtime` (`encode`): --batch-size (texts per model run) and --provider, and --threads from SPLADE_OS_THREADS;
    - `vectors` (`index`): --vectors and --vector-field, for vectors made elsewhere.

    Under `ray_options`, each Ray worker encodes with one thread unless --threads says, on its GPU when it reserves
    one unless --device says.
    """
    options = [
        model_option(required=model_required),
        *(_VECTORS if vectors else []),
        *([_threads(runtime)] if encoding else []),
        *([_RUN] if runtime else []),
        *(_CUTS if encoding else []),
        *([_PROVIDERS] if runtime else []),
        *DEVICE_OPTIONS,
    ]
    return fold("encoder", options, _encoder, MODEL)


# ---------------------------------------------------------------------------------------------------------------------
# Loading and layout
# ---------------------------------------------------------------------------------------------------------------------


def _k_list(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        ks = tuple(int(k) for k in value.split(",") if k.strip())
    except ValueError:
        ks = (0,)
    if any(k < 1 for k in ks):
        raise click.BadParameter(f"{value!r} is not a comma-separated list of k of at least 1, such as 64,256")
    return ks


# The flags of `BulkOptions`, by parameter name (--timeout is not the connection's --request-timeout).
_BULK = {
    "batch_size": "batch_size",
    "chunk_bytes": "chunk_bytes",
    "max_retries": "max_retries",
    "retry_for": "retry_for",
    "bulk_timeout": "request_timeout",
}
_STATE = [
    option(
        LOADING,
        "--dead-letter",
        type=FILE,
        help="Where failed and skipped documents go, with the reason. "
        "[default: ALIAS.dead-letter.jsonl in the state folder]",
    ),
    option(LOADING, "--checkpoint", type=FILE, help="[default: ALIAS.checkpoint.json in the state folder]"),
    option(
        LOADING,
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Where loads keep their "
        "checkpoint and dead letters, in CLUSTER/NAME/ below it, so --resume finds them from any folder. [default: "
        "$SPLADE_OS_STATE_DIR, else $XDG_STATE_HOME/splade-os, else ~/.local/state/splade-os]",
    ),
]
_SENDING = [
    option(LOADING, "--chunk-bytes", default=8 * 1024 * 1024, show_default=True, help="Largest bulk request in bytes."),
    option(
        LOADING, "--max-retries", default=6, show_default=True, help="Retries of documents the cluster answers 429 to."
    ),
    option(
        LOADING, "--retry-for", default=300.0, show_default=True, help="Seconds to wait out connection errors and 5xx."
    ),
    option(
        LOADING,
        "--timeout",
        "bulk_timeout",
        default=120.0,
        show_default=True,
        help="Seconds one bulk request may take.",
    ),
]
_FIRST_PHASE = [
    option(
        LAYOUT,
        "--first-phase-k",
        type=click.IntRange(min=1),
        help="Also store each document's N heaviest terms "
        "in the pruned field splade_first, which two-phase search queries first (two-step search; "
        f"{DEFAULT_FIRST_PHASE_K} is a good start, `tune` measures it). [default: none; --from-index and reindex: "
        "the source's]",
    ),
    option(
        LAYOUT,
        "--no-first-phase",
        is_flag=True,
        help="Build no pruned first-phase field (the default of a new "
        "index; --from-index and reindex: drop the source's).",
    ),
    option(
        LAYOUT,
        "--first-phase-candidates",
        callback=_k_list,
        metavar="K,K",
        help="Also build a candidate pruned "
        "field for each of these k (such as 64,256), for `tune` to choose the k that is fastest at its agreement "
        "target; two-phase search then uses the field tune stored. Each costs about as much disk as the pruned "
        "field. [default: none; --from-index and reindex: the source's]",
    ),
    option(
        LAYOUT,
        "--concurrent-segment-search/--no-concurrent-segment-search",
        default=None,
        help="A new index "
        "searches each shard's segments in parallel (OpenSearch 2.12+; Elasticsearch decides per query and has no "
        "such setting), recorded in its _meta. [default: the cluster's setting; --from-index and reindex: the "
        "source's]",
    ),
    option(
        LAYOUT,
        "--optimize",
        is_flag=True,
        help="After a successful load, force-merge the index to one segment "
        "before the alias moves (faster searches; takes a while on a large index).",
    ),
]


def _load_flags(reindex: bool) -> list[Decorator]:
    """The loading and layout flags of `index`, or (`reindex`) the few of `reindex`, which builds the next version
    of an alias with the current version's analyzer unless told."""
    index = not reindex
    analyzer = (
        "[default: the current version's]"
        if reindex
        else "[default: english; --from-index: the source's; env: SPLADE_OS_ANALYZER]"
    )
    return [
        *(
            [
                option(
                    LOADING,
                    "--recreate",
                    is_flag=True,
                    help="Start over: build a new index version, switch the alias when done.",
                ),
                option(LOADING, "--resume", is_flag=True, help="Continue an interrupted run from its checkpoint."),
            ]
            if index
            else []
        ),
        option(
            LOADING,
            "--break-lock",
            is_flag=True,
            help="Take over the lease of another load on the alias once it "
            "expired (that load was stopped or killed). Only one load per alias runs at a time.",
        ),
        option(
            LOADING, "--allow-failures", is_flag=True, help="Move the alias and exit 0 even when some documents failed."
        ),
        *(
            [
                option(
                    LOADING,
                    "--keep-previous",
                    is_flag=True,
                    help="After --recreate, keep the previous version (the default).",
                )
            ]
            if index
            else []
        ),
        option(
            LOADING,
            "--delete-previous",
            is_flag=True,
            help="Once the alias moved to a verified new version, delete the previous one.",
        ),
        *(
            [
                option(
                    LOADING,
                    "--index-empty",
                    is_flag=True,
                    help="Index corpus documents with empty text too (default: "
                    "skip them, each one in the dead-letter file). --from-index always copies every document.",
                )
            ]
            if index
            else []
        ),
        *(_STATE if index else _STATE[:1]),
        option(LOADING, "--batch-size", default=256, show_default=True, help="Documents encoded and sent together."),
        *(_SENDING if index else []),
        option(LAYOUT, "--shards", default=1, show_default=True, help="Primary shards of a new index."),
        option(
            LAYOUT,
            "--replicas",
            type=click.IntRange(min=0),
            help="Replicas of a new index. [default: "
            "auto_expand_replicas 0-1: one where a second node can hold it, none on a single node]",
        ),
        option(
            LAYOUT,
            "--analyzer",
            envvar=None if reindex else "SPLADE_OS_ANALYZER",
            help=f"Analyzer of the BM25 text fields of a new index, recorded in its _meta. {analyzer}",
        ),
        *(
            [
                option(
                    LAYOUT,
                    "--vectors-in-source/--no-vectors-in-source",
                    default=None,
                    help="Keep each vector in the "
                    "stored _source too (the default; --from-index: the source's choice). Leaving it out saves disk; "
                    "explanations then re-encode the hit's text.",
                )
            ]
            if index
            else []
        ),
        *_FIRST_PHASE,
    ]


def _load(values: dict[str, Any], _: dict[str, Any]) -> LoadOptions:
    if values.get("recreate") and values.get("resume"):
        raise click.UsageError("--recreate starts over and --resume continues: pick one")
    if values.pop("keep_previous", False) and values["delete_previous"]:
        raise click.UsageError("--keep-previous and --delete-previous contradict each other: pick one")
    k, off = values.pop("first_phase_k"), values.pop("no_first_phase")
    if off and k is not None:
        raise click.UsageError("--first-phase-k and --no-first-phase contradict each other: pick one")
    if "index_empty" in values:
        values["skip_empty"] = not values.pop("index_empty")
    bulk = BulkOptions(**{field: values.pop(name) for name, field in _BULK.items() if name in values})
    return LoadOptions(**values, first_phase_k=0 if off else k, bulk=bulk)


def load_options(*, reindex: bool = False) -> Decorator:
    """How a load runs (--recreate, --resume, --dead-letter, --batch-size, ... under Loading) and the index it builds
    (--shards, --analyzer, --first-phase-k, --optimize, ... under Layout), folded into one `load` argument (a
    `LoadOptions` with its `BulkOptions`). `reindex`: only the flags `reindex` takes."""
    return fold("load", _load_flags(reindex), _load)
