"""ACS PUMS loader: the real staged sample, every file form, malformed files, task definitions."""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from userchoice.data.census import (
    TASKS,
    ACSTask,
    Condition,
    load_census,
    read_person_file,
    register_task,
    synthetic_acs_frame,
    write_synthetic_acs,
)
from userchoice.data.common import DataFormatError, DatasetNotFoundError

SAMPLE = SHARED_DATA / "acs_pums" / "acs_2017_1yr_person_AL_sample5000.csv.gz"
SAMPLE_SHA256 = "71188d999d694e0c026bf6f29a815dfd0d06cb9f52fb86acf7fa2e4b4495034e"
EMPLOYMENT_FEATURES = ("AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
                       "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P")

needs_sample = pytest.mark.skipif(
    not SAMPLE.exists(), reason=f"staged ACS sample {SAMPLE} is absent on this machine")


# ---------------------------------------------------------------------------------------------
# The real staged sample (2017 Alabama, 5,000 rows), checked against the csv module directly
# ---------------------------------------------------------------------------------------------

def _num(text: str) -> float:
    return float(text) if text.strip() else float("nan")


@pytest.fixture(scope="module")
def sample_rows() -> list[dict[str, str]]:
    if not SAMPLE.exists():
        pytest.skip(f"staged ACS sample {SAMPLE} is absent on this machine")
    with gzip.open(SAMPLE, "rt", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def employment():
    if not SAMPLE.exists():
        pytest.skip(f"staged ACS sample {SAMPLE} is absent on this machine")
    return load_census(SAMPLE, task="ACSEmployment", test_fraction=0.01, seed=0)


@needs_sample
def test_sample_employment_rows_labels_and_provenance(employment, sample_rows):
    ds = employment
    # ACSEmployment has no row filter (folktables: preprocess = identity): every row is a user
    assert len(sample_rows) == 5000
    assert ds.n_train + ds.x_test.shape[0] == len(sample_rows)
    assert ds.x_test.shape[0] == 50
    assert ds.feature_names == EMPLOYMENT_FEATURES and ds.n_features == 16
    esr_is_1 = [_num(r["ESR"]) == 1 for r in sample_rows]
    # SOURCE.md: ESR == 1 for 2026 of 5000 rows (40.5%)
    assert sum(esr_is_1) == 2026
    labels = np.concatenate([ds.y_train, ds.y_test])
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert labels.sum() == 2026
    assert ds.provenance["label_rate"] == pytest.approx(0.4052)
    prov = ds.provenance
    assert prov["files"][0]["sha256"] == SAMPLE_SHA256
    assert prov["rows_read"] == prov["rows_after_filter"] == 5000
    assert prov["task"]["name"] == "ACSEmployment" and prov["seed"] == 0
    assert prov["test_fraction"] == 0.01 and prov["states"] == [1]
    # SOURCE.md's NA counts; every other feature is complete
    expected_missing = dict.fromkeys(EMPLOYMENT_FEATURES, 0)
    expected_missing.update(SCHL=152, ESP=4053, MIG=54, MIL=939, DREM=263)
    assert prov["missing_values"] == expected_missing


@needs_sample
def test_sample_standardised_with_training_statistics(employment):
    x = employment.x_train.astype(np.float64)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-5)
    stats = employment.provenance["standardisation"]
    assert len(stats["mean"]) == len(stats["std"]) == 16


@needs_sample
def test_sample_features_and_age_attribute_match_the_file(employment, sample_rows):
    ds = load_census(SAMPLE, standardise=False, test_fraction=0.01, seed=0)
    x = np.concatenate([ds.x_train, ds.x_test])
    age = np.concatenate([ds.attributes_train["AGEP"], ds.attributes_test["AGEP"]])
    # rows are a permutation of the file's rows: compare sorted multisets of (AGEP, SCHL→0, MIL→0)
    expected = sorted((_num(r["AGEP"]), np.nan_to_num(_num(r["SCHL"])),
                       np.nan_to_num(_num(r["MIL"]))) for r in sample_rows)
    got = sorted(zip(x[:, 0].tolist(), x[:, 1].tolist(), x[:, 8].tolist(), strict=True))
    assert got == expected
    np.testing.assert_array_equal(age, x[:, 0])  # the raw age, not standardised
    # the standardised dataset carries the same raw ages for the same users
    np.testing.assert_array_equal(employment.attributes_train["AGEP"], ds.attributes_train["AGEP"])
    mean, std = (np.array(employment.provenance["standardisation"][k]) for k in ("mean", "std"))
    np.testing.assert_allclose(employment.x_train * std + mean, ds.x_train, atol=1e-3)


