"""Generated pages of the documentation site: the CLI reference (from the typer app) and the
configuration reference (from the pydantic schema in ``userchoice.experiments.config``).

``mkdocs build`` calls these through ``tools/mkdocs_hooks.py``, so the site can never show a
stale copy; run by hand to read a page or write it into a folder:

    python tools/write_reference.py cli             # print the CLI reference
    python tools/write_reference.py config          # print the configuration reference
    python tools/write_reference.py all --out DIR   # write cli.md and configuration.md
"""

from __future__ import annotations

import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types as at
from pydantic import AfterValidator, BaseModel, Strict
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

# ---------------------------------------------------------------------------------------------
# CLI reference
# ---------------------------------------------------------------------------------------------


def cli_markdown() -> str:
    """Every command of ``userchoice`` with its usage, arguments and options, as typer's own
    ``typer … utils docs`` writes them (titles shifted under the page's title)."""
    import click
    import typer
    from typer.cli import get_docs_for_click

    from userchoice.cli import app

    command = typer.main.get_command(app)
    ctx = click.Context(command, info_name="userchoice", obj={})
    text = get_docs_for_click(obj=command, ctx=ctx, name="userchoice").strip()
    # typer writes "# `userchoice`" then "## `userchoice demo`"…: keep one H1, the page's own.
    body = text.split("\n", 1)[1] if text.startswith("# ") else text
    return ("# Command line\n\n"
            "Generated from the typer app (`userchoice.cli.app`) when the site is built; the "
            "same text as `userchoice COMMAND --help`. `python -m userchoice` is the same "
            "command.\n" + body + "\n")


# ---------------------------------------------------------------------------------------------
# Configuration reference
# ---------------------------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _registry_of(validator: AfterValidator) -> Any:
    """The registry a ``config._registered`` check looks names up in (None for other
    validators): the closure variable ``registry`` of its function."""
    try:
        return inspect.getclosurevars(validator.func).nonlocals.get("registry")
    except (TypeError, ValueError):
        return None


def _bounds(metadata: list[Any]) -> str | None:
    """``0 ≤ x ≤ 1``-style text of the bounds among ``metadata`` (None without bounds)."""
    low = high = ""
    for item in metadata:
        if isinstance(item, at.Ge):
            low = f"{_number(item.ge)} ≤ "
        elif isinstance(item, at.Gt):
            low = f"{_number(item.gt)} < "
        elif isinstance(item, at.Le):
            high = f" ≤ {_number(item.le)}"
        elif isinstance(item, at.Lt):
            high = f" < {_number(item.lt)}"
    if low and not high:  # one bound: "≥ 1" reads better than "1 ≤ x"
        return "≥ " + low.removesuffix(" ≤ ") if low.endswith("≤ ") else \
            "> " + low.removesuffix(" < ")
    return f"{low}x{high}" if low or high else None


def _constraints(metadata: list[Any]) -> list[str]:
    """Readable constraints of one annotation's metadata (bounds, lengths, registries)."""
    flat: list[Any] = []
    for item in metadata:
        flat += item.metadata if isinstance(item, FieldInfo) else [item]
    bounds = _bounds(flat)
    out: list[str] = [] if bounds is None else [bounds]
    for item in flat:
        if isinstance(item, at.MinLen):
            out.append(f"at least {item.min_length} items" if item.min_length > 1
                       else "not empty")
        elif isinstance(item, at.MaxLen):
            out.append(f"at most {item.max_length} items")
        elif isinstance(item, Strict) and item.strict:
            out.append("strict (`true`, `1.0`, `\"3\"` rejected)")
        elif isinstance(item, AfterValidator):
            registry = _registry_of(item)
            if registry is not None:
                names = ", ".join(f"`{name}`" for name in registry.names())
                out.append(f"a registered {registry.kind} ({names}) or an import path "
                           f"`package.module:Name`")
            elif item.func.__doc__:
                out.append(" ".join(inspect.getdoc(item.func).split()))
        elif getattr(item, "allow_inf_nan", True) is False:
            out.append("finite")
    return out


