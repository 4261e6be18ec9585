"""The set-up cell of every chapter notebook, kept in sync with ``_config.yml``.

The repository address lives in one place, ``_config.yml`` (``repository.url``),
where Jupyter Book also reads it for the Colab launch buttons. Each notebook's
first code cell (which must work on Colab *before* adlearn is installed) holds
a copy generated from it::

    python -m adlearn.notebook_cells sync    # rewrite the set-up cells from _config.yml
    python -m adlearn.notebook_cells check   # fail if any notebook's set-up cell is stale

The test suite runs ``check``, so a stale copy cannot land. (``python -m
adlearn.notebook sync|check`` still works: it forwards here.)

What a chapter runs first, :func:`adlearn.notebook.start_chapter`, is in :mod:`adlearn.notebook`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The comment's "by adlearn.notebook" is part of every committed set-up cell: changing it
# here makes every notebook stale until `python -m adlearn.notebook_cells sync` is run.
SETUP_CELL_TEMPLATE = '''\
# Set-up: on Colab, install adlearn from the book's repository; elsewhere adlearn is already installed.
import sys
if "google.colab" in sys.modules:
    REPOSITORY = "{url}"  # kept in sync with _config.yml by adlearn.notebook
    !pip install -q "adlearn @ git+{{REPOSITORY}}"'''
SETUP_CELL_MARKER = "# Set-up: on Colab, install adlearn"

__all__ = [
    "REPO_ROOT",
    "SETUP_CELL_MARKER",
    "SETUP_CELL_TEMPLATE",
    "chapter_notebooks",
    "runnable_notebooks",
    "main",
    "repository_url",
    "setup_cell_source",
    "stale_notebooks",
    "sync_notebooks",
]


def repository_url(config_path: Path = REPO_ROOT / "_config.yml") -> str:
    """The repository address from ``_config.yml`` (``repository: url: ...``)."""
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; the repository address is kept there.")
    match = re.search(r"^repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:\s*(\S+)", config_path.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"{config_path} has no 'repository: url:' entry.")
    return match.group(1).strip("'\"")


def setup_cell_source(url: str | None = None) -> str:
    """The exact source of the first code cell of every chapter notebook."""
    return SETUP_CELL_TEMPLATE.format(url=url or repository_url())


def _first_code_cell(notebook: dict) -> dict | None:
    return next((cell for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"), None)


def stale_notebooks(notebooks: list[Path], url: str | None = None) -> list[Path]:
    """Notebooks whose first code cell is not the current set-up cell."""
    expected = setup_cell_source(url)
    stale = []
    for path in notebooks:
        cell = _first_code_cell(json.loads(path.read_text()))
        source = "".join(cell["source"]) if cell else ""
        if source != expected:
            stale.append(path)
    return stale


def sync_notebooks(notebooks: list[Path], url: str | None = None) -> list[Path]:
    """Rewrite the set-up cell of ``notebooks`` (only cells that are set-up cells); return the changed ones."""
    expected = setup_cell_source(url)
    changed = []
    for path in notebooks:
        notebook = json.loads(path.read_text())
        cell = _first_code_cell(notebook)
        if cell is None or not "".join(cell["source"]).startswith(SETUP_CELL_MARKER):
            raise ValueError(f"{path}: the first code cell is not a set-up cell (it must start with {SETUP_CELL_MARKER!r}).")
        if "".join(cell["source"]) != expected:
            cell["source"] = expected.splitlines(keepends=True)
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


def chapter_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """The chapter notebooks ``notebooks/NN_slug.ipynb`` in order (see :func:`runnable_notebooks` for every notebook with a set-up cell)."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _has_setup_cell(path: Path) -> bool:
    cell = _first_code_cell(json.loads(path.read_text()))
    return cell is not None and "".join(cell["source"]).startswith(SETUP_CELL_MARKER)


def runnable_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """Every notebook of the book with a Colab set-up cell: the chapters, then the pages under ``book/``
    (the metrics primer) whose first code cell is one."""
    pages = [path for path in sorted((root / "book").glob("*.ipynb")) if _has_setup_cell(path)]
    return chapter_notebooks(root) + pages


def main(argv: list[str] | None = None) -> int:
    """``sync`` rewrites the set-up cells; ``check`` returns 1 (and names them) if any is stale."""
    parser = argparse.ArgumentParser(prog="python -m adlearn.notebook_cells", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["sync", "check"])
    args = parser.parse_args(argv)
    notebooks = runnable_notebooks()
    if args.action == "sync":
        for path in sync_notebooks(notebooks):
            print(f"updated {path}")
        return 0
    stale = stale_notebooks(notebooks)
    for path in stale:
        print(f"stale set-up cell: {path} (run: python -m adlearn.notebook_cells sync)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
