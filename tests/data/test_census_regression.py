"""ACS regression tasks (numeric labels, Dean et al.'s commute time) and the shipped sample's
columns: labels against pandas, task configs, and ACSEmployment unchanged by the wider sample."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import SHARED_DATA
from hypothesis import given
from hypothesis import strategies as st

from userchoice.data.census import (
    LABEL_TRANSFORMS,
    TASKS,
    ACSEmployment,
    ACSTask,
    NumericLabel,
    load_census,
    verify_file,
)
from userchoice.experiments.paths import sample_data_dir

SHIPPED = sample_data_dir() / "acs_2017_1yr_person_AL_sample5000.csv.gz"
FULL = SHARED_DATA / "acs_pums" / "acs_2017_1yr_person_AL_sample5000.csv.gz"  # all 286 columns
TOOL = Path(__file__).resolve().parents[2] / "tools" / "make_acs_sample.py"
DEAN = TASKS["ACSTravelTimeDean"]

needs_full = pytest.mark.skipif(not FULL.exists(), reason=f"staged ACS file {FULL} is absent")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """The shipped sample read by pandas directly (blank → NaN)."""
    return pd.read_csv(SHIPPED, encoding="latin-1")


def _travel_rows(frame: pd.DataFrame) -> pd.DataFrame:
    # folktables' travel_time_filter, written independently of the loader's Conditions
    return frame[(frame.AGEP > 16) & (frame.PWGTP >= 1) & (frame.ESR == 1)]


def _sorted_rows(*columns: np.ndarray) -> np.ndarray:
    table = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    return table[np.lexsort(table.T[::-1])]


# ---------------------------------------------------------------------------------------------
# Dean et al.'s commute-time regression on the shipped sample
# ---------------------------------------------------------------------------------------------

def test_dean_label_rows_and_features_match_pandas(frame):
    ds = load_census(SHIPPED, task="ACSTravelTimeDean", standardise=False, test_fraction=0.2)
    kept = _travel_rows(frame)
    label = (10 * np.log1p(kept.JWMNP)).fillna(0.0)  # a worker with no commute → 0
    assert 0 < len(kept) < len(frame) and kept.JWMNP.isna().any()
    assert ds.n_train + ds.x_test.shape[0] == len(kept) == ds.provenance["rows_after_filter"]
    assert ds.y_train.ndim == 1 and ds.y_train.dtype.kind == "f"
    # each user's (features, label, group) is a row of the filtered table: compare as multisets
    features = kept[list(DEAN.features)].fillna(0.0).to_numpy()
    want = _sorted_rows(features, label, kept.RAC1P)
    got = _sorted_rows(np.concatenate([ds.x_train, ds.x_test]),
                       np.concatenate([ds.y_train, ds.y_test]),
                       np.concatenate([ds.attributes_train["RAC1P"],
                                       ds.attributes_test["RAC1P"]]))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    prov = ds.provenance
    assert prov["target_missing"] == kept.JWMNP.isna().sum()
    assert prov["label_mean"] == pytest.approx(label.mean())
    assert "label_rate" not in prov and prov["task"] == DEAN.describe()


def test_dean_label_is_not_standardised_and_features_are(frame):
    raw = load_census(SHIPPED, task="ACSTravelTimeDean", standardise=False, test_fraction=0.2)
    ds = load_census(SHIPPED, task="ACSTravelTimeDean", test_fraction=0.2)
    np.testing.assert_array_equal(ds.y_train, raw.y_train)
    np.testing.assert_array_equal(ds.y_test, raw.y_test)
    assert ds.y_train.mean() > 20  # minutes on a log scale, not centred
    x = ds.x_train.astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-5)
    for split in ("train", "test"):  # the group codes stay raw in both loads
        np.testing.assert_array_equal(getattr(ds, f"attributes_{split}")["RAC1P"],
                                      getattr(raw, f"attributes_{split}")["RAC1P"])


def test_groups_by_race_are_attributes_with_raw_codes(frame):
    ds = load_census(SHIPPED, task="ACSTravelTimeDean", test_fraction=0.2, seed=3)
    assert "RAC1P" not in ds.feature_names  # the group, as in the authors' code
    codes = np.concatenate([ds.attributes_train["RAC1P"], ds.attributes_test["RAC1P"]])
    assert len(ds.attributes_train["RAC1P"]) == ds.n_train
    got = pd.Series(codes).value_counts().sort_index()
    want = _travel_rows(frame).RAC1P.value_counts().sort_index()
    assert got.to_dict() == {float(k): v for k, v in want.items()}
    assert set(got.index) <= set(range(1, 10)) and len(got) >= 3


def test_travel_time_binary_task_matches_pandas(frame):
    ds = load_census(SHIPPED, task="ACSTravelTime", test_fraction=0.2)
    kept = _travel_rows(frame)
    labels = np.concatenate([ds.y_train, ds.y_test])
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert labels.sum() == (kept.JWMNP > 20).sum()  # a missing commute is not > 20
    assert ds.provenance["label_rate"] == pytest.approx((kept.JWMNP > 20).mean())
    assert ds.feature_names == TASKS["ACSTravelTime"].features and ds.n_features == 16


def test_verify_file_lists_the_sample_tasks():
    assert {"ACSEmployment", "ACSTravelTime", "ACSTravelTimeDean"} <= \
        set(verify_file(SHIPPED)["tasks"])


# ---------------------------------------------------------------------------------------------
# Numeric labels and task configs
# ---------------------------------------------------------------------------------------------

@given(transform=st.sampled_from(sorted(LABEL_TRANSFORMS)),
       scale=st.floats(-1e3, 1e3).filter(lambda s: abs(s) > 1e-6),
       missing=st.floats(-1e3, 1e3),
       values=st.lists(st.one_of(st.floats(0, 1e4), st.just(float("nan"))), max_size=20))
def test_numeric_label_values_and_round_trip(transform, scale, missing, values):
    label = NumericLabel("JWMNP", transform, scale=scale, missing=missing)
    target = np.array(values, dtype=np.float64)
    expected = scale * {"identity": target, "log1p": np.log1p(target)}[transform]
    expected[np.isnan(target)] = missing
    np.testing.assert_allclose(label.values(target), expected)
    task = ACSTask("T", ("AGEP",), "JWMNP", label, preprocess=DEAN.preprocess)
    assert task.regression
    assert ACSTask.from_config(task.describe()) == task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_round_trips_through_yaml(name):
    task = TASKS[name]
    text = yaml.safe_dump(task.describe())
    assert ACSTask.from_config(yaml.safe_load(text)) == task
    assert task.regression == (name == "ACSTravelTimeDean")


def test_dean_task_from_the_documented_yaml_form():
    config = yaml.safe_load("""
        name: ACSTravelTimeDean
        features: [AGEP, SCHL, MAR, SEX, DIS, MIG, CIT, JWTR, POVPIP]
        target: JWMNP
        label: {transform: log1p, scale: 10}
        group: RAC1P
        preprocess: [AGEP > 16, PWGTP >= 1, ESR == 1]
    """)
    assert ACSTask.from_config(config) == DEAN
    assert str(DEAN.target_transform) == "10·log1p(JWMNP)"
    assert DEAN.describe()["label"] == {"transform": "log1p", "scale": 10.0, "missing": 0.0}
    shorthand = ACSTask.from_config({**config, "label": "identity"})
    assert shorthand.target_transform == NumericLabel("JWMNP", "identity")


_BASE = {"name": "Bad", "features": ["AGEP"], "target": "JWMNP"}


@pytest.mark.parametrize(("change", "message"), [
    ({"label": {"transform": "log"}}, "label transform must be one of"),
    ({"label": {"transform": "condition"}}, "a binary label is a condition target"),
    ({"label": {"transform": "log1p", "scael": 10}}, "unknown label field"),
    ({"label": {"scale": 10}}, "label needs 'transform'"),
    ({"label": 10}, "label must be a transform name"),
    ({"label": {"transform": "log1p", "scale": "ten"}}, "label scale must be a number"),
    ({"label": {"transform": "log1p", "scale": True}}, "label scale must be a number"),
    ({"label": {"transform": "log1p", "scale": 0}}, "scale must be non-zero"),
    ({"label": {"transform": "log1p", "missing": float("inf")}}, "missing must be a finite"),
    ({"target": "JWMNP > 20", "label": "log1p"}, "target must be a column name"),
    ({}, "bare column"),
    ({"features": "AGEP", "target": "JWMNP > 20"}, "features must be a list"),
    ({"features": ["JWMNP"], "label": "log1p"}, "also a feature"),
    ({"lable": "log1p"}, "unknown ACS task field"),
])
def test_bad_task_configs_name_the_field(change, message):
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        ACSTask.from_config({**_BASE, **change})
    assert "Bad" in str(caught.value)


def test_a_non_finite_label_is_an_error_only_on_kept_rows(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("AGEP,ESR,JWMNP\n30,1,10\n40,1,\n50,6,-3\n60,1,25\n")
    task = {"name": "Commute", "features": ["AGEP"], "target": "JWMNP", "label": "log1p",
            "preprocess": ["ESR == 1"]}
    ds = load_census(path, task=task, standardise=False, test_fraction=0.25)
    got = dict(zip(np.concatenate([ds.x_train, ds.x_test])[:, 0],
                   np.concatenate([ds.y_train, ds.y_test]), strict=True))
    assert got == pytest.approx({30: np.log1p(10), 40: 0.0, 60: np.log1p(25)})
    task["preprocess"] = []  # now the row with JWMNP = -3 is kept: log1p(-3) is undefined
    with pytest.raises(ValueError, match=r"task Commute on .*p\.csv.*JWMNP = -3"):
        load_census(path, task=task, test_fraction=0.25)


# ---------------------------------------------------------------------------------------------
# The shipped sample: built by the tool from the staged file; ACSEmployment unchanged
# ---------------------------------------------------------------------------------------------

def _tool():
    spec = importlib.util.spec_from_file_location("make_acs_sample", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_sample_matches_source_md_and_keeps_the_task_columns():
    data = SHIPPED.read_bytes()
    text = (SHIPPED.parent / "SOURCE.md").read_text()
    digests = re.findall(r"sha256\s+`([0-9a-f]{64})`", text.replace("\n", " "))
    assert hashlib.sha256(data).hexdigest() == digests[0]
    assert f"({len(data):,} bytes" in text
    plain = gzip.decompress(data)
    assert hashlib.sha256(plain).hexdigest() == digests[1] and f"{len(plain):,}" in text
    header = plain.split(b"\n", 1)[0].decode().split(",")
    assert set(header) == _tool().columns()
    assert f"`{', '.join(header)}`" in " ".join(text.split())  # SOURCE.md lists them in order
    for name in ("ACSEmployment", "ACSTravelTime", "ACSTravelTimeDean"):
        assert set(TASKS[name].columns) <= set(header)


@needs_full
def test_the_tool_rebuilds_the_shipped_bytes():
    assert _tool().build(FULL) == SHIPPED.read_bytes()


@needs_full
def test_employment_on_the_sample_is_the_load_of_the_full_file(tmp_path):
    """The shipped sample's extra columns change nothing of ACSEmployment: same rows, same
    cells, same arrays, same provenance (but the file record) as the 286-column original."""
    copy = tmp_path / FULL.name
    copy.write_bytes(FULL.read_bytes())
    full, shipped = load_census(copy), load_census(SHIPPED)
    for name in ("x_train", "x_test", "y_train", "y_test"):
        np.testing.assert_array_equal(getattr(shipped, name), getattr(full, name))
    for split in ("train", "test"):
        a, b = getattr(shipped, f"attributes_{split}"), getattr(full, f"attributes_{split}")
        assert a.keys() == b.keys() == {"AGEP", "RAC1P"}
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert {k: v for k, v in shipped.provenance.items() if k != "files"} == \
        {k: v for k, v in full.provenance.items() if k != "files"}
    cells = [*ACSEmployment.columns, "SERIALNO", "SPORDER", "ST"]
    read = {p: pd.read_csv(p, dtype=str, keep_default_na=False, encoding="latin-1")[cells]
            for p in (SHIPPED, copy)}
    pd.testing.assert_frame_equal(read[SHIPPED], read[copy])
