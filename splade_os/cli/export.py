"""`splade-os export`: a masked-LM checkpoint -> an ONNX model with SPLADE pooling in the graph."""

from __future__ import annotations

from pathlib import Path

import click

from splade_os.cli.options import cli_errors, echo_json, json_option


@click.command("export")
@click.argument("model")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--quantize", type=click.Choice(["int8"]), default=None, help="Dynamic int8 quantization (CPU).")
@click.option(
    "--max-length", type=int, default=None, help="Longest input in tokens. [default: the model's, at most 512]"
)
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset version (14-21).")
@click.option("--chunk-size", type=int, default=None, help="Vocabulary columns per projection tile. [default: 128]")
@click.option(
    "--query-mode",
    type=click.Choice(["model", "inference-free"]),
    default=None,
    help="How queries are encoded. [default: inference-free when the model ships idf.json, else model]",
)
@click.option("--revision", default=None, help="Hub branch, tag or commit to export.")
@click.option("--overwrite", is_flag=True, help="Write into OUT_DIR even if it is not empty.")
@click.option(
    "--with-checkpoint",
    is_flag=True,
    help="Also copy the checkpoint (config.json, weights) into OUT_DIR, for --device cuda on the same folder.",
)
@json_option
def export(
    model: str,
    out_dir: Path,
    quantize: str | None,
    max_length: int | None,
    opset: int,
    chunk_size: int | None,
    query_mode: str | None,
    revision: str | None,
    overwrite: bool,
    with_checkpoint: bool,
    as_json: bool,
) -> None:
    """Export MODEL (a Hugging Face id such as naver/splade-v3, or a checkpoint folder) to OUT_DIR.

    Writes model.onnx (returns [batch, vocab] SPLADE weights), tokenizer.json, idf.json when the model has one,
    and manifest.json. Needs the export extra: pip install 'splade-os[export]'.
    """
    with cli_errors():
        from splade_os.model.export import DEFAULT_CHUNK_SIZE, export_model

        manifest = export_model(
            model,
            out_dir,
            quantize=quantize,
            max_length=max_length,
            opset=opset,
            chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
            query_mode=query_mode,
            revision=revision,
            overwrite=overwrite,
            with_checkpoint=with_checkpoint,
        )
    if as_json:
        echo_json({"out_dir": str(out_dir), "manifest": manifest})
        return
    weights = "fp32" if manifest["quantization"] in (None, "none") else manifest["quantization"]
    click.echo(
        f"exported {manifest['name']} to {out_dir}: vocab {manifest['vocab_size']:,}, max length "
        f"{manifest['max_length']}, {weights} weights, query mode {manifest['query_mode']}, "
        f"sha256 {manifest['sha256'][:12]}"
    )
