"""A Sphinx extension that writes each page's ``<script>`` entries once.

Jupyter Book 1.x registers sphinx-thebe's and sphinx-togglebutton's inline
configuration twice, so every page carried two ``const THEBE_JS_URL = ...``
blocks, and the second one is a ``SyntaxError`` ("Identifier 'THEBE_JS_URL' has
already been declared") in the browser console of every published page. The
first occurrence of each identical entry is kept, in order.
"""

from __future__ import annotations

from typing import Any


def _identity(script: Any) -> tuple:
    # Sphinx >= 7.1 keeps scripts as ``_JavaScript`` objects (file name + attributes, the inline body among them);
    # older versions as plain file names.
    attributes = getattr(script, "attributes", None)
    if attributes is None:
        return (str(script),)
    # an inline script's file name is None or "" depending on who added it: both mean "no file"
    filename = getattr(script, "filename", None) or ""
    return (filename, tuple(sorted((key, str(value)) for key, value in attributes.items())))


def keep_first_of_each_script(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        identity = _identity(script)
        if identity not in seen:
            seen.add(identity)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", keep_first_of_each_script, priority=900)  # after the themes add theirs
    return {"parallel_read_safe": True, "parallel_write_safe": True}
