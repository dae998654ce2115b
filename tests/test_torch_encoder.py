"""The PyTorch backend (`device="cuda"`, or `backend="torch"` on the CPU) against the ONNX path, and its errors.

Parity runs on the CPU with the checkpoint rebuilt from the committed export, so it needs torch but no GPU.
"""

from __future__ import annotations

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from bundled_checkpoint import checkpoint_folder, random_masked_lm, save_with_the_bundled_tokenizer
from click.testing import CliRunner

from splade_os.cli.encode import encode
from splade_os.errors import ConfigError, EncoderClosedError, MissingDependencyError, ModelError
from splade_os.model.encoder import SpladeEncoder
from splade_os.vectors import SparseVector

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "models" / "splade-tiny"
TOLERANCE = 1e-4

TEXTS = [
    "What causes a heart attack?",
    "",
    "cells",
    "   ",
    "Aspirin lowers the risk of a second heart attack in patients with coronary disease. " * 3,
    "Gene expression in T cells changes after infection with influenza, measured by RNA sequencing. " * 40,
    "Vitamin D deficiency is associated with bone loss in older adults.",
    "x",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return checkpoint_folder(BUNDLED, tmp_path_factory.mktemp("splade-tiny-torch"))


def _assert_close(ours: list[SparseVector], reference: list[SparseVector]) -> None:
    """Same vectors within TOLERANCE: a token missing on one side counts as weight 0 there."""
    assert len(ours) == len(reference)
    for i, (a, b) in enumerate(zip(ours, reference, strict=True)):
        for token in set(a) | set(b):
            assert abs(a.get(token, 0.0) - b.get(token, 0.0)) <= TOLERANCE, (i, token, a.get(token), b.get(token))
        heavy = {t for t, w in b.items() if w > TOLERANCE}
        assert heavy <= set(a), (i, heavy - set(a))


# ----------------------------------------------------------------------------------------------------------------
# Parity with the ONNX path (fp32, CPU)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.torch
@pytest.mark.parametrize("batch_size", [None, 3])
def test_documents_match_the_onnx_path(checkpoint: Path, batch_size: int | None) -> None:
    """Short, long (truncated), empty and whitespace texts, in batches of mixed lengths."""
    onnx = SpladeEncoder(BUNDLED, threads=2, max_length=128, batch_size=batch_size)
    torch_encoder = SpladeEncoder(checkpoint, backend="torch", max_length=128, batch_size=batch_size)
    _assert_close(torch_encoder.encode_documents(TEXTS), onnx.encode_documents(TEXTS))
    assert torch_encoder.truncated == onnx.truncated == 1
    assert len(torch_encoder.encode_documents(["", " "])[0]) == 0
    assert np.abs(torch_encoder.encode_weights(TEXTS) - onnx.encode_weights(TEXTS)).max() <= TOLERANCE


@pytest.mark.torch
def test_queries_split_windows_and_pruning_match_the_onnx_path(checkpoint: Path) -> None:
    options = dict(max_length=32, long_documents="split", stride=8, top_k=20, min_weight=0.3)
    onnx = SpladeEncoder(BUNDLED, threads=2, **options)  # type: ignore[arg-type]
    torch_encoder = SpladeEncoder(checkpoint, backend="torch", **options)  # type: ignore[arg-type]
    ours, reference = torch_encoder.encode_documents(TEXTS), onnx.encode_documents(TEXTS)
    _assert_close(ours, reference)
    assert all(len(v) <= 20 and min(v.values(), default=1.0) >= 0.3 for v in ours)
    _assert_close(torch_encoder.encode_queries(TEXTS[:3]), onnx.encode_queries(TEXTS[:3]))


@pytest.mark.torch
def test_an_export_folder_with_its_checkpoint_keeps_the_export_identity(checkpoint: Path, tmp_path: Path) -> None:
    """Indices built on either backend record the same encoder; a bare checkpoint folder is its own encoder."""
    exported = SpladeEncoder(checkpoint, backend="torch")
    assert exported.manifest == SpladeEncoder(BUNDLED).manifest
    bare = tmp_path / "bare-checkpoint"
    shutil.copytree(checkpoint, bare)
    (bare / "manifest.json").unlink()
    encoder = SpladeEncoder(bare, backend="torch")
    assert encoder.manifest["name"] == "bare-checkpoint"
    assert encoder.manifest["sha256"] != exported.manifest["sha256"]
    assert encoder.max_length == 512
    _assert_close(encoder.encode_documents(TEXTS[:3]), exported.encode_documents(TEXTS[:3]))


@pytest.fixture(scope="module")
def distilbert_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare DistilBertForMaskedLM checkpoint, random weights, with the bundled WordPiece tokenizer."""
    model = random_masked_lm(
        "DistilBert", vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64, initializer_range=0.2
    )
    folder = tmp_path_factory.mktemp("checkpoint") / "random-distilbert"
    return save_with_the_bundled_tokenizer(model, folder, "DistilBertTokenizer")


@pytest.mark.torch
def test_a_checkpoint_without_token_types_gets_only_the_inputs_it_takes(distilbert_checkpoint: Path) -> None:
    """DistilBERT's forward has no token_type_ids: transformers 4.x raises TypeError when they are passed."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    encoder = SpladeEncoder(distilbert_checkpoint, backend="torch", max_length=128)
    assert encoder.manifest["architecture"] == "DistilBertForMaskedLM"
    fed: list[set[str]] = []  # transformers 5 takes and ignores unknown keywords: watch what the model is given
    assert encoder._torch is not None
    encoder._torch.model.register_forward_pre_hook(lambda _, args, kwargs: fed.append(set(kwargs)), with_kwargs=True)
    weights = encoder.encode_weights(TEXTS)
    assert fed and all(keys == {"input_ids", "attention_mask"} for keys in fed), fed
    assert all(len(v) > 0 for text, v in zip(TEXTS, encoder.encode_documents(TEXTS), strict=True) if text.strip())

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(distilbert_checkpoint))
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(distilbert_checkpoint)).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        mask = batch["attention_mask"].unsqueeze(-1)
        reference = (torch.log1p(torch.relu(logits)) * mask).amax(dim=1).numpy()
    blank = [not text.strip() for text in TEXTS]  # the encoder gives texts without content no window at all
    reference[blank] = 0.0
    assert np.abs(weights - reference).max() <= TOLERANCE