@needs_sample
def test_sample_split_is_seeded(employment):
    again = load_census(SAMPLE, seed=0)
    other = load_census(SAMPLE, seed=1)
    np.testing.assert_array_equal(again.x_test, employment.x_test)
    np.testing.assert_array_equal(again.y_train, employment.y_train)
    assert not np.array_equal(other.x_test, employment.x_test)
    assert other.provenance["seed"] == 1


@needs_sample
@pytest.mark.parametrize("task,keep,label", [
    ("ACSIncome",  # folktables adult_filter; label PINCP > 50000
     lambda r: _num(r["AGEP"]) > 16 and _num(r["PINCP"]) > 100 and _num(r["WKHP"]) > 0
     and _num(r["PWGTP"]) >= 1,
     lambda r: _num(r["PINCP"]) > 50000),
    ("ACSEmploymentFiltered",  # folktables employment_filter
     lambda r: 16 < _num(r["AGEP"]) < 90 and _num(r["PWGTP"]) >= 1,
     lambda r: _num(r["ESR"]) == 1),
])
def test_sample_filtered_tasks(sample_rows, task, keep, label):
    ds = load_census(SAMPLE, task=task, test_fraction=0.2, seed=0)
    kept = [r for r in sample_rows if keep(r)]
    assert 0 < len(kept) < len(sample_rows)
    assert ds.n_train + ds.x_test.shape[0] == len(kept) == ds.provenance["rows_after_filter"]
    labels = np.concatenate([ds.y_train, ds.y_test])
    assert labels.mean() == pytest.approx(sum(map(label, kept)) / len(kept))
    assert ds.feature_names == TASKS[task].features


# ---------------------------------------------------------------------------------------------
# File forms, on small files written here
# ---------------------------------------------------------------------------------------------

def _csv_bytes(n_rows: int = 300, seed: int = 0) -> bytes:
    buffer = io.StringIO()
    synthetic_acs_frame(n_rows, seed).to_csv(buffer, index=False, float_format="%.0f")
    return buffer.getvalue().encode()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _same(a, b) -> None:
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_csv_gz_and_census_zip_read_the_same(tmp_path):
    data = _csv_bytes()
    plain = tmp_path / "psam_p01.csv"
    plain.write_bytes(data)
    gz = tmp_path / "p.csv.gz"
    gz.write_bytes(gzip.compress(data))
    # the Census zip carries a README pdf beside the person file
    zipped = _zip(tmp_path / "csv_pal.zip", {"ACS2018_PUMS_README.pdf": b"%PDF-1.4",
                                             "psam_p01.csv": data})
    loaded = [load_census(p, test_fraction=0.2) for p in (plain, gz, zipped)]
    assert loaded[0].n_train + loaded[0].x_test.shape[0] == 300
    _same(loaded[0], loaded[1])
    _same(loaded[0], loaded[2])
    assert loaded[2].provenance["files"][0]["member"] == "psam_p01.csv"


def test_zero_padded_and_plain_codes_read_the_same(tmp_path):
    frame = synthetic_acs_frame(200, seed=3)  # ST, PUMA, SPORDER, RELP, PWGTP zero-padded
    padded = tmp_path / "padded.csv"
    frame.to_csv(padded, index=False, float_format="%.0f")
    assert ",01," in padded.read_text()
    unpadded = tmp_path / "plain.csv"
    for column in ("ST", "PUMA", "SPORDER", "RELP", "PWGTP"):
        frame[column] = frame[column].astype(int)
    frame.to_csv(unpadded, index=False, float_format="%.0f")
    a = load_census(padded, task="ACSEmploymentFiltered", test_fraction=0.2)
    b = load_census(unpadded, task="ACSEmploymentFiltered", test_fraction=0.2)
    _same(a, b)
    assert a.provenance["rows_after_filter"] < 200  # PWGTP, read from '0017'-style codes, filters


