"""The book: table of contents, notebook set-up cells, an offline `jupyter-book build -W`, and what the
built HTML shows (no unrendered math or roles, chapter numbers once)."""

import ast
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
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
    runnable = nb_tools.runnable_notebooks(ROOT)
    assert ROOT / "book" / "metrics_primer.ipynb" in runnable  # sync/check cover the primer too
    stale = nb_tools.stale_notebooks(runnable)
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


def _jupyter_book() -> str | None:
    found = shutil.which("jupyter-book")
    if found:
        return found
    beside = Path(sys.executable).with_name("jupyter-book")
    return str(beside) if beside.exists() else None


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    """One offline `jupyter-book build -W` of the repository per test module: (the process, the html folder)."""
    executable = _jupyter_book()
    if executable is None:
        pytest.skip("jupyter-book is not installed (pip install -r book/requirements.txt)")
    out = tmp_path_factory.mktemp("book")
    result = subprocess.run(
        [executable, "build", "-W", "-n", "--keep-going", "--path-output", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=900,
    )
    return result, out / "_build" / "html"


def built_pages(html: Path) -> list[Path]:
    """The book's pages in the built ``html`` folder (not Sphinx's own under ``_static``, ``_sources``...)."""
    return [p for p in sorted(html.rglob("*.html")) if not p.relative_to(html).parts[0].startswith("_")]


def test_book_builds_offline_with_warnings_as_errors(built_book):
    result, html = built_book
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (html / "index.html").is_file() or (html / "book" / "intro.html").is_file()


# --- what the built pages show ------------------------------------------------------------------

# Elements whose text is code, not prose (a `$` or `{cite}` there is meant literally).
_CODE_TAGS = {"script", "style", "code", "pre", "kbd", "samp", "textarea", "svg", "math", "mjx-container"}
_VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
# A MyST role or directive that reached the page as text: `{cite}`, `{glue:}`, `{math}`, `{ref}`...,
# any `{name}` followed by a backtick, or a literal code fence.
_UNRENDERED_ROLE = re.compile(
    r"\{(?:cite|glue|math|ref|numref|doc|eq|term|download|abbr|sub|sup|index|bibliography)(?::[\w-]*)?\}"
    r"|\{[a-z][\w:.-]*\}`|```"
)
# Rendered math is in math elements; a `$` left in prose is broken inline or display math
# (`$$...$$` inside a paragraph comes out as a stray `$` beside a math element).
_STRAY_DOLLAR = re.compile(r"\$+")
# "1. 1. AnoGAN": the table of contents numbers a chapter whose title is numbered by hand as well.
_DOUBLE_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)*)\.\s+\1\.\s")


