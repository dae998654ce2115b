"""SpladeEncoder on the committed splade-tiny export: golden values, order, pruning, bad input, no torch."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundled_checkpoint import pytorch_model_from_the_export
from click.testing import CliRunner
from tokenizers import Tokenizer

from splade_os.cli.encode import encode
from splade_os.errors import ConfigError, InputError, ModelError
from splade_os.model.encoder import SpladeEncoder
from splade_os.vectors import SparseVector

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "models" / "splade-tiny"
BUNDLED_INT8 = REPO / "models" / "splade-tiny-int8"

GOLDEN_TEXT = "What causes a heart attack?"
# splade-tiny (models/splade-tiny, fp32): the exact token set and weights; PyTorch gives the same to 2e-6.
GOLDEN = {
    "heart": 2.4391,
    "causes": 2.3517,
    "attack": 2.3192,
    "cause": 2.0835,
    "fighting": 1.0958,
    "cancer": 1.0865,
    "disease": 1.0108,
    "pulse": 0.9149,
    "effects": 0.7848,
    "movement": 0.5883,
    "why": 0.3458,
    "fire": 0.2612,
    "stomach": 0.2515,
    "influence": 0.1757,
    "produce": 0.1754,
    "shot": 0.1538,
}
SPECIAL = {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"}


@pytest.fixture(scope="module")
def encoder() -> SpladeEncoder:
    return SpladeEncoder(BUNDLED, threads=2)


def _no_special(vector: SparseVector) -> bool:
    return not any(t in SPECIAL or t.startswith("[unused") for t in vector)


# ----------------------------------------------------------------------------------------------------------------
# Golden values and agreement with the reference
# ----------------------------------------------------------------------------------------------------------------


def test_golden_token_set_and_weights(encoder: SpladeEncoder) -> None:
    vector = encoder.encode_documents([GOLDEN_TEXT])[0]
    assert set(vector) == set(GOLDEN)
    for token, weight in GOLDEN.items():
        assert vector[token] == pytest.approx(weight, abs=1e-3), token


@pytest.mark.torch
def test_golden_values_come_from_the_pytorch_model() -> None:
    """transformers' BertForMaskedLM plus SPLADE pooling in PyTorch gives GOLDEN: the ONNX graph's pooling, tiling
    and weights reproduce the reference, without the original checkpoint (only the committed export)."""
    torch = pytest.importorskip("torch")
    model = pytorch_model_from_the_export(BUNDLED)
    tokenizer = Tokenizer.from_file(str(BUNDLED / "tokenizer.json"))
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([tokenizer.encode(GOLDEN_TEXT).ids])).logits
    weights = torch.log1p(torch.relu(logits)).max(dim=1).values[0].numpy()
    ids = np.flatnonzero(weights > 0)
    reference = {tokenizer.id_to_token(int(i)): float(weights[i]) for i in ids}
    reference = {t: w for t, w in reference.items() if t not in SPECIAL}
    assert set(reference) == set(GOLDEN)
    for token, weight in GOLDEN.items():
        assert reference[token] == pytest.approx(weight, abs=1e-3), token


def test_int8_model_keeps_the_golden_head() -> None:
    vector = SpladeEncoder(BUNDLED_INT8, threads=2).encode_documents([GOLDEN_TEXT])[0]
    top = [t for t, _ in vector.sorted_items()[:4]]
    assert set(top) == {"heart", "causes", "attack", "cause"}


# ----------------------------------------------------------------------------------------------------------------
# Batching, order, pruning, special tokens
# ----------------------------------------------------------------------------------------------------------------

TEXTS = [
    "Aspirin lowers the risk of a second heart attack in patients with coronary disease. " * 6,
    "short text",
    "Vitamin D deficiency is associated with bone loss.",
    "",
    "Gene expression in T cells changes after infection with influenza. " * 20,
]


def test_input_order_and_batching_do_not_change_results(encoder: SpladeEncoder) -> None:
    together = encoder.encode_documents(TEXTS)
    one_by_one = SpladeEncoder(BUNDLED, threads=1, batch_size=1)
    for text, vector in zip(TEXTS, together, strict=True):
        alone = one_by_one.encode_documents([text])[0]
        assert set(alone) == set(vector)
        assert all(abs(alone[t] - vector[t]) < 1e-4 for t in vector)
    reversed_vectors = encoder.encode_documents(TEXTS[::-1])
    assert [v.to_dict().keys() for v in reversed_vectors[::-1]] == [v.to_dict().keys() for v in together]


def test_special_tokens_are_never_emitted(encoder: SpladeEncoder) -> None:
    texts = [*TEXTS, "[CLS] [SEP] [MASK] [PAD] [unused3] [UNK]", "🙂🙂🙂", "\x00\x01\x02"]
    for vector in encoder.encode_documents(texts) + encoder.encode_queries(texts):
        assert _no_special(vector), vector.decode(10)


def test_top_k_and_min_weight(encoder: SpladeEncoder) -> None:
    full = encoder.encode_documents(TEXTS[:1])[0]
    pruned = SpladeEncoder(BUNDLED, top_k=5, min_weight=0.5).encode_documents(TEXTS[:1])[0]
    assert len(pruned) == 5
    assert pruned.to_dict() == full.top_k(5).to_dict()
    floor = SpladeEncoder(BUNDLED, min_weight=1.0).encode_documents(TEXTS[:1])[0]
    assert floor.to_dict() == full.prune(1.0).to_dict()


def test_queries_in_model_mode_equal_documents(encoder: SpladeEncoder) -> None:
    assert encoder.query_mode == "model"
    assert encoder.encode_queries([GOLDEN_TEXT]) == encoder.encode_documents([GOLDEN_TEXT])


# ----------------------------------------------------------------------------------------------------------------
# Long documents
# ----------------------------------------------------------------------------------------------------------------


def test_truncation_is_counted() -> None:
    encoder = SpladeEncoder(BUNDLED, max_length=32)
    vectors = encoder.encode_documents([TEXTS[0], TEXTS[1], TEXTS[4]])
    assert encoder.truncated == 2
    assert all(len(v) > 0 for v in vectors)
    encoder.encode_queries([TEXTS[4]])
    assert encoder.truncated == 3


def test_split_max_pools_overlapping_windows() -> None:
    text = TEXTS[4]
    truncated = SpladeEncoder(BUNDLED, max_length=32).encode_documents([text])[0]
    split_encoder = SpladeEncoder(BUNDLED, max_length=32, long_documents="split", stride=8)
    split = split_encoder.encode_documents([text, "tiny"])[0]
    assert split_encoder.truncated == 0
    # The first window is the truncated text; max-pooling over more windows can only add or raise weights.
    assert set(truncated) <= set(split)
    assert all(split[t] >= w - 1e-5 for t, w in truncated.items())
    assert len(split) > len(truncated)


@pytest.mark.parametrize("cut", [{"max_length": 32}, {"max_length": 32, "long_documents": "split", "stride": 8}])
def test_one_call_can_cut_as_another_encoder_would(encoder: SpladeEncoder, cut: dict[str, Any]) -> None:
    """An explanation encodes a hit's text as the index recorded: the same vectors as an encoder built that way,
    and the encoder's own settings stay as they were."""
    texts = [TEXTS[4], TEXTS[0], "tiny"]
    with SpladeEncoder(BUNDLED, **cut) as built_that_way:
        expected = built_that_way.encode_documents(texts)
    for _ in range(2):  # the second call reuses the tokenizer the first one made
        assert encoder.encode_documents(texts, **cut) == expected
    assert encoder.encode_documents(texts) == SpladeEncoder(BUNDLED).encode_documents(texts) != expected
    assert (encoder.max_length, encoder.long_documents) == (512, "truncate")
    with pytest.raises(ConfigError, match="stride"):
        encoder.encode_documents(texts, max_length=32, long_documents="split", stride=20)
    with pytest.raises(ConfigError, match="max_length must be between 3 and 512"):
        encoder.encode_documents(texts, max_length=1024)


