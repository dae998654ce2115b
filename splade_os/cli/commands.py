"""The list of commands `splade-os` offers; each lives in its own module."""

from __future__ import annotations

import click

from splade_os.cli.node import node
from splade_os.cli.search import search

ALL: list[click.Command] = [node, search]
