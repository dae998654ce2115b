"""The list of commands `splade-os` offers; each lives in its own module."""

from __future__ import annotations

import click

from splade_os.cli.encode import encode
from splade_os.cli.evaluate import evaluate
from splade_os.cli.export import export
from splade_os.cli.index import alias, index
from splade_os.cli.models import models
from splade_os.cli.node import node
from splade_os.cli.ops import doctor, reindex, stats
from splade_os.cli.scale import df, merge
from splade_os.cli.search import search
from splade_os.cli.serve import serve
from splade_os.cli.tune import tune

ALL: list[click.Command] = [
    export,
    models,
    encode,
    index,
    alias,
    reindex,
    search,
    evaluate,
    tune,
    doctor,
    stats,
    df,
    merge,
    node,
    serve,
]
