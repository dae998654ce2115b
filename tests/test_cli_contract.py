"""What scripts rely on without a node: exit codes of conflicting flags, `--json` on stdout, the deprecated
`--json FILE`, progress off a terminal without carriage returns, what `encode` writes, `models` on a broken tokenizer,
and the old module paths keeping the real module's spec."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from splade_os.cli import main
from splade_os.cli.progress import Progress
from splade_os.stats import Bm25Comparison, IndexStats, format_stats

REPO = Path(__file__).resolve().parents[1]
MODEL = str(REPO / "models" / "splade-tiny")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)


@pytest.mark.parametrize(
    "args",
    [
        ["index", "c.jsonl", "--index", "x", "--model", MODEL, "--recreate", "--resume"],
        ["index", "c.jsonl", "--index", "x", "--model", MODEL, "--keep-previous", "--delete-previous"],
        ["index", "c.jsonl", "--index", "x", "--from-index", "y", "--model", MODEL],
        ["df", "x", "--model", MODEL, "--tokens", "t.txt"],
        ["eval", ".", "--model", MODEL, "--json", "a.json", "--json-file", "b.json"],
    ],
)
def test_conflicting_flags_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(main, args, env={"OPENSEARCH_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.output and "Error:" in result.output


def test_json_file_value_keeps_working_with_a_deprecation_note(tmp_path: Path) -> None:
    # `--json FILE` of older releases: still a file (here a folder that is no BEIR dataset fails after parsing).
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--model", MODEL, "--json", "out.json"])
    assert "warning: --json FILE is deprecated and goes in a later release: use --json-file out.json" in result.stderr


def test_sigint_exits_130() -> None:
    # A real Ctrl-C (SIGINT) in a real process: the command stops with 130, as shells report an interrupt.
    code = (
        "import os, signal, click, splade_os.cli as c\n"
        "@click.command()\n"
        "def sleepy():\n    os.kill(os.getpid(), signal.SIGINT)\n"
        "c.main.add_command(sleepy)\nc.main(['sleepy'])\n"
    )
    proc = _python(code)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "interrupted"


def test_progress_off_a_terminal_is_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress("encode", 10, unit="records", every=0.0, tty=False) as bar:
        bar.update(4)
        bar.update(6, "0 failed")
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("encode: 4 of 10 records (40%, ETA ")
    assert lines[-1].startswith("encode: 10 of 10 records")
    assert lines[-1].endswith("; 0 failed")


def test_encode_keeps_the_fields_and_writes_no_carriage_return(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(
        json.dumps({"_id": "a", "title": "Heart", "text": "heart attack", "year": 2001})
        + "\n"
        + json.dumps({"_id": "b", "text": "no title"})
        + "\n"
    )
    out = tmp_path / "v.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "splade_os",
            "encode",
            str(corpus),
            "--model",
            MODEL,
            "--output",
            str(out),
            "--log-every",
            "0.1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and proc.stderr.splitlines()[-1] == "encoded 2 records"
    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert {k: first[k] for k in ("_id", "title", "text", "year")} == {
        "_id": "a",
        "title": "Heart",
        "text": "heart attack",
        "year": 2001,
    }
    assert first["vector"]["heart"] > 0 and second["title"] == "" and second["text"] == "no title"
    only = CliRunner().invoke(main, ["encode", str(corpus), "--model", MODEL, "--vectors-only", "--no-progress"])
    assert [sorted(json.loads(line)) for line in only.stdout.splitlines()] == [["_id", "vector"]] * 2


def test_models_refuses_a_tokenizer_that_does_not_load(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for path in Path(MODEL).iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "tokenizer.json").write_text('{"broken": ')
    result = CliRunner().invoke(main, ["models", str(folder)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{folder}: {folder / 'tokenizer.json'} is not a valid tokenizer file (")


def test_an_old_module_path_keeps_the_real_modules_spec() -> None:
    code = (
        "import importlib, warnings\nwarnings.simplefilter('ignore')\nimport splade_os.search\n"
        "import splade_os.retrieval.search as m\n"
        "assert m.__spec__.name == 'splade_os.retrieval.search', m.__spec__\n"
        "importlib.reload(m)\n"
    )
    assert _python(code).returncode == 0, _python(code).stderr


def test_counts_of_one_read_in_the_singular() -> None:
    one = IndexStats(
        index="docs",
        indices=("docs-v1",),
        documents=3,
        primary_bytes=10,
        total_bytes=10,
        sampled=1,
        exact=False,
        avg_features=2.0,
        p50_features=2.0,
        p95_features=2.0,
        max_features=2,
        distinct_features=2,
        vocab_size=None,
        encoder=None,
        bm25=Bm25Comparison(1, 20, 10),
    )
    shown = format_stats(one)
    assert "(from a random sample of 1 document)" in shown and "(copies of 1 document, one segment each)" in shown