def _type(annotation: Any) -> tuple[str, list[str]]:
    """(type text, constraints) of an annotation; constraints of list items and of union
    branches say where they apply."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        text, inner = _type(args[0])
        return text, _constraints(list(annotation.__metadata__)) + inner
    if origin in (typing.Union, types.UnionType):
        branches = [_type(arg) for arg in args if arg is not type(None)]
        text = " | ".join(t for t, _ in branches) + (" | null" if type(None) in args else "")
        if len(branches) == 1:
            return text, branches[0][1]
        return text, [f"{t}: {', '.join(c)}" for t, c in branches if c]
    if origin is typing.Literal:
        return "str", ["one of " + ", ".join(f"`{a}`" for a in args)]
    if origin in (list, tuple):
        item_text, item_constraints = _type(args[0]) if args else ("any", [])
        return f"list[{item_text}]", ([f"each item: {', '.join(item_constraints)}"]
                                       if item_constraints else [])
    if origin is dict:
        key, value = (_type(a)[0] for a in args) if args else ("str", "any")
        return f"mapping[{key}, {value}]", []
    if annotation is typing.Any:
        return "any", []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "[section](#{name})", []  # _table fills in the field (the section's anchor)
    return getattr(annotation, "__name__", str(annotation)), []


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "its defaults"
        return f"`{value!r}`"
    if field.default is None:
        return "none"
    if field.default is PydanticUndefined:
        return ""
    return f"`{field.default!r}`" if not isinstance(field.default, float) \
        else f"`{field.default:g}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section_model(annotation: Any) -> type[BaseModel] | None:
    candidates = typing.get_args(annotation) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _table(model: type[BaseModel], prefix: str) -> str:
    rows = ["| field | type | default | description | constraints |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        text, constraints = _type(field.annotation)
        text = text.replace("{name}", f"{prefix}{name}".replace(".", ""))  # the heading's id
        constraints = _constraints(field.metadata) + constraints
        rows.append(f"| `{prefix}{name}` | {_cell(text)} | {_cell(_default(field))} | "
                    f"{_cell(field.description or '')} | {_cell('; '.join(constraints))} |")
    return "\n".join(rows)


def _doc(model: type[BaseModel]) -> str:
    doc = model.__doc__
    if not doc or doc == BaseModel.__doc__:
        return ""
    return inspect.cleandoc(doc)


def config_markdown() -> str:
    """Every section and field of an experiment config: type, default, constraints and
    description, read from ``ExperimentConfig`` (and from the knob table through it)."""
    from userchoice.experiments.config import STATIC_FIELDS, ExperimentConfig

    parts = [
        "# Configuration reference",
        "Generated from the pydantic schema (`userchoice.experiments.config.ExperimentConfig`) "
        "when the site is built. An experiment is one YAML file with these sections; unknown "
        "fields are errors naming the field, and `--set section.field=value` overrides any "
        "field from the command line. The knob fields come from the knob table "
        "([vocabulary](vocabulary.md)).",
        "## Top level",
        _table(ExperimentConfig, ""),
    ]
    def sections(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            section = _section_model(field.annotation)
            if section is None:
                continue
            parts.append(f"## `{prefix}{name}`")
            doc = _doc(section)
            if doc:
                parts.append(doc)
            parts.append(_table(section, f"{prefix}{name}."))
            sections(section, f"{prefix}{name}.")  # nested sections (population.groups, …)

    sections(ExperimentConfig, "")
    keys = ", ".join(f"`{key}`" for key in STATIC_FIELDS)
    parts += ["## `static_grid`",
              "A mapping from a static field to the list of values to sweep; each value is "
              "one engine shape (one compilation), crossed with the knob grid. Allowed keys: "
              f"{keys}."]
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# API index, README sections, the tutorial notebook
# ---------------------------------------------------------------------------------------------

API_PAGES = {  # the API reference pages (docs/api/*.md) and the modules each documents
    "engine": "the engine: spec, step API, simulate, streams, driver, knobs, the NumPy "
              "reference",
    "population": "the population (participation) dynamics of Dean et al.: groups, spec, "
                  "step API, simulate, probing sources, metrics",
    "equilibrium": "competition for market share (Jagadeesan et al.): choice losses, data, "
                   "settings, spec, best responses, simulate, metrics",
    "markets": "datasets, preferences, markets, synthetic markets, fitting",
    "registries": "the registry type and every registered kind",
    "data": "dataset loaders, the dataset registry, fetch and import",
    "experiments": "configs, paths, plans, runners, results directories",
    "analysis": "results as frames, analysis, statistics, figures, the HTML report, "
                "reproduction, the demo",
    "utilities": "atomic writes, short summaries (repr), the version",
}


def api_index_markdown() -> str:
    """The API reference's front page: every name ``userchoice`` exports (``__all__``),
    linked to where it is documented."""
    import userchoice

    rows = ["| name | defined in | summary |", "|---|---|---|"]
    for name in userchoice.__all__:
        obj = getattr(userchoice, name)
        module = getattr(obj, "__module__", None)
        if module is None or not hasattr(obj, "__qualname__"):
            rows.append(f"| `{name}` | `userchoice` | the installed version |")
            continue
        doc = (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")
        doc = doc.split(". ")[0].removesuffix(".") + "." if doc else ""  # the first sentence
        rows.append(f"| [`{name}`][{module}.{obj.__qualname__}] | `{module}` | "
                    f"{_cell(doc)} |")
    pages = "\n".join(f"- [{page}]({page}.md): {text}" for page, text in API_PAGES.items())
    return ("# API reference\n\nGenerated from the docstrings. `import userchoice` gives the "
            "names below (`userchoice.__all__`); the pages document each module:\n\n"
            f"{pages}\n\n## `userchoice`\n\n" + "\n".join(rows) + "\n")


README = Path(__file__).resolve().parents[1] / "README.md"


def _headings(lines: list[str]) -> list[tuple[int, int, str]]:
    """(line index, level, title) of the Markdown headings outside fenced code blocks."""
    out, fence = [], None
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            continue
        if fence is None and line.startswith("#"):
            hashes = len(line) - len(line.lstrip("#"))
            if line[hashes:hashes + 1] == " ":
                out.append((index, hashes, line[hashes:].strip()))
    return out


def readme_section(title: str, intro_only: bool = False, text: str | None = None) -> str:
    """The body of the README section titled ``title`` (without its heading), its
    subsections' headings raised so the section's level becomes the page's (an included
    ``## X`` with ``### Y`` gives ``## Y``); ``intro_only``: up to the first subsection.
    Links into ``docs/`` are made relative to the site. A missing title is a ``KeyError``
    naming the README's headings (so a renamed section fails the docs build)."""
    lines = (README.read_text() if text is None else text).splitlines()
    headings = _headings(lines)
    found = [h for h in headings if h[2] == title]
    if not found:
        raise KeyError(f"README.md has no section {title!r}; its sections: "
                       f"{[h[2] for h in headings]}")
    start, level, _ = found[0]
    end = len(lines)
    for index, other_level, _ in headings:
        if index > start and (other_level <= level or intro_only):
            end = index
            break
    body = []
    sub = {index: other for index, other, _ in headings}
    for index in range(start + 1, end):
        line = lines[index]
        if index in sub:
            line = "#" * (sub[index] - level + 1) + line[sub[index]:]
        body.append(line.replace("](docs/", "]("))
    return "\n".join(body).strip() + "\n"