class _PageText(HTMLParser):
    """Split a page's text into prose (outside code and math elements) and math (inside math elements)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[tuple[str, str | None]] = []  # (tag, "code" | "math" | None)
        self.prose: list[str] = []
        self.math: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in _VOID_TAGS:
            return
        classes = (dict(attrs).get("class") or "").split()
        kind = "code" if tag in _CODE_TAGS or "highlight" in classes else "math" if "math" in classes else None
        if kind == "math" and not any(k for _, k in self.open):
            self.prose.append(" ⟨math⟩ ")  # keeps snippets readable
        self.open.append((tag, kind))

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index][0] == tag:
                del self.open[index:]
                return

    def handle_data(self, data):
        kinds = {kind for _, kind in self.open}
        if "code" not in kinds:
            (self.math if "math" in kinds else self.prose).append(data)


def unrendered_markup(page_html: str) -> list[str]:
    """Snippets of `page_html` where math or a MyST role/directive reached the reader unrendered."""
    parser = _PageText()
    parser.feed(page_html)
    parser.close()
    checks = (("".join(parser.prose), (_UNRENDERED_ROLE, _STRAY_DOLLAR, _DOUBLE_NUMBER)),
              ("".join(parser.math), (_UNRENDERED_ROLE,)))  # a role swallowed by a runaway math span
    found = []
    for text, patterns in checks:
        for pattern in patterns:
            for match in pattern.finditer(text):
                context = " ".join(text[max(0, match.start() - 70):match.end() + 70].split())
                found.append(f"{match.group(0)!r} in: ...{context}...")
    return found


def test_unrendered_markup_check_catches_the_known_failures():
    broken_display_math = (  # what `$$...$$` inside a list item rendered to before chapter 3 was fixed
        '<li><p>give back the clean <span class="math">\\(I\\)</span>:\n$<span class="math">\\(L_{rec}\\)</span>'
        '<span class="math">\\(\nThe SSIM term {cite}`wang2004ssim` rewards structure. Uses \\)</span>\\lambda = 1$.</p></li>'
    )
    problems = unrendered_markup(broken_display_math)
    assert any("'$'" in p for p in problems) and any("{cite}" in p for p in problems), problems
    assert unrendered_markup('<p>see {glue:}`auroc` and {ref}`x`</p>')
    assert unrendered_markup('<nav><a href="a.html"><span class="section-number">1. </span>1. AnoGAN</a></nav>')
    fine = ('<p>The score <span class="math">\\(\\eta = \\max(x)\\)</span>.</p>'
            '<div class="math">\\[a = \\frac{1}{2}\\]</div><pre>echo $HOME {cite}`x`</pre><code>$$</code>'
            '<script>var a = "$$ {cite}";</script><h1><span class="section-number">3. </span>DRÆM</h1>'
            '<p>Section 3.2. Settings; chapter 2. 3. is not a number pair</p>')
    assert unrendered_markup(fine) == []


def test_built_pages_show_no_unrendered_math_roles_or_double_numbers(built_book):
    result, html = built_book
    assert result.returncode == 0, "the book did not build; see test_book_builds_offline_with_warnings_as_errors"
    pages = built_pages(html)
    assert any("notebooks" in p.parts for p in pages), f"no chapter pages under {html}"
    pages_by_problem: dict[str, list[str]] = {}  # the navigation repeats on every page: name each snippet once
    for page in pages:
        for snippet in unrendered_markup(page.read_text(encoding="utf-8")):
            pages_by_problem.setdefault(snippet, []).append(str(page.relative_to(html)))
    problems = [f"{', '.join(names[:3])}{f' (+{len(names) - 3} pages)' if len(names) > 3 else ''}: {snippet}"
                for snippet, names in pages_by_problem.items()]
    assert problems == [], "unrendered markup in the built book (display math `$$` must stand on its own lines, " \
                           "with blank lines around it):\n" + "\n".join(problems)


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def test_built_pages_declare_each_inline_script_once(built_book):
    """Jupyter Book 1.x adds sphinx-thebe's configuration twice; the second `const THEBE_JS_URL` is a
    SyntaxError in the console of every page. book/_ext/unique_scripts.py keeps one of each."""
    result, html = built_book
    assert result.returncode == 0, "the book did not build; see test_book_builds_offline_with_warnings_as_errors"
    pages = built_pages(html)
    assert pages
    for page in pages:
        head = page.read_text(encoding="utf-8").split("</head>")[0]
        bodies = [body.strip() for body in _INLINE_SCRIPT.findall(head) if body.strip()]
        repeated = sorted({body[:60] for body in bodies if bodies.count(body) > 1})
        assert repeated == [], f"{page.relative_to(html)} repeats inline scripts: {repeated}"
        assert head.count("const THEBE_JS_URL") <= 1, page


def test_unique_scripts_keeps_the_first_of_each_and_their_order():
    from sphinx.builders.html._assets import _JavaScript

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        from unique_scripts import keep_first_of_each_script
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    thebe = "const THEBE_JS_URL = 'x'"
    scripts = [_JavaScript("a.js"), _JavaScript("", body=thebe), _JavaScript("b.js", defer="defer"),
               _JavaScript(None, body=thebe), _JavaScript("a.js"), _JavaScript("b.js"), _JavaScript(None, body="other")]
    context = {"script_files": scripts}
    keep_first_of_each_script(None, "page", "page.html", context, None)
    assert context["script_files"] == [scripts[0], scripts[1], scripts[2], scripts[5], scripts[6]]


def test_chapter_titles_leave_numbering_to_the_toc():
    assert re.search(r"caption: Methods\n\s+numbered: true", (ROOT / "_toc.yml").read_text()), \
        "_toc.yml no longer numbers the chapters; then the titles must carry the numbers"
    for notebook in nb_tools.chapter_notebooks(ROOT):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        title = next(c for c in cells if c["cell_type"] == "markdown")["source"][0]
        assert not re.match(r"#\s+\d+(\.\d+)*\.?\s", title), f"{notebook.name}: _toc.yml numbers chapters; drop the number from {title!r}"


# --- the metrics primer ---------------------------------------------------------------------------

PRIMER = ROOT / "book" / "metrics_primer.ipynb"


def test_metrics_primer_has_the_colab_setup_cell_and_runs_under_nbval(pytestconfig):
    # `python -m adlearn.notebook_cells sync` only rewrites notebooks/NN_*.ipynb; the primer's copy is checked here.
    assert nb_tools.stale_notebooks([PRIMER]) == [], \
        f"{PRIMER.name}: its first code cell must be adlearn.notebook_cells.setup_cell_source() (the Colab set-up cell)"
    assert "book/metrics_primer.ipynb" in pytestconfig.getini("testpaths"), "the primer is not under nbval"


def test_committed_primer_outputs_hold_no_absolute_paths():
    text = json.dumps([c.get("outputs", []) for c in json.loads(PRIMER.read_text(encoding="utf-8"))["cells"]])
    assert not re.search(r"(/home/|/root/|/work/|/tmp/|/Users/|[A-Z]:\\\\)", text), "an output prints a machine path"


# --- the book-only install ------------------------------------------------------------------------


def test_book_requirements_hold_only_the_build_tools():
    lines = [line.split("#")[0].strip() for line in (ROOT / "book" / "requirements.txt").read_text().splitlines()]
    names = {re.split(r"[<>=!~\[ @;]", line, maxsplit=1)[0].lower().replace("_", "-") for line in lines if line}
    assert "jupyter-book" in names and not names & {"torch", "torchvision", "-e", "adlearn", "imgaug"}, names
    config = (ROOT / "_config.yml").read_text()
    assert re.search(r'execute_notebooks:\s*"?off"?', config), "the book-only install assumes the build executes no notebook"
    assert not re.search(r"^\s*extra_extensions:", config, re.MULTILINE), \
        "a Sphinx extension was added to _config.yml: add its package to book/requirements.txt and update this test"
    # the book's own extensions (book/_ext, `local_extensions`) must run with what the book install has
    for extension in sorted((ROOT / "book" / "_ext").glob("*.py")):
        tree = ast.parse(extension.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert imported <= set(sys.stdlib_module_names) | {"__future__", "sphinx", "docutils"}, (extension.name, imported)
    readme = (ROOT / "README.md").read_text()
    command = readme.split("<!-- book-command -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert "pip install -r book/requirements.txt" in command and "jupyter-book build -W" in command, command


def test_opencv_is_the_headless_build() -> None:
    """imgaug asks for the GUI OpenCV; requirements.txt's stand-in must leave only the headless one (no libGL)."""
    import importlib.metadata

    import cv2

    gui = [line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    assert gui == ["NONE"], gui
    assert "headless" in importlib.metadata.version("opencv-python"), "the GUI opencv-python is installed"


def test_glue_writes_the_output_myst_nb_collects(monkeypatch):
    """adlearn.notebook.glue stores what myst-nb's own glue(display=False) stores, without myst-nb in the kernel."""
    import IPython.display

    from adlearn.notebook import glue

    calls = []
    monkeypatch.setattr(IPython.display, "display", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert glue("image_auroc", 0.98765, ".3f") == "0.988"
    (bundle,), options = calls[0]
    assert bundle == {"application/papermill.record/text/plain": "'0.988'"}
    assert options == {"raw": True, "metadata": {"scrapbook": {"name": "image_auroc", "mime_prefix": "application/papermill.record/"}}}
    myst_glue = pytest.importorskip("myst_nb.ext.glue")
    assert myst_glue.GLUE_PREFIX == "application/papermill.record/"
    theirs = []
    monkeypatch.setattr(myst_glue, "ipy_display", lambda *args, **kwargs: theirs.append((args, kwargs)))
    myst_glue.glue("image_auroc", "0.988", display=False)
    (their_bundle,), their_options = theirs[0]
    assert their_bundle == bundle and their_options["metadata"]["scrapbook"] == options["metadata"]["scrapbook"]
    calls.clear()
    glue("count", 2700, ",")  # read back by the {glue:text} role with ast.literal_eval: must stay the text "2,700"
    import ast
    assert ast.literal_eval(calls[0][0][0]["application/papermill.record/text/plain"]) == "2,700"
    with pytest.raises(ValueError, match="glue names"):
        glue("two words", 1)


def test_every_glue_reference_has_a_committed_output():
    """Each {glue:text}`name` in a notebook's prose is glued by that notebook's committed outputs (else the book
    build fails with "No key ... found in glue data", after a re-run that dropped or renamed it)."""
    glue_prefix = "application/papermill.record/"
    for notebook in nb_tools.runnable_notebooks(ROOT):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        prose = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        referenced = set(re.findall(r"\{glue(?::\w+)?\}`([\w]+)", prose))
        glued = {output["metadata"]["scrapbook"]["name"] for c in cells for output in c.get("outputs", [])
                 if any(key.startswith(glue_prefix) for key in output.get("data", {}))}
        assert referenced <= glued, f"{notebook.name}: prose quotes {sorted(referenced - glued)} with no glued output"