@pytest.mark.torch
def test_threads_sharing_one_encoder_get_the_same_vectors(checkpoint: Path) -> None:
    encoder = SpladeEncoder(checkpoint, backend="torch", max_length=64)
    expected = encoder.encode_documents(TEXTS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: encoder.encode_documents(TEXTS), range(8)))
    assert all(r == expected for r in results)


@pytest.mark.torch
def test_closing_frees_the_model_and_later_calls_say_so(checkpoint: Path) -> None:
    encoder = SpladeEncoder(checkpoint, backend="torch")
    with encoder:
        assert len(encoder.encode_documents(TEXTS[:1])[0]) > 0
    assert encoder._torch is not None and encoder._torch.model is None
    with pytest.raises(EncoderClosedError, match="was closed"):
        encoder.encode_documents(TEXTS[:1])


@pytest.mark.torch
def test_bf16_on_the_cpu_keeps_the_heaviest_tokens(checkpoint: Path) -> None:
    fp32 = SpladeEncoder(checkpoint, backend="torch").encode_documents(TEXTS[:1])[0]
    bf16 = SpladeEncoder(checkpoint, backend="torch", precision="bf16").encode_documents(TEXTS[:1])[0]
    assert [t for t, _ in bf16.sorted_items()[:4]] == [t for t, _ in fp32.sorted_items()[:4]]
    assert all(abs(bf16.get(t, 0.0) - w) < 0.05 for t, w in fp32.sorted_items()[:10])


# ----------------------------------------------------------------------------------------------------------------
# Clear errors
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.torch
def test_cuda_runs_the_same_vectors_or_says_why_not(checkpoint: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"sees no GPU|CPU-only build"):
            SpladeEncoder(BUNDLED, device="cuda")
        return
    onnx = SpladeEncoder(BUNDLED, threads=2, max_length=128)
    with SpladeEncoder(checkpoint, device="cuda", max_length=128) as encoder:
        _assert_close(encoder.encode_documents(TEXTS), onnx.encode_documents(TEXTS))


@pytest.mark.torch
def test_each_missing_piece_of_cuda_has_its_own_message(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(ConfigError, match="CPU-only build; install a CUDA build"):
        SpladeEncoder(BUNDLED, device="cuda")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"CUDA 12\.8\) sees no GPU; check the driver"):
        SpladeEncoder(BUNDLED, device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"has 1 GPU\(s\), cuda:0 to cuda:0"):
        SpladeEncoder(BUNDLED, device="cuda:3")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **_: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _: "Tesla T4")
    with pytest.raises(ConfigError, match="Tesla T4 does not support bfloat16"):
        SpladeEncoder(BUNDLED, device="cuda", precision="bf16")


def test_without_torch_the_error_names_the_gpu_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # any import of torch now raises ImportError
    message = r"needs torch, which is not installed: pip install 'splade-os\[gpu\]'"
    with pytest.raises(MissingDependencyError, match=message):
        SpladeEncoder(BUNDLED, device="cuda")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "gpu"}, "device must be cpu, cuda or cuda:N"),
        ({"device": "cpu:1"}, "device must be cpu, cuda or cuda:N"),
        ({"precision": "int4"}, "precision must be one of fp32, bf16, fp16"),
        ({"precision": "bf16"}, "precision bf16 needs the PyTorch backend"),
        ({"backend": "onnx", "device": "cuda"}, "runs the PyTorch backend"),
        ({"backend": "tensorrt"}, "backend must be one of onnx, torch"),
    ],
)
def test_bad_device_settings_are_refused_before_loading(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SpladeEncoder(BUNDLED, **options)  # type: ignore[arg-type]


@pytest.mark.torch
def test_fp16_on_the_cpu_and_an_export_without_checkpoint_are_refused() -> None:
    pytest.importorskip("torch")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU; on the CPU use bf16"):
        SpladeEncoder(BUNDLED, backend="torch", precision="fp16")
    with pytest.raises(ModelError, match=r"holds no PyTorch checkpoint .* source: \.\./shared/models/splade-tiny"):
        SpladeEncoder(BUNDLED, backend="torch")


@pytest.mark.torch
def test_cli_device_cuda_encodes_or_fails_in_one_line(checkpoint: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "1", "text": "heart attack"}\n')
    result = CliRunner().invoke(encode, [str(corpus), "--model", str(checkpoint), "--device", "cuda", "--no-progress"])
    if torch.cuda.is_available():
        assert result.exit_code == 0, result.output
        assert '"heart"' in result.output
        return
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: device 'cuda':"), result.output
