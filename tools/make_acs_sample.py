"""Regenerate the ACS PUMS sample shipped inside the package (``userchoice/samples``).

    python tools/make_acs_sample.py SOURCE.csv.gz            # rewrite the shipped sample
    python tools/make_acs_sample.py SOURCE.csv.gz --check    # exit 1 if it differs

SOURCE is the staged substitute ``shared/data/acs_pums/acs_2017_1yr_person_AL_sample5000.csv.gz``
(sha256 below; see its SOURCE.md): 5,000 real ACS 2017 1-Year person records for Alabama. The
sample keeps every row, in order, and only the columns the shipped census tasks read (those of
``SAMPLE_TASKS``: ACSEmployment, the shipped configs' task, and the commute-time tasks
ACSTravelTime and ACSTravelTimeDean, plus the person key ``SERIALNO``, ``SPORDER``, ``ST``), in
the source's column order, every cell exactly as written there (read and written as text: no
number is re-formatted). It is gzipped with mtime 0 and no file name, so the output is the
same bytes on every run.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
from pathlib import Path

SOURCE_SHA256 = "71188d999d694e0c026bf6f29a815dfd0d06cb9f52fb86acf7fa2e4b4495034e"
TARGET = (Path(__file__).resolve().parents[1] / "src" / "userchoice" / "samples"
          / "acs_2017_1yr_person_AL_sample5000.csv.gz")
PERSON_KEY = ("SERIALNO", "SPORDER", "ST")
# The tasks that run from the shipped sample (census.TASKS names).
SAMPLE_TASKS = ("ACSEmployment", "ACSTravelTime", "ACSTravelTimeDean")


def columns() -> set[str]:
    """The columns the shipped sample's tasks need, plus the person key."""
    from userchoice.data.census import TASKS

    return {c for name in SAMPLE_TASKS for c in TASKS[name].columns} | set(PERSON_KEY)


def build(source: Path) -> bytes:
    import pandas as pd

    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{source}: sha256 {digest}, expected {SOURCE_SHA256} (the staged "
                         f"substitute; see shared/data/acs_pums/SOURCE.md)")
    frame = pd.read_csv(source, dtype=str, keep_default_na=False, encoding="latin-1")
    keep = [c for c in frame.columns if c in columns()]
    missing = columns() - set(keep)
    if missing:
        raise SystemExit(f"{source}: no column(s) {sorted(missing)}")
    text = frame[keep].to_csv(index=False, lineterminator="\n").encode("latin-1")
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(text)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the staged 5,000-row ACS 2017 AL sample")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    data = build(args.source)
    if args.check:
        same = TARGET.is_file() and TARGET.read_bytes() == data
        print(f"{TARGET}: {'up to date' if same else 'differs'}")
        return 0 if same else 1
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    tmp = TARGET.with_name(f".{TARGET.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(TARGET)
    print(f"wrote {TARGET} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
