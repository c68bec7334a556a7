"""The layout is the data flow: no module imports from a layer above its own (lazy imports
inside functions included), so there are no import cycles between layers."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "userchoice"

# Lowest first. A module may import its own layer's modules and any layer below.
LAYERS: list[tuple[str, ...]] = [
    ("registry", "atomic", "knobs", "stats", "version", "reprs"),
    ("data",),  # every data.* module
    ("preferences",),
    ("market", "synthetic", "theory"),
    ("families", "choice", "choice_losses", "schedules"),
    ("probing", "metrics"),
    # engine.* modules; frames: results as data; population.*: Dean et al.'s dynamics;
    # equilibrium.*: Jagadeesan et al.'s share competition
    ("engine", "fitting", "frames", "population", "equilibrium"),
    ("reference",),
    ("experiments.config", "experiments.paths", "experiments.store"),
    ("experiments", "experiments.plan", "experiments.runner", "experiments.ray_runner",
     "experiments.population", "experiments.equilibrium"),
    ("analysis", "analysis_population"),
    ("plots", "plots_population", "plots_equilibrium", "plots_compare"),
    ("report", "demo", "reproduce", "compare"),
    ("cli", "__main__", ""),  # "" is the package's __init__ (public re-exports)
]


def layer_of(module: str) -> int:
    name = module.removeprefix("userchoice").removeprefix(".")
    best = None
    for index, members in enumerate(LAYERS):
        for member in members:
            if name == member or (member and name.startswith(member + ".")):
                if best is None or len(member) > best[1]:
                    best = (index, len(member))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.split(".")[0] == "userchoice":
            if node.module == "userchoice":
                found += [(f"userchoice.{a.name}", node.lineno) for a in node.names]
            else:
                found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names
                      if a.name.split(".")[0] == "userchoice"]
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["userchoice", *parts])


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for path in sorted(SRC.rglob("*.py")):
        here = module_name(path)
        for target, line in imports(path):
            if layer_of(target) > layer_of(here):
                upward.append(f"{path.relative_to(SRC)}:{line} {here} → {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_data_never_imports_preferences_or_markets():
    for path in sorted((SRC / "data").rglob("*.py")):
        for target, line in imports(path):
            assert not target.startswith(("userchoice.preferences", "userchoice.market")), \
                f"data/{path.name}:{line} imports {target}"
