"""Bring-your-own features: a feature matrix and labels from ``.npy`` / ``.npz`` files.

For data whose raw form cannot reach the machine that runs the experiment, e.g. Jagadeesan et
al.'s CIFAR-10 with ImageNet-pretrained features (``../shared/NEIGHBOURS.md`` §C): compute the
features elsewhere, save ``X.npy`` [N, d] and ``y.npy`` [N] (or one ``.npz`` holding arrays
``X`` and ``y``), then::

    userchoice data import features X.npy y.npy --name cifar_resnet18
    # data: {dataset: features, path: ${DATA_DIR}/features/cifar_resnet18}

An imported set lives in ``<data dir>/features/<NAME>/`` (``X.npy`` and ``y.npy``, or
``features.npz``). The import checks the files as the loader does (``read_features``) before
anything is written.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from userchoice.data import common
from userchoice.data.common import DataFormatError, DatasetNotFoundError
from userchoice.data.dataset import Dataset

NAME = "features"
X_FILE, Y_FILE, NPZ_FILE = "X.npy", "y.npy", "features.npz"
DEFAULT_SET = "default"
_SET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
IMPORT_COMMAND = "userchoice data import features X.npy y.npy --name NAME"
_SHOWN = 5  # non-finite positions quoted in an error


def _load_array(path: Path, key: str | None = None) -> np.ndarray:
    """One array of a ``.npy`` (or member ``key`` of a ``.npz``), never unpickling objects."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if key is None:
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                raise DataFormatError(path, f"has no array {key!r} (it holds {archive.files})",
                                      expected="arrays 'X' and 'y'")
            return archive[key]
    except DataFormatError:
        raise
    except ValueError as error:  # an object array (would need pickle), a malformed header
        raise DataFormatError(path, f"is not a readable numeric NumPy array ({error})",
                              expected="a .npy/.npz of numbers saved by numpy.save") from None
    except (OSError, EOFError) as error:
        raise DataFormatError(path, f"is not a NumPy file ({type(error).__name__}: {error})",
                              expected="a .npy/.npz saved by numpy.save / numpy.savez") from None


def _nonfinite(path: Path, what: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    count = int(bad.sum())
    if count:
        where = np.argwhere(bad)[:_SHOWN]
        places = ", ".join(f"row {r[0]}" + (f" column {r[1]}" if len(r) > 1 else "")
                           for r in where.tolist())
        raise DataFormatError(path, f"{what} has {count} non-finite value(s) (NaN or inf) in "
                                    f"{int(bad.reshape(len(values), -1).any(axis=1).sum())} "
                                    f"row(s); first at {places}",
                              expected="finite numbers only")


def read_features(x_path: str | Path, y_path: str | Path | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Read and check a feature set: ``X.npy`` and ``y.npy``, or (``y_path`` None) one
    ``.npz`` with arrays ``X`` and ``y``. Returns ``(X, y, files read)``.

    ``DataFormatError`` (naming the file) for: X not 2-D [N, d] with N, d ≥ 1; y not 1-D [N];
    rows of X and y that differ (both files and shapes named); non-numeric arrays; non-finite
    values (how many, in how many rows, and the first positions)."""
    x_path = Path(x_path).expanduser()
    if y_path is None:
        x = _load_array(x_path, "X")
        y = _load_array(x_path, "y")
        x_name = y_name = x_path
        files = [x_path]
    else:
        y_path = Path(y_path).expanduser()
        x, y = _load_array(x_path), _load_array(y_path)
        x_name, y_name = x_path, y_path
        files = [x_path, y_path]
    for path, what, values in ((x_name, "X", x), (y_name, "y", y)):
        if values.dtype.kind not in "biuf":
            raise DataFormatError(path, f"{what} has dtype {values.dtype}",
                                  expected="numbers (bool, int or float)")
    if x.ndim != 2 or 0 in x.shape:
        raise DataFormatError(x_name, f"X has shape {x.shape}",
                              expected="a 2-D array [N users, d features], N, d ≥ 1")
    if y.ndim != 1:
        raise DataFormatError(y_name, f"y has shape {y.shape}", expected="a 1-D array [N] of "
                                                                         "labels")
    if len(y) != len(x):
        shapes = f"X {x.shape}, y {y.shape}" if y_path is None else \
            f"X {x.shape} in {x_name}, y {y.shape} in {y_name}"
        raise DataFormatError(y_name, f"the rows of X and y differ ({shapes})",
                              expected=f"one label per row of X: y of shape ({len(x)},)")
    _nonfinite(x_name, "X", x)
    _nonfinite(y_name, "y", y)
    return x, y, files


def verify_file(path: str | Path) -> dict[str, Any]:
    """``data import``'s whole-file check for one file: a ``.npz`` feature set (a ``.npy``
    needs its partner: ``data import features X.npy y.npy``)."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise DataFormatError(path, "is one file of a feature set; import X and y together: "
                                    f"{IMPORT_COMMAND}", expected="a .npz with arrays X and y")
    x, _, _ = read_features(path)
    return {"rows": int(x.shape[0]), "features": int(x.shape[1])}