def test_bad_stride_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="stride"):
        SpladeEncoder(BUNDLED, max_length=32, long_documents="split", stride=20)


# ----------------------------------------------------------------------------------------------------------------
# Bad input: a defined result or a clear error, never a crash inside onnxruntime
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\t  \u3000", "\u200b"])
def test_empty_and_whitespace_give_an_empty_vector(encoder: SpladeEncoder, text: str) -> None:
    # "\u200b" (zero-width space) is not whitespace to Python but the tokenizer drops it: no tokens, no weights.
    [document] = encoder.encode_documents([text])
    [query] = encoder.encode_queries([text])
    if text.strip():
        assert isinstance(document, SparseVector)
    else:
        assert document == SparseVector({}) and query == SparseVector({})


def test_empty_batch(encoder: SpladeEncoder) -> None:
    assert encoder.encode_documents([]) == []
    assert encoder.encode_queries([]) == []


def test_one_megabyte_of_text_is_truncated_not_a_crash() -> None:
    encoder = SpladeEncoder(BUNDLED, threads=2)
    text = ("Protein folding in the endoplasmic reticulum is monitored by chaperones. " * 14_000)[:1_000_000]
    [vector] = encoder.encode_documents([text])
    assert encoder.truncated == 1
    assert "protein" in vector and _no_special(vector)


