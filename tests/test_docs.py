"""The documentation site and the tutorial notebook.

The site (mkdocs.yml) must build with ``--strict`` (any warning — a broken link, a docstring
mkdocstrings cannot render, an API reference to an undocumented name — fails), and its
generated pages must cover the whole CLI and the whole config schema; the tutorial must run
without a cell error, including its own assertion cell (the trap's escape).
"""

from __future__ import annotations

import importlib.util
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

import userchoice
from userchoice.cli import app
from userchoice.experiments.config import ExperimentConfig
from userchoice.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
# Modules the API reference leaves out, and why: the CLI has its own page (generated from the
# app); ``__main__`` only starts it.
NOT_IN_API = {"userchoice.cli", "userchoice.__main__"}


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tools_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _tool("write_reference")


def _sections() -> dict[str, type]:
    out = {"": ExperimentConfig}
    for name, field in ExperimentConfig.model_fields.items():
        model = reference._section_model(field.annotation)
        if model is not None:
            out[name] = model
    return out


def _commands(group: click.Group, prefix: str = "userchoice") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in group.commands.items():
        out.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            out += _commands(command, f"{prefix} {name}")
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once with --strict into a temporary folder (≈ 10 s)."""
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}{done.stderr}"
    assert "WARNING" not in done.stderr, done.stderr
    return out


def test_site_builds_strict_with_every_page(site):
    for page in ("index", "concepts", "tutorial", "cli", "configuration", "reproducing",
                 "performance", "extending", "vocabulary", "api"):
        assert (site / page / "index.html").is_file() or (site / f"{page}.html").is_file(), page
    index = (site / "index.html").read_text()
    assert "overspecialisation trap" in index  # the README's intro, included by the hook
    assert "<!-- readme" not in index


def test_api_reference_documents_every_export(site):
    """Each name ``import userchoice`` gives has its own entry, with its docstring rendered."""
    html = "".join(p.read_text() for p in (site / "api").rglob("*.html"))
    for name in userchoice.__all__:
        obj = getattr(userchoice, name)
        if not hasattr(obj, "__qualname__"):
            continue
        anchor = f'id="{obj.__module__}.{obj.__qualname__}"'
        assert anchor in html, f"{name}: no API entry {anchor}"
    assert not re.search(r":(func|class|meth):<code>", html), "a Sphinx role left in the HTML"


def test_every_module_has_an_api_page():
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= set(re.findall(r"^::: (\S+)", page.read_text(), re.M))
    modules = {info.name for info in pkgutil.walk_packages(userchoice.__path__, "userchoice.")
               if not info.ispkg}
    missing = sorted(modules - documented - NOT_IN_API)
    assert not missing, f"modules with no ::: entry in docs/api/*.md: {missing}"
    assert not documented - modules, "docs/api names a module that does not exist"


def test_cli_reference_covers_every_command_and_option(site):
    page = (site / "cli" / "index.html").read_text()
    for name, command in _commands(typer.main.get_command(app)):
        assert name in page, name
        for param in command.params:
            for option in param.opts if isinstance(param, click.Option) else []:
                assert option in page, f"{name}: {option}"


def test_config_reference_covers_every_field_with_a_description(site):
    page = (site / "configuration" / "index.html").read_text()
    for section, model in _sections().items():
        for name, field in model.model_fields.items():
            path = f"{section}.{name}" if section else name
            assert field.description, f"config field {path} has no description (Field(...))"
            assert f"<code>{path}</code>" in page, path
            assert field.description.split("`")[0] in page, path


def test_config_reference_states_defaults_and_constraints():
    text = reference.config_markdown()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| `")}
    assert "**required**" in rows["`engine.steps`"] and "≥ 1" in rows["`engine.steps`"]
    assert "`100`" in rows["`engine.eval_every`"]
    assert "0 ≤ x ≤ 1" in rows["`knobs.tau`"]
    for family in FAMILIES.names():
        assert f"`{family}`" in rows["`learner.family`"], family


README = """# tool

Intro text.

## Usage

Use it; it runs in 3 s on
2 CPU cores:

```bash
# a comment, not a heading; 9 s on 2 cores
```

### Details

More: [guide](docs/guide.md).

## Other
"""


def test_readme_section_extracts_raises_levels_and_rewrites_links():
    usage = reference.readme_section("Usage", text=README)
    assert "# a comment, not a heading" in usage and "## Details" in usage
    assert "[guide](guide.md)" in usage and "Other" not in usage
    assert reference.readme_section("Usage", intro_only=True, text=README).strip().endswith(
        "```")
    assert reference.readme_section("tool", intro_only=True, text=README) == "Intro text.\n"
    with pytest.raises(KeyError, match=r"no section 'Usage!'.*'Other'"):
        reference.readme_section("Usage!", text=README)


def test_readme_timings_gathers_the_paragraphs_that_state_one():
    assert reference.readme_timings(text=README) == "- *Usage*: Use it; it runs in 3 s on 2 " \
                                                     "CPU cores\n"
    with pytest.raises(ValueError, match="states no timing"):
        reference.readme_timings(exclude=("Usage",), text=README)


def test_tutorial_outputs_come_from_its_code():
    """The saved outputs (shown on the site) were produced by the code cells as they are."""
    assert _tool("run_notebook").main(["--check"]) == 0


def test_tutorial_executes(tmp_path):
    """Every cell runs (nbclient, kernel python3); a cell error fails, and the notebook's own
    assertion cell checks the escape from the trap (the prober's risk at p > 0 is far below
    its risk at p = 0). ≈ 25 s: two small compiled simulations."""
    run = _tool("run_notebook")
    notebook = run.execute(run.NOTEBOOK, tmp_path)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert any("assert" in cell.source for cell in code)
    assert all(cell.get("execution_count") for cell in code)
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    figures = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert figures, "the figure cell showed no figure"
