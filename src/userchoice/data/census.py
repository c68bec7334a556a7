"""ACS PUMS person records (the paper's Census setting) → ``Dataset``.

Reads the Census Bureau's person files in any of the forms they come in: plain CSV
(``psam_p01.csv``), gzipped CSV, or the per-state zip (``csv_pal.zip`` holding ``psam_p01.csv``;
the all-states ``csv_pus.zip`` with ``psam_pusa.csv``, ``psam_pusb.csv`` works too). Several files
or states are concatenated; any survey year. Only the columns a task needs are parsed, as numbers,
so zero-padded codes (``01``) and unpadded ones (``1``) read the same.

Tasks are defined folktables-style (``ACSTask``): features, a target with a transform, an optional
group column, a row filter (``preprocess``) and the fill value for missing features
(``postprocess``). The transform is a ``Condition`` (a binary label) or a ``NumericLabel`` (a
regression label, e.g. 10·ln(1 + JWMNP)). They are plain data, so a config can add one
(``ACSTask.from_config``, ``register_task``). ``ACSEmployment`` (the paper's task),
``ACSIncome`` and ``ACSTravelTime`` follow folktables/acs.py exactly; ``ACSEmploymentFiltered`` is
folktables' filtered variant; ``ACSTravelTimeDean`` is the commute-time regression of Dean et al.
(AISTATS 2024).

Every line of a file is checked to have as many fields as its header (pandas silently drops the
extras of an over-long row when only some columns are read), in the same streaming pass.
"""

from __future__ import annotations

import csv
import io
import operator
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from userchoice.data import common
from userchoice.data.common import DataFormatError, DatasetNotFoundError
from userchoice.data.dataset import Dataset

# ---------------------------------------------------------------------------------------------
# Task definitions
# ---------------------------------------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
}
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*"
                        r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Condition:
    """``column op value`` on one numeric column, e.g. ``Condition.parse("AGEP > 16")``.

    Comparisons follow pandas/NumPy: a missing value fails every test except ``!=``.
    """

    column: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"Condition op must be one of {sorted(_OPS)}, got {self.op!r}")

    @classmethod
    def parse(cls, text: str | Condition) -> Condition:
        if isinstance(text, Condition):
            return text
        match = _CONDITION.match(str(text))
        if not match:
            raise ValueError(f"cannot read condition {text!r}; expected 'COLUMN OP NUMBER' with "
                             f"OP one of {sorted(_OPS)}, e.g. 'AGEP > 16'")
        return cls(match[1], match[2], float(match[3]))

    def holds(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(_OPS[self.op](values, self.value), dtype=bool)

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value:g}"

    def values(self, target: np.ndarray) -> np.ndarray:
        """The binary label as float64: 1.0 where the condition holds (a missing target: 0.0)."""
        return self.holds(target).astype(np.float64)