@pytest.mark.parametrize(
    "text",
    ["心脏病发作的原因是什么", "Причины сердечного приступа", "أسباب النوبة القلبية", "हृदयाघात", "❤️💔🫀 attack 🙂"],
)
def test_non_latin_scripts_and_emoji(encoder: SpladeEncoder, text: str) -> None:
    [vector] = encoder.encode_documents([text])
    assert isinstance(vector, SparseVector) and _no_special(vector)
    assert all(np.isfinite(w) and w > 0 for w in vector.values())


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["nested"]])
def test_non_string_values_are_an_input_error(encoder: SpladeEncoder, bad: object) -> None:
    with pytest.raises(InputError, match=r"texts\[1\] is .*, expected str"):
        encoder.encode_documents(["fine", bad])  # type: ignore[list-item]
    with pytest.raises(InputError, match=r"queries\[0\]"):
        encoder.encode_queries([bad])  # type: ignore[list-item]


def test_a_bare_string_is_an_input_error(encoder: SpladeEncoder) -> None:
    with pytest.raises(InputError, match="sequence of strings, not a single str"):
        encoder.encode_documents("one text")


# ----------------------------------------------------------------------------------------------------------------
# Model folder, providers, inference-free queries
# ----------------------------------------------------------------------------------------------------------------


def test_manifest_and_attributes(encoder: SpladeEncoder) -> None:
    assert encoder.vocab_size == 30522
    assert encoder.manifest["name"] == "splade-tiny"
    assert len(encoder.manifest["sha256"]) == 64
    assert encoder.manifest["splade_os_version"]


def test_missing_or_foreign_folder_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        SpladeEncoder(tmp_path / "nope")
    with pytest.raises(ModelError, match="not a folder written by `splade-os export`"):
        SpladeEncoder(tmp_path)


def _copy_model(tmp_path: Path, source: Path = BUNDLED) -> Path:
    target = tmp_path / "model"
    shutil.copytree(source, target)
    return target


