"""Run by tests/test_distributed_engine.py in a process of its own, outside pytest (whose log capture keeps Ray
Data's records, and with them a failed run's actors): an application that shares one Ray between loads keeps the
error of a refused `index --ray`, and the refused run's workers must still give their CPUs back.

Usage: python ray_kept_refusal.py CORPUS INDEX FOLDER; prints "freed" or "held"."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import ray
from click.testing import CliRunner

from splade_os.cli.index import index as index_command


def main(corpus: str, index: str, folder: str) -> None:
    here = Path(__file__).resolve().parent
    path = os.pathsep.join([str(here.parent), str(here), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    try:
        kept = CliRunner().invoke(
            index_command,
            [
                corpus,
                "--index",
                index,
                "--vectors",
                "--ray",
                "--workers",
                "2",
                "--block-size",
                "10",
                "--replicas",
                "0",
                "--log-every",
                "0",
                "--checkpoint",
                f"{folder}/cp",
                "--dead-letter",
                f"{folder}/dead.jsonl",
                "--model",
                str(here.parent / "models" / "splade-tiny"),
            ],
        )
        assert kept.exit_code == 1 and kept.exc_info is not None, kept.output
        deadline = time.monotonic() + 60  # stopped actors exit in the background
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        print("freed" if ray.available_resources().get("CPU", 0) >= 2 else "held", flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