def test_several_files_and_states_are_concatenated(tmp_path):
    first = write_synthetic_acs(tmp_path / "psam_p01.csv", 150, seed=1)
    second = write_synthetic_acs(tmp_path / "psam_p02.csv.gz", 250, seed=2, state=2)
    ds = load_census([first, second], test_fraction=0.1)
    prov = ds.provenance
    assert ds.n_train + ds.x_test.shape[0] == 400 == prov["rows_read"]
    assert [f["rows"] for f in prov["files"]] == [150, 250]
    assert prov["states"] == [1, 2]
    # the all-states zip form: several person members in one archive
    both = _zip(tmp_path / "csv_pus.zip", {"psam_pusa.csv": first.read_bytes(),
                                           "psam_pusb.csv": gzip.decompress(second.read_bytes())})
    _same(ds, load_census(both, test_fraction=0.1))


def test_data_dir_search_and_duplicates(tmp_path):
    folder = tmp_path / "census"
    folder.mkdir()
    data = _csv_bytes(120, seed=4)
    (folder / "psam_p01.csv").write_bytes(data)
    # the same file inside the fetched zip (read once), and another year's zip (read)
    _zip(folder / "csv_pal_2018.zip", {"psam_p01.csv": data})
    _zip(folder / "csv_pal_2017.zip", {"psam_p01.csv": _csv_bytes(80, seed=5)})
    (folder / "psam_h01.csv").write_text("RT,SERIALNO\nH,1\n")  # a housing file: not picked up
    ds = load_census(data_dir=tmp_path, test_fraction=0.2)
    assert ds.provenance["rows_read"] == 200
    assert ds.provenance["skipped_duplicates"] == [f"{folder / 'csv_pal_2018.zip'} [psam_p01.csv]"]
    # a folder given as a path is searched the same way
    assert load_census(folder, test_fraction=0.2).provenance["rows_read"] == 200


def test_missing_dataset_names_the_commands(tmp_path):
    with pytest.raises(DatasetNotFoundError) as caught:
        load_census(data_dir=tmp_path)
    message = str(caught.value)
    assert "userchoice data fetch census" in message
    assert "userchoice data import census" in message
    assert str(tmp_path / "census") in message
    (tmp_path / "census").mkdir()
    (tmp_path / "census" / "notes.txt").write_text("nothing here")
    with pytest.raises(DatasetNotFoundError):
        load_census(data_dir=tmp_path)


def test_missing_values_become_zero_and_filters_drop_missing(tmp_path):
    path = tmp_path / "small.csv"
    header = ",".join((*EMPLOYMENT_FEATURES, "ESR", "PWGTP"))
    rows = ["30,,1,0,2,,1,1,,1,1,2,2,2,1,1,1,10",   # SCHL, ESP, MIL blank; employed
            "40,21,1,0,2,,1,1,4,1,1,2,2,2,2,1,,10",  # ESR blank → label 0
            "20,16,5,2,2,,1,1,4,1,1,2,2,2,1,2,6,10",
            ",16,5,2,2,,1,1,4,1,1,2,2,2,1,2,1,10"]   # AGEP blank: fails AGEP > 16
    path.write_text("\n".join([header, *rows]) + "\n")
    ds = load_census(path, standardise=False, test_fraction=0.25, seed=0)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    first = x[x[:, 0] == 30][0]
    assert first[1] == 0 and first[5] == 0 and first[8] == 0
    assert not np.isnan(x).any()
    assert sorted(zip(x[:, 0].tolist(), y.tolist(), strict=True)) == \
        [(0.0, 1.0), (20.0, 0.0), (30.0, 1.0), (40.0, 0.0)]
    assert ds.provenance["missing_values"]["AGEP"] == 1
    spec = ACSTask.from_config({"name": "adults", "features": list(EMPLOYMENT_FEATURES),
                                "target": "ESR == 1", "preprocess": ["AGEP > 16"]})
    adults = load_census(path, task=spec, test_fraction=0.34, standardise=False)
    assert adults.provenance["rows_after_filter"] == 3  # the blank age fails AGEP > 16


# ---------------------------------------------------------------------------------------------
# Malformed files
# ---------------------------------------------------------------------------------------------

def test_missing_column_names_file_column_and_expected(tmp_path):
    path = tmp_path / "psam_p01.csv"
    frame = synthetic_acs_frame(20).drop(columns=["DREM"])
    frame.to_csv(path, index=False)
    with pytest.raises(DataFormatError) as caught:
        load_census(path)
    message = str(caught.value)
    assert str(path) in message and "'DREM'" in message
    assert "AGEP, SCHL, MAR" in message  # the expected columns are listed
    assert caught.value.column == "DREM"


