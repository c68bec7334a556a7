"""MkDocs hooks (``hooks:`` in mkdocs.yml): the pages that are generated, not written.

- ``cli.md``, ``configuration.md`` and ``api/index.md`` come from ``tools/write_reference.py``
  (the typer app, the pydantic config schema, ``userchoice.__all__``) at every build;
- ``tutorial.md`` is ``docs/tutorial.ipynb`` as a page;
- a line ``<!-- readme: TITLE -->`` (or ``<!-- readme-intro: TITLE -->``, up to its first
  subsection) in a page is replaced by that section of README.md, so the site and the README
  say the same thing and a renamed section fails the build; ``<!-- readme-timings -->`` by
  every README paragraph stating a timing (except those of the sections the page includes);
- Sphinx roles in docstrings (``:func:`x```, ``:class:`~a.b.C```), which mkdocstrings leaves
  as they are, become plain code (``x``, ``C``).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from mkdocs.structure.files import File

_TOOLS = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("userchoice_write_reference",
                                               _TOOLS / "write_reference.py")
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)

_MARKER = re.compile(r"^<!-- readme(-intro)?: (.+?) -->$", re.M)
_TIMINGS = re.compile(r"^<!-- readme-timings -->$", re.M)
# ":func:<code>~pkg.mod.name</code>" as rendered from a docstring: the role and, after "~",
# the path go (Sphinx shows the last part only)
_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc|const):(<code>)(?:~(?:\w+\.)*)?")
NOTEBOOK = "tutorial.ipynb"


def on_files(files, config):
    for name, render in reference.PAGES.items():
        files.append(File.generated(config, name, content=render()))
    notebook = Path(config["docs_dir"]) / NOTEBOOK
    if notebook.is_file():
        files.append(File.generated(config, "tutorial.md",
                                    content=reference.notebook_markdown(notebook)))
    return files


def on_page_markdown(markdown, page, config, files):
    included = tuple(m[2] for m in _MARKER.finditer(markdown))
    markdown = _TIMINGS.sub(lambda m: reference.readme_timings(exclude=included), markdown)
    return _MARKER.sub(lambda m: reference.readme_section(m[2], intro_only=bool(m[1])),
                       markdown)


def on_page_content(html, page, config, files):
    return _ROLE.sub(r"\1", html)
