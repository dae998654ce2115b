"""The CLI's option groups without a node: each decorator turns its flags into one object (with the library's
defaults when no flag is given), `--help` lists the options by purpose, `index` stays a thin command, and the checks of
`index --vectors` live beside `PrecomputedVectors` with the messages the CLI prints."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from splade_os.cli import groups, main
from splade_os.cli.index import index as index_command
from splade_os.cli.options import connection_options
from splade_os.cli.sections import ORDER
from splade_os.connection import ConnectionSettings
from splade_os.corpus import FieldNames
from splade_os.errors import ConfigError
from splade_os.indexing.distributed import DEFAULT_BLOCK_SIZE, RayWorkers
from splade_os.indexing.options import BulkOptions, LoadOptions
from splade_os.indexing.precomputed import DEFAULT_VECTOR_FIELD, VectorsOptionError, vectors_for_load
from splade_os.model.settings import EncoderSettings

REPO = Path(__file__).resolve().parents[1]
MODEL = str(REPO / "models" / "splade-tiny")
CLI = REPO / "splade_os" / "cli"


def _catch(*groups: Callable[[Any], Any]) -> tuple[click.Command, dict[str, Any]]:
    """A command taking `groups` (the first on top) that keeps what it was called with."""
    seen: dict[str, Any] = {}

    def run(**kwargs: Any) -> None:
        seen.update(kwargs)

    for group in reversed(groups):
        run = group(run)
    return click.command()(run), seen


def _parse(*groups: Callable[[Any], Any], args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    command, seen = _catch(*groups)
    result = CliRunner().invoke(command, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen


# ----------------------------------------------------------------------------------------------------------------
# Each group yields one object
# ----------------------------------------------------------------------------------------------------------------


def test_encoder_options_yield_the_model_folder_and_its_settings() -> None:
    seen = _parse(
        groups.encoder_options(vectors=True),
        args=[
            "--model",
            MODEL,
            "--threads",
            "2",
            "--max-length",
            "64",
            "--top-k",
            "5",
            "--min-weight",
            "0.1",
            "--prune-ratio",
            "0.2",
            "--long-documents",
            "split",
            "--device",
            "cpu",
        ],
    )
    assert set(seen) == {"encoder"}
    assert seen["encoder"] == groups.ModelChoice(
        MODEL,
        EncoderSettings(
            threads=2,
            max_length=64,
            top_k=5,
            min_weight=0.1,
            max_ratio=0.2,
            long_documents="split",
        ),
    )
    # No flag: the encoder's own defaults, no model, no vectors.
    assert _parse(groups.encoder_options(), args=[], env={"SPLADE_OS_MODEL": ""})["encoder"] == groups.ModelChoice(
        None, EncoderSettings()
    )
    vectors = _parse(groups.encoder_options(vectors=True), args=["--vectors", "--vector-field", "v"])["encoder"]
    assert (vectors.vectors, vectors.vector_field) == (True, "v")


def test_encode_runtime_flags_and_a_bare_model_choice() -> None:
    runtime = _parse(
        groups.encoder_options(model_required=True, runtime=True),
        args=[
            "--model",
            MODEL,
            "--batch-size",
            "8",
            "--provider",
            "CPUExecutionProvider",
        ],
        env={"SPLADE_OS_THREADS": "3"},
    )["encoder"]
    assert runtime.settings == EncoderSettings(threads=3, batch_size=8, providers=("CPUExecutionProvider",))
    # Without `runtime`, SPLADE_OS_THREADS is not read (on Ray --threads is each worker's CPUs).
    assert _parse(groups.encoder_options(), args=[], env={"SPLADE_OS_THREADS": "3"})["encoder"].settings.threads is None
    bare = _parse(groups.encoder_options(model_required=True, encoding=False), args=["--model", MODEL])["encoder"]
    assert bare == groups.ModelChoice(MODEL, EncoderSettings())
    command, _ = _catch(groups.encoder_options(encoding=False))
    assert "--threads" not in [opt for param in command.params for opt in param.opts]


def test_a_bad_encoder_setting_is_one_error_line() -> None:
    command, _ = _catch(groups.encoder_options())
    result = CliRunner().invoke(command, ["--precision", "bf16"])
    assert result.exit_code == 1 and "Error: precision bf16 needs the PyTorch backend" in result.output


def test_ray_options_yield_ray_options_and_set_each_workers_encoder() -> None:
    seen = _parse(
        groups.ray_options,
        groups.encoder_options(),
        args=[
            "--ray",
            "--workers",
            "3",
            "--gpus-per-worker",
            "1",
            "--ray-address",
            "auto",
            "--precision",
            "bf16",
            "--model",
            MODEL,
        ],
    )
    assert seen["ray"] == groups.RayOptions("auto", 3, 1.0, DEFAULT_BLOCK_SIZE)
    # Each worker: one thread unless told, on the GPU it reserves unless --device says otherwise.
    assert seen["encoder"].settings == EncoderSettings(threads=1, device="cuda", precision="bf16")
    assert seen["ray"].pool(2) == RayWorkers(3, 2.0, 1.0, "auto")
    told = _parse(groups.ray_options, groups.encoder_options(), args=["--ray", "--threads", "4", "--device", "cuda:1"])
    assert told["encoder"].settings.threads == 4 and told["encoder"].settings.device == "cuda:1"
    assert _parse(groups.ray_options, args=[])["ray"] is None


def test_ray_flags_without_ray_are_usage_errors() -> None:
    command, _ = _catch(groups.ray_options)
    result = CliRunner().invoke(command, ["--workers", "2", "--block-size", "10"])
    assert result.exit_code == 2 and "--workers, --block-size go with --ray" in result.output


def test_reading_options_yield_a_reading() -> None:
    reading = _parse(
        groups.reading_options(),
        args=[
            "--format",
            "csv",
            "--id-field",
            "id",
            "--text-field",
            "body",
            "--columns",
            "id,body",
        ],
    )["reading"]
    assert reading == groups.Reading("csv", "id", "body", None, ("id", "body"))
    assert reading.names == FieldNames(id="id", text="body", title="title")
    assert reading.corpus_options() == {"names": reading.names, "corpus_format": "csv", "columns": ["id", "body"]}
    plain = _parse(groups.reading_options(formats=False), args=[])["reading"]
    assert plain == groups.Reading() and plain.names == FieldNames() and plain.corpus_options()["columns"] is None
    command, _ = _catch(groups.reading_options(formats=False))
    assert {opt for param in command.params for opt in param.opts} == {"--id-field", "--text-field", "--title-field"}


def test_load_options_default_to_the_librarys_and_fold_every_flag() -> None:
    assert _parse(groups.load_options(), args=[], env={"SPLADE_OS_ANALYZER": ""})["load"] == LoadOptions()
    assert _parse(groups.load_options(reindex=True), args=[])["load"] == LoadOptions()
    load = _parse(
        groups.load_options(),
        args=[
            "--recreate",
            "--delete-previous",
            "--index-empty",
            "--break-lock",
            "--batch-size",
            "10",
            "--timeout",
            "5",
            "--chunk-bytes",
            "1000",
            "--max-retries",
            "2",
            "--retry-for",
            "7",
            "--shards",
            "2",
            "--replicas",
            "0",
            "--no-vectors-in-source",
            "--no-first-phase",
            "--optimize",
            "--state-dir",
            "state",
        ],
        env={"SPLADE_OS_ANALYZER": "standard"},
    )["load"]
    assert load == LoadOptions(
        recreate=True,
        delete_previous=True,
        skip_empty=False,
        break_lock=True,
        shards=2,
        replicas=0,
        analyzer="standard",
        vectors_in_source=False,
        first_phase_k=0,
        optimize=True,
        state_dir=Path("state"),
        bulk=BulkOptions(batch_size=10, chunk_bytes=1000, max_retries=2, retry_for=7.0, request_timeout=5.0),
    )
    # reindex keeps the current version's analyzer unless told: SPLADE_OS_ANALYZER is not read there.
    kept = _parse(
        groups.load_options(reindex=True),
        args=["--first-phase-candidates", "64,256"],
        env={"SPLADE_OS_ANALYZER": "standard"},
    )["load"]
    assert kept.analyzer is None and kept.first_phase_candidates == (64, 256)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recreate", "--resume"], "--recreate starts over and --resume continues: pick one"),
        (["--keep-previous", "--delete-previous"], "--keep-previous and --delete-previous contradict each other"),
        (["--first-phase-k", "8", "--no-first-phase"], "--first-phase-k and --no-first-phase contradict each other"),
    ],
)
def test_contradicting_load_flags_are_usage_errors(args: list[str], message: str) -> None:
    command, _ = _catch(groups.load_options())
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 2 and message in result.output


def test_connection_options_yield_connection_settings() -> None:
    settings = _parse(connection_options, args=["--url", "http://a:9200,http://b:9200", "--engine", "elasticsearch"])
    assert settings["settings"] == ConnectionSettings.from_env(
        {}, urls=("http://a:9200", "http://b:9200"), engine="elasticsearch"
    )


# ----------------------------------------------------------------------------------------------------------------
# --help by purpose, a thin index
# ----------------------------------------------------------------------------------------------------------------


def _sections(help_text: str) -> dict[str, list[str]]:
    """Each section of a --help and the options listed in it."""
    found: dict[str, list[str]] = {}
    current = None
    for line in help_text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = found.setdefault(line[:-1], [])
        elif current is not None and line.startswith("  -"):
            current.append(line.split()[0].rstrip(","))
    return found


def test_index_help_lists_its_options_by_purpose() -> None:
    shown = CliRunner().invoke(main, ["index", "--help"], terminal_width=120)
    assert shown.exit_code == 0
    sections = _sections(shown.output)
    assert list(sections) == [
        "Options",
        "Model/encoding",
        "Reading",
        "Loading",
        "Layout",
        "Ray",
        "Output",
        "Connection",
    ]
    assert sections["Options"] == ["--index", "-h"]
    assert {"--model", "--vectors", "--threads", "--prune-ratio", "--device"} <= set(sections["Model/encoding"])
    assert {"--from-index", "--format", "--text-field", "--columns"} <= set(sections["Reading"])
    assert {"--recreate", "--resume", "--dead-letter", "--batch-size", "--timeout", "--yes"} <= set(sections["Loading"])
    assert {"--shards", "--analyzer", "--first-phase-k", "--optimize"} <= set(sections["Layout"])
    assert sections["Ray"] == ["--ray", "--ray-address", "--workers", "--gpus-per-worker", "--block-size"]
    assert sections["Output"] == ["--progress", "--log-every", "--json"]
    assert {"--url", "--password", "--engine", "--config"} <= set(sections["Connection"])


def _commands(group: click.Group) -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((name, command))
        if isinstance(command, click.Group):
            found += [(f"{name} {sub}", c) for sub, c in _commands(command)]
    return found


@pytest.mark.parametrize(("name", "command"), _commands(main), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_lists_its_options_by_section_and_names_each_once(name: str, command: click.Command) -> None:
    shown = CliRunner().invoke(main, [*name.split(), "--help"])
    assert shown.exit_code == 0, shown.output
    sections = list(_sections(shown.output))
    assert sections[0] == "Options" and [s for s in sections if s in ORDER] == [s for s in ORDER if s in sections]
    names = [param.name for param in command.params]
    assert len(names) == len(set(names)), f"two flags of `{name}` set the same parameter"


def test_index_is_a_thin_command() -> None:
    assert len(inspect.signature(index_command.callback).parameters) <= 15  # type: ignore[arg-type]


def test_command_modules_import_no_private_helper_of_another() -> None:
    private = []
    for path in CLI.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("splade_os.cli."):
                private += [f"{path.name} imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not private, private


def test_the_group_docstring_names_both_engines() -> None:
    shown = CliRunner().invoke(main, ["--help"]).output
    assert "OpenSearch or Elasticsearch" in shown


# ----------------------------------------------------------------------------------------------------------------
# The checks of --vectors, beside PrecomputedVectors
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vectors": False, "field": "v", "model_dir": MODEL}, "--vector-field goes with --vectors"),
        ({"vectors": False}, "give --model (or set SPLADE_OS_MODEL), or --vectors for vectors made elsewhere"),
        (
            {"vectors": True, "from_index": True},
            "--vectors reads JSON Lines that carry their vectors: not --from-index, CSV/TSV or --columns",
        ),
        ({"vectors": True, "corpus_format": "csv"}, "--vectors reads JSON Lines that carry their vectors"),
        ({"vectors": True, "columns": ["id", "vector"]}, "--vectors reads JSON Lines that carry their vectors"),
        (
            {"vectors": True, "settings": EncoderSettings(top_k=5, max_ratio=0.1, long_documents="split")},
            "--top-k, --prune-ratio, --long-documents change how text is encoded: with --vectors the vectors are "
            "indexed as they are (prune them where they are made)",
        ),
    ],
)
def test_vectors_checks_raise_from_precomputed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(VectorsOptionError) as raised:
        vectors_for_load(**kwargs)
    assert str(raised.value) == message or str(raised.value).startswith(message)
    assert isinstance(raised.value, ConfigError)


def test_vectors_for_load_gives_the_pass_through_encoder() -> None:
    assert vectors_for_load(False, model_dir=MODEL, settings=EncoderSettings(top_k=5)) is None  # the model encodes
    unchecked = vectors_for_load(True, settings=EncoderSettings(threads=2, device="cuda"))  # no effect on vectors
    assert unchecked is not None and unchecked.vocabulary is None and unchecked.vector_field == DEFAULT_VECTOR_FIELD
    checked = vectors_for_load(True, field="v", model_dir=MODEL, corpus_format="jsonl")
    assert checked is not None and checked.vocabulary and checked.vector_field == "v"


def test_index_says_the_vectors_checks_as_usage_errors(tmp_path: Path) -> None:
    corpus = tmp_path / "v.jsonl"
    corpus.write_text('{"_id": "1", "vector": {"a": 1.0}}\n')
    result = CliRunner().invoke(main, ["index", str(corpus), "--index", "x", "--vectors", "--long-documents", "split"])
    assert result.exit_code == 2 and "--long-documents change how text is encoded" in result.output