@pytest.mark.parametrize("bad,line,words", [
    ("extra", 4, "has 33 fields but the header has 32"),
    ("short", 5, "(a truncated file?)"),
])
def test_wrong_field_count_names_the_line(tmp_path, bad, line, words):
    lines = _csv_bytes(6).decode().splitlines()
    if bad == "extra":
        lines[line - 1] += ",7"
    else:
        lines[line - 1] = lines[line - 1].rsplit(",", 3)[0]
    path = tmp_path / "psam_p01.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(DataFormatError) as caught:
        load_census(path, test_fraction=0.2)
    assert caught.value.line == line
    assert f"line {line}" in str(caught.value) and words in str(caught.value)


def test_wrong_field_count_deep_in_a_large_file(tmp_path):
    lines = _csv_bytes(3000).decode().splitlines()
    lines[2700] += ",1"  # beyond pandas' first read buffer
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="line 2701"):
        load_census(path)


def test_non_numeric_value_names_line_and_column(tmp_path):
    path = tmp_path / "psam_p01.csv"
    frame = synthetic_acs_frame(10)
    frame["SCHL"] = frame["SCHL"].astype(object)
    frame.loc[6, "SCHL"] = "b"
    frame.to_csv(path, index=False, float_format="%.0f")
    with pytest.raises(DataFormatError) as caught:
        load_census(path, test_fraction=0.2)
    assert caught.value.line == 8 and caught.value.column == "SCHL"
    assert "'b'" in str(caught.value)


def test_empty_and_header_only_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="is empty"):
        load_census(empty)
    header_only = tmp_path / "header.csv.gz"
    header_only.write_bytes(gzip.compress(_csv_bytes(3).splitlines()[0] + b"\n"))
    with pytest.raises(DataFormatError, match="contains no rows"):
        load_census(header_only)