def test_changed_onnx_file_fails_the_checksum(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    with (folder / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelError, match="does not match the sha256"):
        SpladeEncoder(folder)


def _manifest(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "manifest.json").read_text()))


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("manifest.json", b'{"vocab_size": 30522,', r"manifest.json is not valid JSON \(Expecting"),
        ("manifest.json", b"\xff\xfe\x00garbage", r"manifest.json is not valid JSON"),
        ("manifest.json", b"[1, 2]", r"manifest.json holds a JSON list, not an object"),
        ("manifest.json", b"42", r"manifest.json holds a JSON int, not an object"),
        ("tokenizer.json", b'{"version": "1.0", "model": ', r"tokenizer.json is not a valid tokenizer file"),
        ("tokenizer.json", b"{}", r"tokenizer.json is not a valid tokenizer file"),
        ("tokenizer.json", b"\xff\xfe\xfd", r"cannot read .*tokenizer.json"),
    ],
)
def test_corrupt_model_files_are_one_line_model_errors(tmp_path: Path, file: str, content: bytes, message: str) -> None:
    folder = _copy_model(tmp_path)
    (folder / file).write_bytes(content)
    with pytest.raises(ModelError, match=message) as caught:
        SpladeEncoder(folder)
    assert "\n" not in str(caught.value) and "re-run `splade-os export`" in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("vocab_size", "30522", "vocab_size must be a positive integer, got '30522'"),
        ("max_length", None, "max_length must be a positive integer, got None"),
        ("sha256", 7, "sha256 must be a string, got 7"),
        ("onnx_file", ["model.onnx"], "onnx_file must be a string"),
    ],
)
def test_wrong_manifest_values_are_model_errors(tmp_path: Path, key: str, value: object, message: str) -> None:
    folder = _copy_model(tmp_path)
    manifest = _manifest(folder)
    manifest[key] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=re.escape(message)):
        SpladeEncoder(folder)


@pytest.mark.parametrize(
    ("idf", "message"),
    [
        ('{"heart": 3.5,', r"idf.json is not valid JSON"),
        ('["heart"]', r"idf.json holds a JSON list, not a token -> weight object"),
        ('{"heart": "high"}', r"the weight of token 'heart' is 'high', not a finite number"),
    ],
)
def test_corrupt_idf_file_is_a_model_error(tmp_path: Path, idf: str, message: str) -> None:
    folder = _copy_model(tmp_path)
    (folder / "idf.json").write_text(idf)
    with pytest.raises(ModelError, match=message):
        SpladeEncoder(folder, query_mode="inference-free")