# Numeric label transforms f in y = scale·f(target). NaN in → NaN out, so a missing target is
# told apart from a real 0 and becomes the label's ``missing`` value.
LABEL_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": np.asarray,
    "log1p": np.log1p,
}
_LABEL_FIELDS = ("transform", "scale", "missing")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class NumericLabel:
    """A regression label ``y = scale·f(column)`` (``f`` from ``LABEL_TRANSFORMS``); a row whose
    target is missing gets ``missing`` (Dean et al.: ``nan_to_num(10·log(1 + JWMNP), 0)``)."""

    column: str
    transform: str = "identity"
    scale: float = 1.0
    missing: float = 0.0

    def __post_init__(self) -> None:
        if self.transform not in LABEL_TRANSFORMS:
            raise ValueError(f"label transform must be one of {sorted(LABEL_TRANSFORMS)}, got "
                             f"{self.transform!r} (a binary label is a condition target, e.g. "
                             f"'{self.column} > 20')")
        for name in ("scale", "missing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not np.isfinite(value):
                raise ValueError(f"label {name} must be a finite number, got {value!r}")
        if self.scale == 0:
            raise ValueError("label scale must be non-zero, got 0")

    def values(self, target: np.ndarray) -> np.ndarray:
        """The label as float64; ``ValueError`` if a present target maps to a non-finite value
        (e.g. log1p of a value ≤ −1)."""
        target = np.asarray(target, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = self.scale * np.asarray(LABEL_TRANSFORMS[self.transform](target),
                                          dtype=np.float64)
        absent = np.isnan(target)
        bad = ~absent & ~np.isfinite(out)
        if bad.any():
            raise ValueError(f"label {self}: {int(bad.sum())} row(s) give a non-finite label "
                             f"(e.g. {self.column} = {target[bad][0]:g})")
        out[absent] = self.missing
        return out

    def describe(self) -> dict[str, Any]:
        return {"transform": self.transform, "scale": self.scale, "missing": self.missing}

    def __str__(self) -> str:
        inner = self.column if self.transform == "identity" else f"{self.transform}({self.column})"
        return inner if self.scale == 1 else f"{self.scale:g}·{inner}"


def _label_from_config(task: str, target: Any, label: Any) -> NumericLabel:
    where = f"ACS task {task!r}"
    if isinstance(label, str):
        label = {"transform": label}
    if not isinstance(label, Mapping):
        raise ValueError(f"{where}: label must be a transform name {sorted(LABEL_TRANSFORMS)} or "
                         f"a mapping with fields {list(_LABEL_FIELDS)}, got {label!r}")
    unknown = set(label) - set(_LABEL_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown label field(s) {sorted(unknown)}; allowed: "
                         f"{list(_LABEL_FIELDS)}")
    if "transform" not in label:
        raise ValueError(f"{where}: label needs 'transform', one of {sorted(LABEL_TRANSFORMS)}")
    if not isinstance(target, str) or not _COLUMN.match(target.strip()):
        raise ValueError(f"{where}: with a label, target must be a column name (e.g. 'JWMNP'), "
                         f"got {target!r}")
    numbers: dict[str, float] = {}
    for name in ("scale", "missing"):
        if name in label:
            value = label[name]
            try:
                if isinstance(value, bool):
                    raise TypeError
                numbers[name] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: label {name} must be a number, got {value!r}") \
                    from None
    try:
        return NumericLabel(target.strip(), str(label["transform"]), **numbers)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


@dataclass(frozen=True)
class ACSTask:
    """A prediction task on ACS person records (folktables' ``BasicProblem``, as data).

    ``target_transform`` makes the label from ``target``: a ``Condition`` gives a binary label
    (1 where it holds; a missing target gives 0, as in folktables), a ``NumericLabel`` a real
    one (regression). ``preprocess`` keeps the rows where every condition holds.
    ``postprocess`` is the value missing features become (folktables: ``nan_to_num(nan=0)``).
    """

    name: str
    features: tuple[str, ...]
    target: str
    target_transform: Condition | NumericLabel
    group: str | None = None
    preprocess: tuple[Condition, ...] = ()
    postprocess: float = 0.0

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError(f"task {self.name!r}: features must not be empty")
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"task {self.name!r}: features repeat a column: {self.features}")
        if self.target in self.features:
            raise ValueError(f"task {self.name!r}: the target {self.target!r} is also a feature")
        if self.target_transform.column != self.target:
            raise ValueError(f"task {self.name!r}: target_transform tests "
                             f"{self.target_transform.column!r}, not the target {self.target!r}")

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the task reads, in a stable order."""
        wanted = [*self.features, self.target, *(c.column for c in self.preprocess)]
        if self.group:
            wanted.append(self.group)
        return tuple(dict.fromkeys(wanted))

    @property
    def regression(self) -> bool:
        """True for a numeric label (``NumericLabel``), False for a binary one."""
        return isinstance(self.target_transform, NumericLabel)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ACSTask:
        """Build a task from plain data, e.g. a YAML mapping::

            name: ACSIncome
            features: [AGEP, COW, SCHL, ...]
            target: PINCP > 50000          # the label condition (binary label)
            group: RAC1P                   # optional
            preprocess: [AGEP > 16, PINCP > 100, WKHP > 0, PWGTP >= 1]
            postprocess: 0                 # fill value for missing features

        A numeric (regression) label names the target column and a ``label`` transform
        (``LABEL_TRANSFORMS``; scale defaults to 1, a missing target's label to 0)::

            target: JWMNP
            label: {transform: log1p, scale: 10, missing: 0}   # y = 10·ln(1 + JWMNP)

        ``from_config(task.describe())`` rebuilds ``task``.
        """
        allowed = {"name", "features", "target", "label", "group", "preprocess", "postprocess"}
        unknown = set(config) - allowed
        named = f" in task {str(config['name'])!r}" if "name" in config else ""
        if unknown:
            raise ValueError(f"unknown ACS task field(s) {sorted(unknown)}{named}; allowed: "
                             f"{sorted(allowed)}")
        for required in ("name", "features", "target"):
            if required not in config:
                raise ValueError(f"ACS task config{named} needs {required!r}")
        name = str(config["name"])
        features = config["features"]
        if isinstance(features, str) or not isinstance(features, Iterable):
            raise ValueError(f"ACS task {name!r}: features must be a list of column names, got "
                             f"{features!r}")
        target = config["target"]
        label: Condition | NumericLabel
        if config.get("label") is not None:
            label = _label_from_config(name, target, config["label"])
        elif isinstance(target, str) and _COLUMN.match(target.strip()):
            raise ValueError(f"ACS task {name!r}: target {target!r} is a bare column; give a "
                             f"condition for a binary label (e.g. '{target.strip()} > 20') or a "
                             f"label transform for a numeric one (e.g. label: {{transform: "
                             f"log1p, scale: 10}}; transforms: {sorted(LABEL_TRANSFORMS)})")
        else:
            label = Condition.parse(target)
        preprocess = config.get("preprocess") or ()
        if isinstance(preprocess, str):
            preprocess = [preprocess]
        return cls(name=name, features=tuple(str(f) for f in features),
                   target=label.column, target_transform=label, group=config.get("group"),
                   preprocess=tuple(Condition.parse(c) for c in preprocess),
                   postprocess=float(config.get("postprocess", 0.0)))

    def describe(self) -> dict[str, Any]:
        """The task as plain data (the form ``from_config`` reads)."""
        out: dict[str, Any] = {"name": self.name, "features": list(self.features)}
        if isinstance(self.target_transform, NumericLabel):
            out.update(target=self.target, label=self.target_transform.describe())
        else:
            out["target"] = str(self.target_transform)
        out.update(group=self.group, preprocess=[str(c) for c in self.preprocess],
                   postprocess=self.postprocess)
        return out


_EMPLOYMENT_FEATURES = ("AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
                        "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P")

# folktables/acs.py (socialfoundations/folktables): ACSEmployment has preprocess = identity,
# postprocess = nan_to_num(nan=0); employment_filter belongs to ACSEmploymentFiltered.
ACSEmployment = ACSTask(
    name="ACSEmployment", features=_EMPLOYMENT_FEATURES, target="ESR",
    target_transform=Condition("ESR", "==", 1), group="RAC1P")

ACSIncome = ACSTask(
    name="ACSIncome",
    features=("AGEP", "COW", "SCHL", "MAR", "OCCP", "POBP", "RELP", "WKHP", "SEX", "RAC1P"),
    target="PINCP", target_transform=Condition("PINCP", ">", 50000), group="RAC1P",
    # folktables' adult_filter
    preprocess=(Condition("AGEP", ">", 16), Condition("PINCP", ">", 100),
                Condition("WKHP", ">", 0), Condition("PWGTP", ">=", 1)))

ACSEmploymentFiltered = ACSTask(
    name="ACSEmploymentFiltered",
    features=("AGEP", "SCHL", "MAR", "SEX", "DIS", "ESP", "MIG", "CIT", "MIL", "ANC", "NATIVITY",
              "RELP", "DEAR", "DEYE", "DREM", "RAC1P", "GCL"),
    target="ESR", target_transform=Condition("ESR", "==", 1), group="RAC1P",
    # folktables' employment_filter
    preprocess=(Condition("AGEP", ">", 16), Condition("AGEP", "<", 90),
                Condition("PWGTP", ">=", 1)))

# folktables' travel_time_filter: workers (ESR == 1) over 16 with a positive person weight.
_TRAVEL_TIME_FILTER = (Condition("AGEP", ">", 16), Condition("PWGTP", ">=", 1),
                       Condition("ESR", "==", 1))

ACSTravelTime = ACSTask(
    name="ACSTravelTime",
    features=("AGEP", "SCHL", "MAR", "SEX", "DIS", "ESP", "MIG", "RELP", "RAC1P", "PUMA", "ST",
              "CIT", "OCCP", "JWTR", "POWPUMA", "POVPIP"),
    target="JWMNP", target_transform=Condition("JWMNP", ">", 20), group="RAC1P",
    preprocess=_TRAVEL_TIME_FILTER)

# Dean, Curmei, Ratliff, Morgenstern, Fazel (AISTATS 2024), experiment (c): the authors' code
# (github.com/mcurmei627/MultiLearnerRiskReduction, subpop.py, generate_folktables_data) builds
# folktables.BasicProblem "ACSTravelTimeReg" on AGEP, SCHL, MAR, SEX, DIS, MIG, RAC1P, CIT,
# JWTR, POVPIP, then drops RAC1P from the features (it is the group); target JWMNP, preprocess
# travel_time_filter, label
# 10·log(1 + JWMNP) with a missing commute (ESR == 1 but worked at home) → 0 (nan_to_num), and
# missing features → 0. Not reproduced here (raw codes, standardised like every task): their
# recoding of SCHL into 3 levels, JWTR into 5, MAR to married/not and SEX/DIS/MIG to 0/1, the
# one-hot columns of SCHL, JWTR and MIG (drop_first), AGEP/80 and POVPIP/500 instead of
# standardising, and the merge of RAC1P 4 and 5 (groups are formed downstream from raw RAC1P).
ACSTravelTimeDean = ACSTask(
    name="ACSTravelTimeDean",
    features=("AGEP", "SCHL", "MAR", "SEX", "DIS", "MIG", "CIT", "JWTR", "POVPIP"),
    target="JWMNP", target_transform=NumericLabel("JWMNP", "log1p", scale=10.0, missing=0.0),
    group="RAC1P", preprocess=_TRAVEL_TIME_FILTER)

TASKS: dict[str, ACSTask] = {t.name: t for t in (
    ACSEmployment, ACSIncome, ACSEmploymentFiltered, ACSTravelTime, ACSTravelTimeDean)}

# Raw (unstandardised) per-user columns kept as Dataset attributes when the file has them.
ATTRIBUTE_COLUMNS = ("AGEP",)
# A person's identity in the PUMS files: housing unit serial number and person number within it
# (with the state, where present). A row repeating an earlier row's identity is the same person
# read twice (a file concatenated onto itself, two copies under different names) and is dropped
# before the split, so no person can be in both the training and the test users.
PERSON_KEY = ("SERIALNO", "SPORDER")


def register_task(task: ACSTask | Mapping[str, Any], *, replace: bool = False) -> ACSTask:
    """Add a task to ``TASKS`` (an ``ACSTask`` or a config mapping, see ``ACSTask.from_config``)."""
    if not isinstance(task, ACSTask):
        task = ACSTask.from_config(task)
    if task.name in TASKS and not replace and TASKS[task.name] != task:
        raise ValueError(f"an ACS task named {task.name!r} exists; pass replace=True")
    TASKS[task.name] = task
    return task


def get_task(task: str | ACSTask | Mapping[str, Any]) -> ACSTask:
    if isinstance(task, ACSTask):
        return task
    if isinstance(task, Mapping):
        return ACSTask.from_config(task)
    if task not in TASKS:
        raise ValueError(f"unknown ACS task {task!r}; known: {sorted(TASKS)}")
    return TASKS[task]


# ---------------------------------------------------------------------------------------------
# Finding and reading files
# ---------------------------------------------------------------------------------------------

SEARCH_PATTERNS = ("*.csv", "*.csv.gz", "*.zip")
NOT_FOUND_HINT = ("Get it with:  userchoice data fetch census --state AL --year 2018\n"
                  "or use a local copy:  userchoice data import census /path/to/psam_p01.csv")
# Person-file members of the Census zips: psam_p01.csv, psam_pusa.csv (2017+), ss16pal.csv (older).
_PERSON_MEMBER = re.compile(r"^(psam_p\w+|ss\d\dp\w+)\.csv$", re.IGNORECASE)
# Housing files share the folder layout but not the person columns: never picked up by a search.
_HOUSING_FILE = re.compile(r"^(psam_h|ss\d\dh|csv_h)", re.IGNORECASE)
_PARSER_LINE = re.compile(r"\bline (\d+)\b")


def _search(folder: Path) -> list[Path]:
    found: dict[Path, None] = {}
    if folder.is_dir():
        for pattern in SEARCH_PATTERNS:
            for path in sorted(folder.glob(pattern)):
                if path.is_file() and not path.name.startswith(".") \
                        and not _HOUSING_FILE.match(path.name):
                    found[path] = None
    if not found:
        raise DatasetNotFoundError("census", [folder / p for p in SEARCH_PATTERNS],
                                   hint=NOT_FOUND_HINT)
    return list(found)


def find_census_files(data_dir: str | Path | None = None) -> list[Path]:
    """Person files (CSV, CSV.gz, zip) in ``<data dir>/census``; ``DatasetNotFoundError`` (naming
    the ``userchoice data fetch/import`` commands) if there are none."""
    return _search(common.data_dir(data_dir) / "census")


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _plain_size(path: Path) -> int:
    """Uncompressed size of a plain or gzipped file (gzip: its trailer, modulo 2**32)."""
    with open(path, "rb") as handle:
        if handle.read(2) != b"\x1f\x8b":
            return path.stat().st_size
        handle.seek(-4, 2)
        return int.from_bytes(handle.read(4), "little")


def _sources(paths: Iterable[Path]) -> tuple[list[tuple[Path, str | None]], list[str]]:
    """(file, zip member or None) to read, and what was skipped as a duplicate.

    Every person member of a zip is read. The same data present twice (a zip and its extracted
    CSV side by side: same file name and the same uncompressed size) is read once.
    """
    entries: list[tuple[Path, str | None, tuple[str, int] | None]] = []
    for path in paths:
        if not path.is_file():
            entries.append((path, None, None))  # open_binary reports it
            continue
        members: list[zipfile.ZipInfo] = []
        if _is_zip(path):
            try:
                with zipfile.ZipFile(path) as archive:
                    members = [i for i in archive.infolist()
                               if _PERSON_MEMBER.match(Path(i.filename).name)]
            except zipfile.BadZipFile:
                members = []  # open_binary reports it
        if members:
            entries.extend((path, i.filename, (Path(i.filename).name.lower(), i.file_size))
                           for i in sorted(members, key=lambda i: i.filename))
        else:
            name = path.name.lower().removesuffix(".gz")
            entries.append((path, None, None if _is_zip(path) else (name, _plain_size(path))))
    # keep the given order; a zip member duplicating a plain file is the copy skipped
    plain_keys = {key for _, member, key in entries if member is None and key is not None}
    seen: set[tuple[str, int]] = set()
    sources: list[tuple[Path, str | None]] = []
    skipped: list[str] = []
    for path, member, key in entries:
        if key is not None and (key in seen or (member is not None and key in plain_keys)):
            skipped.append(f"{path} [{member}]" if member else str(path))
            continue
        if key is not None:
            seen.add(key)
        sources.append((path, member))
    return sources, skipped


class _FieldCountCheck(io.RawIOBase):
    """Passes bytes through while checking each complete line has ``n_fields`` fields.

    Blank lines are allowed (pandas skips them). Lines are counted from ``first_line``.
    """

    def __init__(self, raw: IO[bytes], n_fields: int, where: Path, member: str | None,
                 first_line: int) -> None:
        super().__init__()
        self._raw, self._commas, self._where, self._member = raw, n_fields - 1, where, member
        self._line, self._tail = first_line, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        if not data:
            if self._tail:
                self._check(self._tail + b"\n")
                self._tail = b""
            return 0
        cut = data.rfind(b"\n")
        if cut < 0:
            self._tail += data
        else:
            self._check(self._tail + data[:cut + 1])
            self._tail = data[cut + 1:]
        buffer[:len(data)] = data
        return len(data)

    def _check(self, block: bytes) -> None:
        arr = np.frombuffer(block, dtype=np.uint8)
        ends = np.flatnonzero(arr == 10)
        commas = np.cumsum(arr == 44, dtype=np.int64)[ends]
        counts = np.diff(commas, prepend=0)
        for i in np.flatnonzero(counts != self._commas):
            start = int(ends[i - 1]) + 1 if i > 0 else 0
            line = block[start:int(ends[i])]
            if not line.strip():
                continue
            if b'"' in line:  # a quoted comma is not a separator: count fields properly
                fields = next(csv.reader([line.decode("latin-1")]), [])
                if len(fields) == self._commas + 1:
                    continue
            else:
                fields = [None] * (int(counts[i]) + 1)
            problem = (f"has {len(fields)} fields but the header has {self._commas + 1}"
                       + ("" if len(fields) > self._commas else " (a truncated file?)"))
            if self._member:
                problem = f"member {self._member}: {problem}"
            raise DataFormatError(self._where, problem, line=self._line + int(i),
                                  expected=f"{self._commas + 1} comma-separated fields per line")
        self._line += len(ends)


def _read_header(handle: IO[bytes], where: Path, member: str | None) -> list[str]:
    first = handle.readline()
    if not first.strip():
        inside = f"member {member} " if member else ""
        raise DataFormatError(where, f"{inside}is empty" if not first else
                              f"{inside}starts with a blank line",
                              expected="a header line of ACS PUMS column names")
    first = first.removeprefix(b"\xef\xbb\xbf").decode("latin-1").rstrip("\r\n")
    return [name.strip() for name in next(csv.reader([first]))]


def _first_unparseable(path: Path, member: str | None, header: list[str],
                       columns: list[str]) -> tuple[int, str, str] | None:
    """(line, column, value) of the first cell in ``columns`` that is not a number."""
    with common.open_binary(path, member) as handle:
        handle.readline()
        frame = pd.read_csv(handle, header=None, names=header, usecols=columns, dtype=str,
                            encoding="latin-1", keep_default_na=True, skip_blank_lines=False)
    first: tuple[int, str, str] | None = None
    for column in columns:
        text = frame[column]
        bad = text.notna() & pd.to_numeric(text, errors="coerce").isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            if first is None or row + 2 < first[0]:
                first = (row + 2, column, str(text.iloc[row]))
    return first


def read_person_file(path: str | Path, columns: Sequence[str], *, member: str | None = None,
                     optional: Sequence[str] = (), text: Sequence[str] = ()) -> pd.DataFrame:
    """The given columns of one person file (or zip member) as float64, missing → NaN.

    ``optional`` columns are read when present; ``text`` columns too, as strings (e.g. the
    alphanumeric ``SERIALNO``). Errors are ``DataFormatError`` naming the file and, where it
    applies, the line and column (a truncated or corrupt gzip/zip: see ``common.open_binary``).
    """
    path = Path(path)
    with common.open_binary(path, member) as handle:
        header = _read_header(handle, path, member)
        missing = [c for c in columns if c not in header]
        if missing:
            inside = f"member {member}: " if member else ""
            raise DataFormatError(
                path, f"{inside}has no column{'s' if len(missing) > 1 else ''} "
                      f"{', '.join(missing)}",
                column=missing[0],
                expected=f"an ACS PUMS person file with columns {', '.join(columns)}")
        wanted = list(dict.fromkeys([*columns, *(c for c in optional if c in header)]))
        strings = [c for c in dict.fromkeys(text) if c in header and c not in wanted]
        checked = _FieldCountCheck(handle, len(header), path, member, first_line=2)
        try:
            frame = pd.read_csv(checked, header=None, names=header, usecols=wanted + strings,
                                dtype={**dict.fromkeys(wanted, "float64"),
                                       **dict.fromkeys(strings, str)},
                                encoding="latin-1", engine="c")
        except DataFormatError:
            raise
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame({**{c: np.empty(0) for c in wanted},
                                  **{c: np.empty(0, object) for c in strings}})
        except pd.errors.ParserError as error:
            found = _PARSER_LINE.search(str(error))
            raise DataFormatError(path, f"cannot be parsed as CSV: {error}",
                                  line=int(found[1]) + 1 if found else None) from error
        except ValueError as error:
            if "convert" not in str(error) and "parse" not in str(error):
                raise
            cell = _first_unparseable(path, member, header, wanted)
            if cell is None:
                raise DataFormatError(path, f"has a value that is not a number ({error})",
                                      expected="numeric codes") from error
            line, column, value = cell
            raise DataFormatError(path, f"value {value!r} is not a number", line=line,
                                  column=column, expected="a numeric code or an empty field"
                                  ) from error
    return frame


def verify_file(path: str | Path) -> dict[str, Any]:
    """What ``userchoice data import census`` checks before it replaces anything: every person
    file (zip member) decompressed and every row read — field counts, numeric codes — with the
    columns of at least one known task (``TASKS``; the paper's ACSEmployment is named when none
    fits). ``DataFormatError`` otherwise; returns a summary."""
    path = Path(path)
    sources, _ = _sources([path])
    rows: dict[str, int] = {}
    tasks: set[str] = set()
    for source, member in sources:
        with common.open_binary(source, member) as handle:
            header = set(_read_header(handle, source, member))
        usable = sorted(name for name, task in TASKS.items() if set(task.columns) <= header)
        if not usable:
            read_person_file(source, ACSEmployment.columns, member=member)  # names the columns
        columns = sorted({c for name in usable for c in TASKS[name].columns})
        frame = read_person_file(source, columns, member=member)
        common.check_nonempty(source, len(frame), "rows" if member is None
                              else f"rows in member {member}")
        rows[member or source.name] = len(frame)
        tasks.update(usable)
    return {"rows": rows, "tasks": sorted(tasks)}


# ---------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------

def _as_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    if not items:
        raise ValueError("paths is empty; give at least one ACS person file")
    out: list[Path] = []
    for item in map(Path, items):
        out.extend(_search(item.expanduser()) if item.is_dir() else [item.expanduser()])
    return out


def _read_all(sources: list[tuple[Path, str | None]], columns: Sequence[str],
              optional: Sequence[str], text: Sequence[str] = ()
              ) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """The columns of every source, concatenated, and one provenance record per source
    (``text`` columns as object arrays of strings, the others float64)."""
    frames: list[pd.DataFrame] = []
    files: list[dict[str, Any]] = []
    records: dict[Path, dict[str, Any]] = {}
    for path, member in sources:
        frame = read_person_file(path, columns, member=member, optional=optional, text=text)
        common.check_nonempty(path, len(frame), "rows" if member is None
                              else f"rows in member {member}")
        if path not in records:
            records[path] = common.file_record(path)
        files.append({**records[path], **({"member": member} if member else {}),
                      "rows": len(frame)})
        frames.append(frame)
    present = [c for c in dict.fromkeys([*columns, *optional, *text])
               if all(c in f for f in frames)]
    kinds = {c: object if c in text else np.float64 for c in present}
    if len(frames) == 1:  # no copy: views of the one frame's columns
        merged = {c: frames[0][c].to_numpy(kinds[c]) for c in present}
    else:
        merged = {c: np.concatenate([f[c].to_numpy(kinds[c]) for f in frames])
                  for c in present}
    return merged, files


def _repeated_persons(cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str] | None]:
    """Rows repeating an earlier row's person key (``PERSON_KEY``, with ``ST`` if read), and
    the key used; no key columns in the files: nothing is marked (and the key is None)."""
    n = len(next(iter(cols.values())))
    if not all(c in cols for c in PERSON_KEY):
        return np.zeros(n, dtype=bool), None
    key = [c for c in ("ST", *PERSON_KEY) if c in cols]
    frame = pd.DataFrame({c: cols[c] for c in key})
    # a blank serial number identifies nobody
    repeated = frame.duplicated(keep="first").to_numpy() & pd.notna(cols["SERIALNO"])
    return repeated, key


def load_census(paths: str | Path | Sequence[str | Path] | None = None, *,
                task: str | ACSTask | Mapping[str, Any] = "ACSEmployment",
                data_dir: str | Path | None = None, test_fraction: float = 0.01, seed: int = 0,
                standardise: bool = True, dtype: Any = np.float32,
                n_features: int | None = None) -> Dataset:
    """ACS PUMS person records → a ``Dataset`` for ``task`` (SPEC §7 Census).

    ``paths``: person files (CSV, CSV.gz, Census zip) or folders; None searches
    ``<data dir>/census``. Rows failing the task's filter are dropped, missing features become the
    task's fill value (0). The label is 1.0 where the target condition holds (else 0.0), or for
    a regression task (``NumericLabel``) the numeric label, never standardised; y is 1-D either
    way. The split is ``split_indices(n, test_fraction, seed)``; features are standardised with
    training statistics when ``standardise``. Attributes (raw codes, not standardised): the age
    ``AGEP`` and the task's group column (e.g. ``RAC1P``).

    ``n_features``: keep only the task's first k features, in the task's order (a
    representation ladder of nested designs: the k-feature x is the first k columns of the full
    one); None keeps them all.
    """
    spec = get_task(task)
    if n_features is not None:
        if isinstance(n_features, bool) or not isinstance(n_features, int | np.integer) \
                or not 1 <= n_features <= len(spec.features):
            raise ValueError(f"data.options.n_features must be an integer from 1 to "
                             f"{len(spec.features)} (task {spec.name}'s features: "
                             f"{', '.join(spec.features)}), got {n_features!r}")
        spec = replace(spec, features=spec.features[:int(n_features)])
    files = find_census_files(data_dir) if paths is None else _as_paths(paths)
    sources, skipped = _sources(files)
    optional = [c for c in (*ATTRIBUTE_COLUMNS, "ST", "SPORDER") if c not in spec.columns]
    text = [c for c in ("SERIALNO",) if c not in spec.columns]
    cols, file_records = _read_all(sources, spec.columns, optional, text)
    n_read = len(cols[spec.target])

    repeated, person_key = _repeated_persons(cols)
    n_repeated = int(repeated.sum())
    keep = ~repeated
    for condition in spec.preprocess:
        keep &= condition.holds(cols[condition.column])
    n_kept = int(keep.sum())
    if n_kept < 2:
        raise ValueError(f"only {n_kept} of {n_read} rows pass the {spec.name} filter "
                         f"({' and '.join(map(str, spec.preprocess))}) in "
                         f"{', '.join(str(p) for p, _ in sources)}; need at least 2")

    # Split first, then gather each split straight from the columns (no full copy of x).
    train, test = common.split_indices(n_kept, test_fraction, seed)
    kept = np.flatnonzero(keep)
    rows = {"train": kept[train], "test": kept[test]}
    x = {split: np.empty((len(r), len(spec.features))) for split, r in rows.items()}
    missing_counts: dict[str, int] = {}
    for j, name in enumerate(spec.features):
        missing_counts[name] = int(np.count_nonzero(np.isnan(cols[name]) & keep))
        for split, r in rows.items():
            np.take(cols[name], r, out=x[split][:, j])
    for part in x.values():
        part[np.isnan(part)] = spec.postprocess
    # the label of the kept rows only: a row the filter drops cannot fail the label's checks
    target = cols[spec.target][kept]
    try:
        label = spec.target_transform.values(target)
    except ValueError as error:
        raise ValueError(f"task {spec.name} on {', '.join(str(p) for p, _ in sources)}: "
                         f"{error}") from None
    y = {"train": label[train], "test": label[test]}
    n_target_missing = int(np.count_nonzero(np.isnan(target)))
    attribute_names = dict.fromkeys(c for c in (*ATTRIBUTE_COLUMNS, spec.group) if c and c in cols)
    attributes = {split: {c: cols[c][r] for c in attribute_names} for split, r in rows.items()}
    states = sorted({int(s) for s in np.unique(cols["ST"]) if np.isfinite(s)}) \
        if "ST" in cols else None
    # a binary label's rate; a numeric label's mean (over the kept rows)
    label_summary = "label_mean" if spec.regression else "label_rate"
    label_all = float(label.sum() / n_kept)
    del cols, label, target  # the raw columns are no longer needed: free them before standardising

    x_train, x_test = x.pop("train"), x.pop("test")
    stats: dict[str, Any] | None = None
    if standardise:
        x_train, x_test, stats = common.standardise(x_train, x_test)

    provenance = {
        "dataset": "census",
        "source": "ACS PUMS person records (U.S. Census Bureau)",
        "files": file_records,
        "skipped_duplicates": skipped,
        "task": spec.describe(),
        "states": states,
        "rows_read": n_read,
        "duplicates_dropped": n_repeated,
        "duplicate_key": person_key,
        "rows_after_filter": n_kept,
        label_summary: label_all,
        f"{label_summary}_train": float(y["train"].mean()),
        f"{label_summary}_test": float(y["test"].mean()),
        **({"label_std": float(np.concatenate(list(y.values())).std()),
            "target_missing": n_target_missing} if spec.regression else {}),
        "n_train": len(train),
        "n_test": len(test),
        "test_fraction": test_fraction,
        "seed": seed,
        "standardised": standardise,
        "standardisation": stats,
        "missing_values": missing_counts,
        "missing_filled_with": spec.postprocess,
        **({"n_features": int(n_features)} if n_features is not None else {}),
    }
    return Dataset(
        x_train=np.asarray(x_train, dtype=dtype), y_train=y["train"].astype(dtype),
        x_test=np.asarray(x_test, dtype=dtype), y_test=y["test"].astype(dtype),
        feature_names=tuple(spec.features), provenance=provenance,
        attributes_train=attributes["train"], attributes_test=attributes["test"],
    )


# ---------------------------------------------------------------------------------------------
# Synthetic person files (benchmarks, format tests)
# ---------------------------------------------------------------------------------------------

SYNTHETIC_COLUMNS = ("RT", "SERIALNO", "DIVISION", "SPORDER", "PUMA", "REGION", "ST", "ADJINC",
                     "PWGTP", "AGEP", "CIT", "COW", "DEAR", "DEYE", "DREM", "GCL", "MAR", "MIG",
                     "MIL", "RELP", "SCHL", "SEX", "WKHP", "ANC", "DIS", "ESP", "ESR", "NATIVITY",
                     "OCCP", "PINCP", "POBP", "RAC1P")


def synthetic_acs_frame(n_rows: int, seed: int = 0, *, state: int = 1,
                        year: int = 2018) -> pd.DataFrame:
    """A person table shaped like the Census files: real column names, plausible codes,
    missing values where the Census leaves fields blank (e.g. no ESR under 16). Codes are
    zero-padded strings where the Census pads them (ST, PUMA, SPORDER, RELP, PWGTP)."""
    if n_rows < 1:
        raise ValueError(f"n_rows must be positive, got {n_rows}")
    rng = np.random.default_rng(seed)
    n = n_rows
    age = np.minimum(rng.gamma(2.2, 18.0, n), 94).astype(np.int64)

    def codes(low: int, high: int, nan_where: np.ndarray | None = None) -> np.ndarray:
        values = rng.integers(low, high + 1, n).astype(np.float64)
        if nan_where is not None:
            values[nan_where] = np.nan
        return values

    works = (age >= 16) & (rng.random(n) < 0.6)
    household = np.cumsum(rng.random(n) < 0.4)  # ~2.5 persons per household
    starts = np.flatnonzero(np.r_[True, household[1:] != household[:-1]])
    sporder = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n])) + 1
    esr = np.where(works, np.where(rng.random(n) < 0.93, 1, rng.choice([2, 3, 4], n)),
                   np.where(rng.random(n) < 0.9, 6, 3)).astype(np.float64)
    esr[age < 16] = np.nan
    income = np.round(np.exp(rng.normal(10.2, 1.1, n)) * np.where(works, 1.0, 0.3), -2)
    income[rng.random(n) < 0.05] = 0
    income[age < 15] = np.nan
    # Serial numbers start where the seed (and state) say, drawn apart from the data: files of
    # different seeds hold different persons (the loader drops a person read twice).
    first_serial = int(np.random.default_rng([seed, state, 7]).integers(0, 9_000_000))
    frame = pd.DataFrame({
        "RT": "P",
        "SERIALNO": [f"{year}HU{first_serial + h:07d}" for h in household],
        "DIVISION": 6,
        "SPORDER": [f"{s:02d}" for s in sporder],
        "PUMA": [f"{p:05d}" for p in rng.integers(100, 2800, n)],
        "REGION": 3,
        "ST": f"{state:02d}",
        "ADJINC": 1013097,
        "PWGTP": [f"{w:04d}" for w in rng.integers(1, 400, n)],
        "AGEP": age,
        "CIT": codes(1, 5),
        "COW": codes(1, 9, ~works),
        "DEAR": codes(1, 2),
        "DEYE": codes(1, 2),
        "DREM": codes(1, 2, age < 5),
        "GCL": codes(1, 2, age < 30),
        "MAR": codes(1, 5),
        "MIG": codes(1, 3, age < 1),
        "MIL": codes(1, 4, age < 17),
        "RELP": [f"{r:02d}" for r in rng.integers(0, 18, n)],
        "SCHL": codes(1, 24, age < 3),
        "SEX": codes(1, 2),
        "WKHP": codes(1, 99, ~works),
        "ANC": rng.choice([1, 2, 3, 4, 8], n),
        "DIS": codes(1, 2),
        "ESP": codes(1, 8, (age >= 16) | (rng.random(n) < 0.3)),
        "ESR": esr,
        "NATIVITY": codes(1, 2),
        "OCCP": codes(10, 9920, ~works),
        "PINCP": income,
        "POBP": codes(1, 554),
        "RAC1P": codes(1, 9),
    }, columns=list(SYNTHETIC_COLUMNS))
    return frame


def write_synthetic_acs(path: str | Path, n_rows: int, seed: int = 0, **kwargs: Any) -> Path:
    """Write ``synthetic_acs_frame(n_rows, seed)`` as a person CSV (gzipped if ``path`` ends in
    .gz); blanks are empty fields and integers have no ``.0``, as in the Census files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = synthetic_acs_frame(n_rows, seed, **kwargs)
    for column in frame.columns:  # nullable integers: written as '12' or '' (fast, no '.0')
        if frame[column].dtype.kind == "f":
            frame[column] = frame[column].astype("Int64")
    frame.to_csv(path, index=False, na_rep="",
                 compression="gzip" if path.suffix == ".gz" else None)
    return path