TIMING = re.compile(r"\b2 (CPU )?cores\b|benchmarks/bench_\w+\.py")


def readme_timings(exclude: tuple[str, ...] = (), text: str | None = None) -> str:
    """Every README paragraph that states a timing (on 2 cores, or of a benchmark script), as
    a list naming the section it comes from; paragraphs of the sections in ``exclude`` (shown
    whole elsewhere on the page) are left out. Empty README → a ``ValueError`` (the page would
    state nothing)."""
    lines = (README.read_text() if text is None else text).splitlines()
    headings = {index: title for index, _, title in _headings(lines)}
    fenced, section, paragraph, found = None, "", [], []

    def flush() -> None:
        joined = " ".join(line.strip() for line in paragraph)
        if joined and TIMING.search(joined) and section not in exclude:
            joined = joined.replace("](docs/", "](").removesuffix(":")  # ":" led to a block
            found.append(f"- *{section}*: {joined}")
        paragraph.clear()

    for index, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            flush()
            fenced = None if fenced else line.lstrip()[:3]
            continue
        if fenced:
            continue
        if index in headings:
            flush()
            section = headings[index]
        elif line.strip():
            paragraph.append(line)
        else:
            flush()
    flush()
    if not found:
        raise ValueError("README.md states no timing (no paragraph mentions 2 cores or a "
                         "benchmarks/ script)")
    return "\n".join(found) + "\n"


def notebook_markdown(path: str | Path) -> str:
    """A notebook as a Markdown page: its Markdown cells, its code cells as Python blocks and
    the text and PNG outputs it was saved with, and a link to download it."""
    import json

    path = Path(path)
    notebook = json.loads(path.read_text())
    parts: list[str] = []
    for cell in notebook["cells"]:
        source = "".join(cell.get("source", ""))
        if cell["cell_type"] == "markdown":
            parts.append(source)
        elif cell["cell_type"] == "code" and source.strip():
            parts.append(f"```python\n{source}\n```")
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if output.get("output_type") == "stream":
                    parts.append("```text\n" + "".join(output["text"]).rstrip() + "\n```")
                elif "image/png" in data:
                    png = data["image/png"]
                    png = png if isinstance(png, str) else "".join(png)
                    parts.append(f"![output](data:image/png;base64,{png.strip()})")
                elif "text/html" in data:  # a DataFrame's or a result's own table
                    html = "".join(data["text/html"]).strip()
                    parts.append(f'<div class="notebook-output">\n{html}\n</div>')
                elif "text/plain" in data:
                    parts.append("```text\n" + "".join(data["text/plain"]).rstrip() + "\n```")
    page = "\n\n".join(parts)
    note = (f"\n\n*This page is the notebook [`{path.name}`]({path.name}) (download it and run "
            f"it with Jupyter; `python -m pytest tests/test_docs.py` executes it).*\n")
    head, _, rest = page.partition("\n")
    return head + note + rest + "\n" if head.startswith("# ") else note + page + "\n"


PAGES = {"cli.md": cli_markdown, "configuration.md": config_markdown,
         "api/index.md": api_index_markdown}


def main(argv: list[str]) -> int:
    which = argv[0] if argv else "all"
    if which not in ("cli", "config", "all"):
        print(__doc__)
        return 2
    pages = {"cli": ["cli.md"], "config": ["configuration.md"], "all": list(PAGES)}[which]
    if "--out" in argv:
        out = Path(argv[argv.index("--out") + 1])
        for page in pages:
            (out / page).parent.mkdir(parents=True, exist_ok=True)
            (out / page).write_text(PAGES[page]())
            print(f"wrote {out / page}")
    else:
        for page in pages:
            print(PAGES[page]())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