def test_html_page_saved_as_zip(tmp_path):
    path = tmp_path / "csv_pal.zip"
    path.write_text("<!DOCTYPE html><html><body>Access Denied</body></html>")
    with pytest.raises(DataFormatError, match="HTML"):
        load_census(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "psam_p01.csv.gz"
    path.write_bytes(gzip.compress(_csv_bytes(2000))[:-5000])
    with pytest.raises(DataFormatError, match="truncated"):
        load_census(path)


def _damaged(payload: bytes, how: str) -> bytes:
    packed = gzip.compress(payload, mtime=0)
    if how == "truncated":
        return packed[: len(packed) // 2]
    damaged = bytearray(packed)
    damaged[40:56] = b"\xff" * 16  # inside the deflate stream, within the header line
    return bytes(damaged)


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_a_damaged_gzip_or_zip_member_is_a_format_error(tmp_path, how):
    path = tmp_path / "psam_p01.csv.gz"
    path.write_bytes(_damaged(_csv_bytes(500), how))
    with pytest.raises(DataFormatError, match="truncated or corrupt") as caught:
        load_census(path)
    assert str(path) in str(caught.value) and "userchoice data fetch" in str(caught.value)
    archive = _zip(tmp_path / "csv_pal.zip", {"psam_p01.csv": _csv_bytes(500)})
    data = bytearray(archive.read_bytes())
    start = data.index(b"psam_p01.csv") + 300
    if how == "truncated":
        del data[start:start + 400]
    else:
        data[start:start + 16] = b"\xff" * 16
    archive.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=r"csv_pal\.zip.*(truncated or corrupt|zip)"):
        load_census(archive)


def test_a_person_read_twice_is_one_user_never_in_both_splits(tmp_path):
    frame = synthetic_acs_frame(400, seed=8)
    features = [*EMPLOYMENT_FEATURES]
    frame = frame[~frame[features].astype(float).fillna(0).duplicated()]  # distinct users
    n = len(frame)
    again = frame.sample(150, random_state=0)  # 150 persons listed twice, e.g. a pasted block
    both = pd.concat([frame, again])
    path = tmp_path / "psam_p01.csv"
    both.to_csv(path, index=False, float_format="%.0f")
    ds = load_census(path, test_fraction=0.3, standardise=False)
    prov = ds.provenance
    assert prov["rows_read"] == n + 150 and prov["duplicates_dropped"] == 150
    assert prov["duplicate_key"] == ["ST", "SERIALNO", "SPORDER"]
    assert ds.n_train + ds.x_test.shape[0] == n == prov["rows_after_filter"]
    train = {tuple(row) for row in ds.x_train.tolist()}
    test = {tuple(row) for row in ds.x_test.tolist()}
    assert len(train) == ds.n_train and len(test) == ds.x_test.shape[0]
    assert not train & test
    # the same file under two names (not the zip/extracted pair): its persons are read once
    (tmp_path / "copy.csv").write_bytes(path.read_bytes())
    twice = load_census([path, tmp_path / "copy.csv"], test_fraction=0.3)
    assert twice.provenance["duplicates_dropped"] == n + 2 * 150
    assert twice.n_train + twice.x_test.shape[0] == n
    # without the key columns nothing is taken for a repeat
    path.write_text(both.drop(columns=["SERIALNO"]).to_csv(index=False, float_format="%.0f"))
    loose = load_census(path, test_fraction=0.3)
    assert loose.provenance["duplicates_dropped"] == 0 and loose.provenance["duplicate_key"] is None


def test_zip_with_no_person_file(tmp_path):
    path = _zip(tmp_path / "csv_pal.zip", {"a.csv": b"x\n1\n", "b.csv": b"y\n2\n"})
    with pytest.raises(DataFormatError, match="2 data members"):
        load_census(path)


# ---------------------------------------------------------------------------------------------
# Task definitions
# ---------------------------------------------------------------------------------------------

def test_folktables_task_definitions():
    employment, income = TASKS["ACSEmployment"], TASKS["ACSIncome"]
    assert employment.features == EMPLOYMENT_FEATURES
    assert str(employment.target_transform) == "ESR == 1" and employment.preprocess == ()
    assert [str(c) for c in income.preprocess] == ["AGEP > 16", "PINCP > 100", "WKHP > 0",
                                                   "PWGTP >= 1"]
    assert str(income.target_transform) == "PINCP > 50000"
    assert [str(c) for c in TASKS["ACSEmploymentFiltered"].preprocess] == \
        ["AGEP > 16", "AGEP < 90", "PWGTP >= 1"]


def test_condition_semantics_and_parsing():
    values = np.array([15.0, 16.0, 17.0, np.nan])
    np.testing.assert_array_equal(Condition.parse("AGEP > 16").holds(values),
                                  [False, False, True, False])
    np.testing.assert_array_equal(Condition.parse("AGEP>=16").holds(values),
                                  [False, True, True, False])
    np.testing.assert_array_equal(Condition.parse("AGEP != 16").holds(values),
                                  [True, False, True, True])
    assert Condition.parse("PINCP > 5e4").value == 50000
    with pytest.raises(ValueError, match="COLUMN OP NUMBER"):
        Condition.parse("AGEP >> 16")
    with pytest.raises(ValueError, match="op must be one of"):
        Condition("AGEP", "=", 1)


def test_task_config_validation_and_registry():
    with pytest.raises(ValueError, match="unknown ACS task field"):
        ACSTask.from_config({"name": "t", "features": ["AGEP"], "target": "ESR == 1",
                             "filter": []})
    with pytest.raises(ValueError, match="also a feature"):
        ACSTask.from_config({"name": "t", "features": ["ESR"], "target": "ESR == 1"})
    with pytest.raises(ValueError, match="unknown ACS task"):
        load_census(SAMPLE, task="ACSNope")
    task = register_task({"name": "TestOnlyOld", "features": ["SCHL", "SEX"],
                          "target": "ESR == 1", "preprocess": "AGEP >= 65"})
    try:
        assert TASKS["TestOnlyOld"] is task and task.columns == ("SCHL", "SEX", "ESR", "AGEP")
        with pytest.raises(ValueError, match="exists"):
            register_task({"name": "TestOnlyOld", "features": ["SEX"], "target": "ESR == 1"})
    finally:
        TASKS.pop("TestOnlyOld")


def test_read_person_file_optional_columns(tmp_path):
    path = write_synthetic_acs(tmp_path / "p.csv", 30, seed=0)
    frame = read_person_file(path, ["AGEP"], optional=["ST", "NOT_THERE"])
    assert sorted(frame.columns) == ["AGEP", "ST"]
    assert frame["ST"].dtype == np.float64 and (frame["ST"] == 1).all()
