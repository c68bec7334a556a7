"""Bring-your-own features: ``data import features X.npy y.npy`` → the ``features`` loader."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from userchoice.cli import app
from userchoice.data.common import DataFormatError, DatasetNotFoundError, split_indices
from userchoice.data.features import import_set, load_features, read_features
from userchoice.data.fetch import import_files, inventory, missing_files_error
from userchoice.data.registry import DATASETS, DatasetOptionError, get_dataset
from userchoice.experiments.plan import input_files


def _save(folder: Path, x, y, x_name: str = "X.npy", y_name: str = "y.npy") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / x_name, np.asarray(x))
    np.save(folder / y_name, np.asarray(y))
    return folder / x_name, folder / y_name


def _data(n: int = 60, d: int = 5, seed: int = 0, classes: int = 4):
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, size=(n, d)).astype(np.float32)
    return x, rng.integers(0, classes, n)


def test_registered_as_a_file_backed_importable_dataset():
    entry = get_dataset("features")
    assert entry.file_backed and "features" in DATASETS.named(importable=True)
    assert "features" not in DATASETS.named(fetchable=True)
    assert set(entry.options()) == {"test_fraction", "seed", "standardise", "intercept",
                                    "classes"}
    with pytest.raises(DatasetOptionError, match="classes"):
        entry.check_options({"clases": [0, 1]})


def test_cli_import_then_load_round_trip(tmp_path):
    x, y = _data()
    xs, ys = _save(tmp_path / "src", x, y)
    root = tmp_path / "data"
    result = CliRunner().invoke(app, ["data", "import", "features", str(xs), str(ys), "--name",
                                      "cifar", "--data-dir", str(root)], terminal_width=300)
    assert result.exit_code == 0, result.output
    folder = root / "features" / "cifar"
    assert (folder / "X.npy").read_bytes() == xs.read_bytes()
    assert (folder / "y.npy").read_bytes() == ys.read_bytes()
    assert "{dataset: features, path: ${DATA_DIR}/features/cifar}" in result.output
    assert "sha256" in result.output
    assert [Path(f["file"]).name for f in inventory(root)["features"]] == ["X.npy", "y.npy"]

    ds = get_dataset("features").load({"test_fraction": 0.25, "seed": 3}, path=folder,
                                      data_dir=root)
    train, test = split_indices(60, 0.25, 3)
    assert ds.n_train == 45 and len(ds.x_test) == 15 and ds.n_features == 5
    mean, std = x[train].astype(float).mean(0), x[train].astype(float).std(0)
    np.testing.assert_allclose(ds.x_train, (x[train] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.x_test, (x[test] - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ds.y_train, y[train])
    np.testing.assert_array_equal(ds.y_test, y[test])
    assert ds.x_train.dtype == np.float32  # the file's precision
    # path None: the one set in the data directory
    again = get_dataset("features").load({"test_fraction": 0.25, "seed": 3}, data_dir=root)
    np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_split_is_reproducible_by_seed_and_raw_without_standardising(tmp_path):
    x, y = _data(n=40)
    folder = tmp_path / "s"
    _save(folder, x.astype(np.float64), y)
    a, b, c = (load_features(folder, seed=s, standardise=False) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    # no standardisation: the rows themselves, train and test a partition of X
    rows = np.concatenate([a.x_train, a.x_test])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, x.astype(np.float64)))
    assert a.x_train.dtype == np.float64


def test_npz_form_and_intercept(tmp_path):
    x, y = _data(n=30, d=3)
    npz = tmp_path / "set.npz"
    np.savez(npz, X=x, y=y.astype(float) * 0.5)  # real-valued labels are kept as they are
    written = import_set([npz], name="reg", root=tmp_path / "d")
    assert [p.name for p in written] == ["features.npz"]
    ds = load_features(tmp_path / "d" / "features" / "reg", intercept=True)
    assert ds.feature_names == ("x0", "x1", "x2", "intercept")
    assert np.all(ds.x_train[:, -1] == 1) and np.all(ds.x_test[:, -1] == 1)
    np.testing.assert_allclose(ds.x_train[:, :-1].mean(0), 0, atol=1e-5)
    assert set(np.concatenate([ds.y_train, ds.y_test])) <= set(y * 0.5)
    # importing the pair into the same folder replaces the .npz (one set per folder)
    _save(tmp_path / "p", x, y)
    import_set([tmp_path / "p" / "X.npy", tmp_path / "p" / "y.npy"], name="reg",
               root=tmp_path / "d")
    assert sorted(p.name for p in (tmp_path / "d" / "features" / "reg").iterdir()) == \
        ["X.npy", "y.npy"]


def test_classes_keep_those_rows_relabelled_in_the_order_given(tmp_path):
    x, y = _data(n=80, classes=10)
    folder = tmp_path / "c"
    _save(folder, x, y)
    ds = load_features(folder, classes=[7, 2], standardise=False)
    kept = np.isin(y, [7, 2])
    assert ds.n_train + len(ds.x_test) == kept.sum()
    assert ds.provenance["label_map"] == {"7": 0, "2": 1}
    for xs, ys in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for row, label in zip(xs, ys, strict=True):
            original = y[np.flatnonzero((x == row).all(1))[0]]
            assert label == (0 if original == 7 else 1)


@pytest.mark.parametrize("classes, match", [
    ([3], "at least 2 distinct integer"), ([1, 1], "at least 2 distinct integer"),
    ([0, 1.5], "at least 2 distinct integer"), ("01", "list of integer labels"),
    ([0, 99], r"label\(s\) \[99\] never occur"),
])
def test_bad_classes_option(tmp_path, classes, match):
    _save(tmp_path, *_data())
    with pytest.raises(ValueError, match=match):
        load_features(tmp_path, classes=classes)


def test_classes_need_integer_labels(tmp_path):
    x, _ = _data()
    _save(tmp_path, x, np.linspace(0, 1, 60))
    with pytest.raises(DataFormatError, match=r"y\.npy.*non-integer labels.*classes"):
        load_features(tmp_path, classes=[0, 1])
    _save(tmp_path, x, np.tile([0.0, 1.0], 30))  # whole-number floats are labels
    assert load_features(tmp_path, classes=[0, 1]).n_train == 48


def test_rows_of_x_and_y_differ_names_both_files_and_shapes(tmp_path):
    xs, ys = _save(tmp_path, np.zeros((10, 3)), np.zeros(9))
    with pytest.raises(DataFormatError) as caught:
        read_features(xs, ys)
    message = str(caught.value)
    assert str(xs) in message and str(ys) in message
    assert "(10, 3)" in message and "(9,)" in message and "rows of X and y differ" in message


@pytest.mark.parametrize("x, y, match", [
    (np.zeros(10), np.zeros(10), r"X has shape \(10,\).*2-D"),
    (np.zeros((10, 2, 2)), np.zeros(10), r"X has shape \(10, 2, 2\)"),
    (np.zeros((0, 3)), np.zeros(0), r"X has shape \(0, 3\)"),
    (np.zeros((10, 2)), np.zeros((10, 1)), r"y has shape \(10, 1\).*1-D"),
    (np.array([["a", "b"]] * 3), np.zeros(3), "dtype <U1"),
])
def test_bad_shapes_and_types(tmp_path, x, y, match):
    xs, ys = _save(tmp_path, x, y)
    with pytest.raises(DataFormatError, match=match):
        read_features(xs, ys)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "X.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", np.zeros(2))
    with pytest.raises(DataFormatError, match=r"X\.npy.*not a readable numeric"):
        read_features(tmp_path / "X.npy", tmp_path / "y.npy")
    (tmp_path / "X.npy").write_text("not numpy")
    with pytest.raises(DataFormatError, match=r"X\.npy"):
        read_features(tmp_path / "X.npy", tmp_path / "y.npy")


def test_non_finite_values_say_how_many_and_where(tmp_path):
    x = np.ones((8, 3))
    x[2, 1], x[5, 0], x[5, 2] = np.nan, np.inf, -np.inf
    xs, ys = _save(tmp_path, x, np.zeros(8))
    with pytest.raises(DataFormatError) as caught:
        read_features(xs, ys)
    message = str(caught.value)
    assert str(xs) in message and "3 non-finite value(s)" in message and "2 row(s)" in message
    assert "row 2 column 1" in message and "row 5 column 0" in message
    xs, ys = _save(tmp_path, np.ones((4, 2)), [0.0, np.nan, 1.0, 0.0])
    with pytest.raises(DataFormatError, match=r"y\.npy: y has 1 non-finite.*row 1"):
        read_features(xs, ys)


def test_missing_files_name_the_import_command(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(DatasetNotFoundError, match=r"data import features X\.npy y\.npy"):
        load_features(data_dir=root)
    error = missing_files_error("features", root / "features" / "cifar", root)
    assert error is not None
    assert "userchoice data import features X.npy y.npy --name cifar" in str(error)
    with pytest.raises(DatasetNotFoundError, match="--name cifar"):
        get_dataset("features").load({}, path=root / "features" / "cifar", data_dir=root)
    (root / "features" / "a").mkdir(parents=True)
    _save(root / "features" / "b", *_data())
    _save(root / "features" / "c", *_data())
    with pytest.raises(ValueError, match=r"2 feature sets \(b, c\)"):
        load_features(data_dir=root)


def test_import_refuses_bad_input_and_keeps_the_copy_in_place(tmp_path):
    root = tmp_path / "data"
    good = _save(tmp_path / "good", *_data())
    import_files("features", good, set_name="s", root=root)
    before = (root / "features" / "s" / "y.npy").read_bytes()
    bad = _save(tmp_path / "bad", np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(DataFormatError, match=r"was not imported.*--force"):
        import_files("features", bad, set_name="s", root=root)
    assert (root / "features" / "s" / "y.npy").read_bytes() == before
    with pytest.raises(ValueError, match="a feature set is X and y"):
        import_files("features", [good[0]], root=root)
    with pytest.raises(ValueError, match="--name must be a folder name"):
        import_files("features", good, set_name="../up", root=root)
    with pytest.raises(ValueError, match="--name is for datasets imported as a named set"):
        import_files("movielens", [good[0]], set_name="s", root=root)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "import", "features", *map(str, bad), "--data-dir",
                                 str(root)], terminal_width=300)
    assert result.exit_code == 2 and "rows of X and y differ" in result.output
    result = runner.invoke(app, ["data", "import", "features", str(good[0]), "--data-dir",
                                 str(root)], terminal_width=300)
    assert result.exit_code == 2 and "give both files" in " ".join(result.output.split())


def test_provenance_sha256_follows_the_content_of_x(tmp_path):
    x, y = _data()
    _save(tmp_path, x, y)
    first = load_features(tmp_path)
    records = first.provenance["files"]
    assert [Path(r["path"]).name for r in records] == ["X.npy", "y.npy"]
    x[0, 0] += 1.0
    _save(tmp_path, x, y)
    second = load_features(tmp_path)
    ids = [[r["sha256"] for r in input_files(d)] for d in (first, second)]
    assert ids[0][0] != ids[1][0] and ids[0][1] == ids[1][1]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 30), d=st.integers(1, 4), seed=st.integers(0, 10**6),
       fraction=st.floats(0.1, 0.5))
def test_standardised_split_is_a_partition_with_train_statistics(n, d, seed, fraction):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 5.0, d) + rng.normal(size=d)
    with tempfile.TemporaryDirectory() as folder:
        _save(Path(folder), x, rng.integers(0, 2, n))
        ds = load_features(folder, test_fraction=fraction, seed=seed)
    train, test = split_indices(n, fraction, seed)
    assert ds.n_train == len(train) and len(ds.x_test) == len(test)
    np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-9)
    varying = x[train].std(0) > 0
    np.testing.assert_allclose(ds.x_train.std(0)[varying], 1, atol=1e-9)
