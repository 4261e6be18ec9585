"""The book: table of contents, notebook set-up cells, and an offline `jupyter-book build -W`."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adlearn import notebook_cells as nb_tools

ROOT = Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    return re.findall(r"^\s*-\s*file:\s*(\S+)", (ROOT / "_toc.yml").read_text(), re.MULTILINE)


def test_every_chapter_notebook_is_in_the_toc_and_every_toc_entry_exists():
    files = toc_files()
    for notebook in nb_tools.chapter_notebooks(ROOT):
        assert f"notebooks/{notebook.stem}" in files, f"{notebook} is missing from _toc.yml"
    for entry in files:
        assert any((ROOT / f"{entry}{suffix}").is_file() for suffix in (".md", ".ipynb")), f"_toc.yml lists missing {entry}"


def test_repository_address_is_read_from_config():
    assert nb_tools.repository_url().startswith("https://")
    cell = nb_tools.setup_cell_source("https://example.org/x")
    assert 'REPOSITORY = "https://example.org/x"' in cell and "google.colab" in cell


def test_chapter_setup_cells_match_the_config():
    stale = nb_tools.stale_notebooks(nb_tools.chapter_notebooks(ROOT))
    assert stale == [], f"run `python -m adlearn.notebook_cells sync`; stale: {stale}"


def test_sync_rewrites_only_the_setup_cell(tmp_path):
    notebook = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Title"]},
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
             "source": ["# Set-up: on Colab, install adlearn (old copy)\n"]},
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": ["x = 1"]},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    path = tmp_path / "01_x.ipynb"
    path.write_text(json.dumps(notebook))
    assert nb_tools.stale_notebooks([path], "https://example.org/r") == [path]
    assert nb_tools.sync_notebooks([path], "https://example.org/r") == [path]
    assert nb_tools.stale_notebooks([path], "https://example.org/r") == []
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["source"] == ["# Title"] and cells[2]["source"] == ["x = 1"]


def test_sync_refuses_a_notebook_without_setup_cell(tmp_path):
    path = tmp_path / "02_y.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": ["import os"], "metadata": {}, "outputs": []}],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(ValueError, match="not a set-up cell"):
        nb_tools.sync_notebooks([path], "https://example.org/r")


@pytest.mark.parametrize("module", ["adlearn.notebook_cells", "adlearn.notebook"])
def test_check_command_passes_under_its_new_and_its_old_name(module):
    # `python -m adlearn.notebook check` is kept for old instructions; it forwards to adlearn.notebook_cells
    result = subprocess.run([sys.executable, "-m", module, "check"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_old_names_in_adlearn_notebook_still_work():
    from adlearn import notebook

    for name in ("chapter_notebooks", "repository_url", "setup_cell_source", "stale_notebooks", "sync_notebooks",
                 "main", "SETUP_CELL_TEMPLATE", "SETUP_CELL_MARKER", "REPO_ROOT"):
        assert getattr(notebook, name) is getattr(nb_tools, name), name
    assert callable(notebook.start_chapter) and callable(notebook.trained_model_path)


def test_committed_notebooks_carry_outputs():
    for notebook in nb_tools.chapter_notebooks(ROOT):
        cells = json.loads(notebook.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]
        with_outputs = [c for c in code[1:] if c.get("outputs")]  # the set-up cell prints nothing off Colab
        assert len(with_outputs) >= len(code[1:]) // 2, f"{notebook} was committed without its book-profile outputs"
        assert any("## Exercises" in "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"), notebook


@pytest.mark.skipif(shutil.which("jupyter-book") is None and not Path(sys.executable).with_name("jupyter-book").exists(),
                    reason="jupyter-book is not installed")
def test_book_builds_offline_with_warnings_as_errors(tmp_path):
    executable = shutil.which("jupyter-book") or str(Path(sys.executable).with_name("jupyter-book"))
    result = subprocess.run(
        [executable, "build", "-W", "-n", "--keep-going", "--path-output", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").is_file() or (html / "book" / "intro.html").is_file()
