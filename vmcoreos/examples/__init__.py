"""Example files shipped inside the package, so they exist wherever vmcoreos is installed.

`vmcoreos init` writes cluster.yaml and node.yaml from here. A pip or pipx user
has no checkout and so no configs/ directory: messages that point at an example
name it by its installed path, through path().
"""

from __future__ import annotations

from importlib.resources import files


def path(name: str) -> str:
    """Where example `name` is installed, for messages: f"see {examples.path('cluster.yaml')}"."""
    return str(files(__name__).joinpath(name))