# ---------------------------------------------------------------------------------------------
# Where a feature set is
# ---------------------------------------------------------------------------------------------

def _set_in(folder: Path) -> tuple[Path, Path | None] | None:
    """The feature set held directly in ``folder`` (X.npy + y.npy, else its one .npz)."""
    if (folder / X_FILE).is_file() and (folder / Y_FILE).is_file():
        return folder / X_FILE, folder / Y_FILE
    archives = sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))
    if len(archives) > 1:
        raise ValueError(f"{folder} holds {len(archives)} .npz files "
                         f"({', '.join(p.name for p in archives)}); set data.path to one")
    return (archives[0], None) if archives else None


def _search(folder: Path) -> tuple[Path, Path | None]:
    """``folder``'s own feature set, else that of its one subfolder holding one."""
    found = _set_in(folder) if folder.is_dir() else None
    if found is not None:
        return found
    sets = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and _set_in(p) is not None) if folder.is_dir() else []
    if len(sets) == 1:
        return _search(sets[0])
    if sets:
        raise ValueError(f"{folder} holds {len(sets)} feature sets "
                         f"({', '.join(p.name for p in sets)}); choose one: data.path = "
                         f"{folder}/<name>")
    raise DatasetNotFoundError(NAME, [folder / X_FILE, folder / Y_FILE],
                               f"Import a feature set with:  {IMPORT_COMMAND}\n"
                               f"(then data.path: ${{DATA_DIR}}/features/NAME)")


def resolve_paths(path: str | Path | Sequence[str | Path] | None,
                  data_dir: str | Path | None = None) -> tuple[Path, Path | None]:
    """``(X file, y file)`` or ``(npz, None)`` for a config's ``data.path``: a folder (its set,
    or its one subfolder's), a ``.npz``, or the two files ``[X.npy, y.npy]``; None searches
    ``<data dir>/features``."""
    if path is None:
        return _search(common.data_dir(data_dir) / NAME)
    items = [path] if isinstance(path, str | Path) else list(path)
    items = [Path(p).expanduser() for p in items]
    if len(items) == 2:
        return items[0], items[1]
    if len(items) != 1:
        raise ValueError(f"data.path for dataset 'features' is a folder, a .npz, or the two "
                         f"files [X.npy, y.npy]; got {len(items)} paths")
    item = items[0]
    if item.is_dir():
        return _search(item)
    if item.suffix.lower() == ".npz":
        return item, None
    raise ValueError(f"data.path {item}: a .npy alone has no labels; give the folder holding "
                     f"{X_FILE} and {Y_FILE}, or both files: [X.npy, y.npy]")


# ---------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------

def _class_labels(path: Path, y: np.ndarray, classes: Sequence[int]) -> tuple[np.ndarray, list]:
    """Rows whose label is among ``classes`` and their new labels (the index in ``classes``)."""
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence):
        raise ValueError(f"data.options.classes must be a list of integer labels, got "
                         f"{classes!r}")
    wanted = list(classes)
    if len(wanted) < 2 or len(set(wanted)) != len(wanted) or not all(
            isinstance(c, int | np.integer) and not isinstance(c, bool) for c in wanted):
        raise ValueError(f"data.options.classes must list at least 2 distinct integer labels, "
                         f"got {classes!r}")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise DataFormatError(path, f"y holds non-integer labels (e.g. "
                                    f"{y[y != np.round(y)][0]!r}), but data.options.classes "
                                    f"selects classes", expected="integer class labels")
    present = np.unique(y)
    absent = [c for c in wanted if c not in present]
    if absent:
        shown = present[:20].astype(np.int64).tolist()
        raise ValueError(f"data.options.classes: label(s) {absent} never occur in y "
                         f"({path}); its labels: {shown}{' …' if len(present) > 20 else ''}")
    rows = np.flatnonzero(np.isin(y, wanted))
    new = np.searchsorted(np.sort(wanted), y[rows])
    order = np.argsort(wanted)  # sorted position → position in ``classes``
    return rows, order[new].tolist()


