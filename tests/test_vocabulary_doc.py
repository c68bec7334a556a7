"""docs/vocabulary.md is generated from the knob and metric tables and the registries: it must be
current (a fresh process, so plug-ins registered by other tests do not show)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "write_vocabulary.py"


def test_vocabulary_doc_is_current():
    proc = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
