"""The README's "your own users, preferences and learner family" example runs as printed and
does what it says (in a fresh process: it registers a family by name)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_own_market_and_family_example_runs():
    code = readme_block("### Your own users, preferences and learner family") + (
        "\nfrom userchoice.families import make_family\n"
        "assert type(make_family('squared_hinge')).__name__ == 'SquaredHinge'\n"
        "table = result.summarise('test_accuracy', by=())\n"
        "assert list(table.learner) == [0, 1] and (table['n'] == 3).all()\n"
        "assert (table['mean'] > 0.6).all()  # x[:, 0] decides y: both learners learn it\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_population_dynamics_example_prints_the_social_optimum():
    code = readme_block("### Beyond the paper: the neighbouring models")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert abs(float(done.stdout.split()[-1]) - 3.5) < 1e-6, done.stdout