def load_features(path: str | Path | Sequence[str | Path] | None = None, *,
                  data_dir: str | Path | None = None, test_fraction: float = 0.2,
                  seed: int = 0, standardise: bool = True, intercept: bool = False,
                  classes: Sequence[int] | None = None) -> Dataset:
    """A user's own feature matrix and labels (``X.npy`` + ``y.npy``, or one ``.npz``).

    ``path``: the folder ``data import features`` wrote (``<data dir>/features/NAME``), a
    ``.npz``, or ``[X.npy, y.npy]``; None: the one set under ``<data dir>/features``.
    ``test_fraction`` of the rows are held out (``split_indices`` with ``seed``).
    ``standardise``: scale each feature to zero mean and unit variance with training statistics.
    ``intercept``: append a constant-1 column (after standardising), as amazon's option.
    ``classes``: keep only the rows with these integer labels, relabelled 0, 1, … in the order
    given (e.g. two CIFAR-10 classes ``[3, 5]`` → cat 0, dog 1); without it y is kept as it is.
    x keeps the file's precision (at least float32); y is float.
    """
    x_path, y_path = resolve_paths(path, data_dir)
    x, y, files = read_features(x_path, y_path)
    label_file = y_path or x_path
    n_read = len(x)
    label_map = None
    if classes is not None:
        rows, labels = _class_labels(label_file, y, classes)
        x, y = x[rows], np.asarray(labels, dtype=float)
        label_map = {str(int(c)): i for i, c in enumerate(classes)}
    train, test = common.split_indices(len(x), test_fraction, seed)
    dtype = np.result_type(x.dtype, np.float32)
    x_train, x_test = x[train].astype(np.float64), x[test].astype(np.float64)
    stats = None
    if standardise:
        x_train, x_test, stats = common.standardise(x_train, x_test)
    names = [f"x{i}" for i in range(x.shape[1])]
    if intercept:
        x_train = np.concatenate([x_train, np.ones((len(train), 1))], axis=1)
        x_test = np.concatenate([x_test, np.ones((len(test), 1))], axis=1)
        names.append("intercept")
    y = y.astype(float)
    provenance = {
        "dataset": NAME,
        "source": "user-supplied feature matrix and labels",
        "files": [common.file_record(p) for p in files],
        "rows_read": n_read,
        "rows_kept": len(x),
        "n_features": int(x.shape[1]),
        "classes": None if classes is None else [int(c) for c in classes],
        "label_map": label_map,
        "n_train": len(train),
        "n_test": len(test),
        "test_fraction": test_fraction,
        "seed": seed,
        "standardised": standardise,
        "standardisation": stats,
        "intercept": intercept,
    }
    return Dataset(x_train=x_train.astype(dtype), y_train=y[train],
                   x_test=x_test.astype(dtype), y_test=y[test],
                   feature_names=tuple(names), provenance=provenance)


# ---------------------------------------------------------------------------------------------
# Import (``userchoice data import features X.npy y.npy --name NAME``)
# ---------------------------------------------------------------------------------------------

def import_set(sources: Sequence[str | Path], *, name: str | None = None,
               root: str | Path | None = None, link: bool = False, force: bool = False
               ) -> list[Path]:
    """Copy (or link) a feature set into ``<data dir>/features/<name>/`` after checking it
    (``read_features``): ``[X.npy, y.npy]`` become ``X.npy`` and ``y.npy``, one ``.npz``
    becomes ``features.npz`` (the other form, if there, is removed). A set that does not check
    is not imported (``DataFormatError``), unless ``force`` (then with an
    ``UnverifiedImportWarning``). Returns the files written."""
    from userchoice.data.fetch import UnverifiedImportWarning, import_copy

    name = DEFAULT_SET if name is None else name
    if not _SET_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"--name must be a folder name (letters, digits, '_', '.', '-'), got "
                         f"{name!r}")
    paths = [Path(p).expanduser() for p in sources]
    if len(paths) not in (1, 2):
        raise ValueError(f"dataset 'features' imports X.npy and y.npy, or one .npz; got "
                         f"{len(paths)} paths")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    if len(paths) == 1 and paths[0].suffix.lower() != ".npz":
        raise ValueError(f"{paths[0]}: a feature set is X and y; give both files "
                         f"({IMPORT_COMMAND}) or one .npz with arrays X and y")
    try:
        read_features(*paths)
    except DataFormatError as error:
        if not force:
            raise DataFormatError(error.path, f"was not imported: {error}. Fix the file, or "
                                              f"pass --force (force=True) to import it "
                                              f"anyway") from error
        warnings.warn(f"{error} (imported anyway: force)", UnverifiedImportWarning,
                      stacklevel=2)
    folder = common.data_dir(root) / NAME / name
    targets = [folder / X_FILE, folder / Y_FILE] if len(paths) == 2 else [folder / NPZ_FILE]
    written = [import_copy(source, target, link=link)
               for source, target in zip(paths, targets, strict=True)]
    stale = [folder / NPZ_FILE] if len(paths) == 2 else [folder / X_FILE, folder / Y_FILE]
    for path in stale:  # one set per folder: the loader must not find the old form
        path.unlink(missing_ok=True)
    return written


def import_hint(missing: Sequence[Path], folder: Path) -> str:
    """What ``missing_files_error`` says for a feature set a config names but nobody
    imported: the import command, with ``--name`` from the path when it is in the data
    directory."""
    lines = []
    for item in missing:
        inside = item.parent if item.name in (X_FILE, Y_FILE, NPZ_FILE) else item
        set_name = inside.name if inside.parent.resolve() == folder.resolve() else "NAME"
        lines.append(f"  userchoice data import features X.npy y.npy --name {set_name}")
    return "\n".join(["Import it with:", *dict.fromkeys(lines),
                      "(or run on files you have: --set data.path=FOLDER; --data-dir DIR or "
                      "$USERCHOICE_DATA choose another data directory)"])


# The conventions ``fetch.import_files`` and ``fetch.how_to_get`` look for on a loader.
load_features.import_set = import_set  # type: ignore[attr-defined]
load_features.import_hint = import_hint  # type: ignore[attr-defined]