def test_an_unloadable_onnx_file_is_a_model_error(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    (folder / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="onnxruntime cannot load .*model.onnx"):
        SpladeEncoder(folder, verify=False)


def test_the_cli_reports_a_corrupt_model_in_one_line(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    (folder / "tokenizer.json").write_text("{oops")
    result = CliRunner().invoke(encode, ["-", "--model", str(folder), "--no-progress"], input="")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "tokenizer.json is not a valid tokenizer file" in result.stderr


def test_unavailable_provider_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="CPUExecutionProvider"):
        SpladeEncoder(BUNDLED, providers=["NoSuchExecutionProvider"])


def test_inference_free_queries_use_idf_weights(tmp_path: Path) -> None:
    folder = _copy_model(tmp_path)
    (folder / "idf.json").write_text(json.dumps({"heart": 3.5, "attack": 2.0, "causes": 1.25, "unrelated": 9.0}))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["query_mode"] = "inference-free"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    encoder = SpladeEncoder(folder)
    [query] = encoder.encode_queries(["What causes a HEART attack, heart?"])
    # Each query token once, with its idf weight; tokens without one (what, a) are dropped.
    assert query.to_dict() == {"heart": 3.5, "attack": 2.0, "causes": 1.25}
    assert len(encoder.encode_documents([GOLDEN_TEXT])[0]) == len(GOLDEN)  # documents still run the model


# ----------------------------------------------------------------------------------------------------------------
# Encoding never imports torch
# ----------------------------------------------------------------------------------------------------------------


def test_encoding_does_not_import_torch() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        for name in ("torch", "transformers", "onnx"):
            sys.modules[name] = None  # any import of them now raises ImportError
        import splade_os
        from splade_os.model.encoder import SpladeEncoder
        from splade_os.cli import main
        vectors = SpladeEncoder({str(BUNDLED)!r}, device="cpu", precision="fp32").encode_documents(["heart attack"])
        assert vectors[0]["heart"] > 0
        # Neither the export nor the GPU backend's module is even loaded on the CPU path.
        loaded = [m for m in ("splade_os.model.export", "splade_os.model.torch_runner") if m in sys.modules]
        assert not loaded, loaded
        import splade_os.model.torch_runner  # which itself imports torch only when it runs
        loaded = [m for m in ("torch", "transformers", "onnx") if sys.modules.get(m) is not None]
        assert not loaded, loaded
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ----------------------------------------------------------------------------------------------------------------
# `splade-os encode`
# ----------------------------------------------------------------------------------------------------------------


def _jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_encode_command_corpus_file(tmp_path: Path, encoder: SpladeEncoder) -> None:
    corpus = tmp_path / "corpus.jsonl"
    rows: list[dict[str, object]] = [
        {"_id": "d1", "title": "Heart attack", "text": "causes and risks"},
        {"_id": 2, "title": "", "text": GOLDEN_TEXT},
        {"_id": "d3", "text": ""},
    ]
    corpus.write_text(_jsonl(rows) + "\n")
    out = tmp_path / "vectors.jsonl"
    result = CliRunner().invoke(encode, [str(corpus), "--model", str(BUNDLED), "--output", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["_id"] for line in lines] == ["d1", "2", "d3"]
    expected = encoder.encode_documents(["Heart attack causes and risks", GOLDEN_TEXT, ""])
    for line, vector in zip(lines, expected, strict=True):
        assert line["vector"] == pytest.approx(vector.to_dict())
    assert "encoded 3 records" in result.output


def test_encode_command_stdin_queries_ignore_titles() -> None:
    stdin = _jsonl([{"_id": "q1", "title": "ignored title", "text": GOLDEN_TEXT}])
    result = CliRunner().invoke(encode, ["-", "--model", str(BUNDLED), "--queries", "--no-progress"], input=stdin)
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout.splitlines()[0])
    assert first["_id"] == "q1"
    assert set(first["vector"]) == set(GOLDEN)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "<stdin> line 1: malformed JSON: Expecting value at column 1; not encoded"),
        ('["a list"]', "<stdin> line 1: not a JSON object but list; not encoded"),
        ('{"text": "no id"}', "<stdin> line 1: missing id: no '_id' field (choose another with --id-field)"),
        ('{"_id": "x", "text": 5}', "<stdin> line 1 (id 'x'): text field 'text' must be a string, got int"),
    ],
)
def test_encode_command_bad_records_are_clear_errors(line: str, message: str) -> None:
    result = CliRunner().invoke(encode, ["-", "--model", str(BUNDLED), "--no-progress"], input=line + "\n")
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stdout == ""
    assert "Error: 1 of 1 records were not encoded" in result.stderr


def test_encode_command_missing_input_and_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(encode, [str(tmp_path / "none.jsonl"), "--model", str(BUNDLED), "--no-progress"])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = CliRunner().invoke(encode, ["-", "--model", str(tmp_path / "none")], input="")
    assert result.exit_code == 1 and "does not exist" in result.output


def test_settings_are_validated_before_any_file_is_read(tmp_path: Path) -> None:
    import dataclasses

    from splade_os.model.settings import EncoderSettings

    with pytest.raises(ConfigError, match="top_k must be at least 1"):
        SpladeEncoder(tmp_path / "no-such-model", top_k=0)  # the setting, not the missing folder, is reported
    encoder = SpladeEncoder(BUNDLED, threads=1, top_k=5, providers=["CPUExecutionProvider"])
    assert encoder.settings == EncoderSettings(threads=1, top_k=5, providers=("CPUExecutionProvider",))
    assert encoder.settings.backend == "onnx"
    with pytest.raises(dataclasses.FrozenInstanceError):
        encoder.settings.top_k = 6  # type: ignore[misc]
