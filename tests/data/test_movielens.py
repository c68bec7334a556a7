"""MovieLens loader: reading every official format, the top-m matrix, the biased MF, load."""

from __future__ import annotations

import gzip
import math
import zipfile
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA

from userchoice.data import movielens
from userchoice.data.common import DataFormatError, DatasetNotFoundError
from userchoice.data.movielens import (
    fit_biased_mf,
    load_movielens,
    ratings_matrix,
    read_ratings,
    synthetic_ratings,
    write_synthetic_ratings,
)

ML100K = SHARED_DATA / "movielens" / "ml-100k" / "u.data.gz"
needs_ml100k = pytest.mark.skipif(
    not ML100K.exists(), reason=f"real MovieLens 100K not present ({ML100K}); see "
    "shared/data/movielens/SOURCE.md")

ROWS = [(1, 10, 4.0, 881250949), (1, 20, 3.5, 881250950), (2, 10, 5.0, 881250951),
        (3, 30, 1.0, 881250952), (2, 30, 2.5, 881250953)]
EXPECTED = pd.DataFrame({"user": [r[0] for r in ROWS], "item": [r[1] for r in ROWS],
                         "rating": [r[2] for r in ROWS]})


def lines(sep: str, rows=ROWS) -> str:
    return "".join(sep.join(f"{v:g}" for v in row) + "\n" for row in rows)


def check_frame(frame: pd.DataFrame, expected: pd.DataFrame = EXPECTED) -> None:
    assert list(frame.columns) == ["user", "item", "rating"]
    assert frame["user"].dtype == np.int64 and frame["item"].dtype == np.int64
    pd.testing.assert_frame_equal(frame.reset_index(drop=True), expected, check_dtype=False)


# --------------------------------------------------------------------------------------------
# Real data: the complete MovieLens 100K u.data
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml100k_lines() -> list[tuple[int, int, float]]:
    """u.data parsed independently of the loader: plain gzip + str.split."""
    if not ML100K.exists():
        pytest.skip(f"real MovieLens 100K not present ({ML100K})")
    with gzip.open(ML100K, "rt") as handle:
        return [(int(u), int(i), float(r)) for u, i, r, _ in
                (line.rstrip("\n").split("\t") for line in handle)]


@needs_ml100k
def test_ml100k_read_matches_independent_parse(ml100k_lines):
    frame = read_ratings(ML100K)
    assert len(frame) == 100_000
    assert frame["user"].nunique() == 943 and frame["item"].nunique() == 1682
    assert frame.attrs["format"] == {"style": "u.data", "separator": "\t", "header": False,
                                     "fields": 4}
    expected = np.array(ml100k_lines)
    np.testing.assert_array_equal(frame[["user", "item", "rating"]].to_numpy(), expected)


@needs_ml100k
# Movies 77, 164 and 550 (ranks 199-201) have 151 ratings each: the cut falls inside a tie for
# m = 200 and for m = 199, so the tie rule (lower movie id first) decides which are kept.
@pytest.mark.parametrize("m, kept_id, dropped_id", [(200, 164, 550), (199, 77, 164)])
def test_ml100k_top_movies_matrix_against_independent_lookup(ml100k_lines, m, kept_id,
                                                            dropped_id):
    frame = read_ratings(ML100K)
    matrix = ratings_matrix(frame, m)
    counts = Counter(i for _, i, _ in ml100k_lines)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert matrix.movie_ids.tolist() == [i for i, _ in ranked[:m]]
    assert matrix.movie_counts.tolist() == [c for _, c in ranked[:m]]
    assert counts[77] == counts[164] == counts[550] == 151
    assert kept_id in matrix.movie_ids and dropped_id not in matrix.movie_ids
    kept = set(matrix.movie_ids.tolist())
    kept_users = sorted({u for u, i, _ in ml100k_lines if i in kept})
    assert matrix.user_ids.tolist() == kept_users
    assert len(matrix.values) == sum(1 for _, i, _ in ml100k_lines if i in kept)
    lookup = {(u, i): r for u, i, r in ml100k_lines}
    rng = np.random.default_rng(0)
    rated = [key for key in lookup if key[1] in kept]
    cells = [rated[k] for k in rng.choice(len(rated), 300, replace=False)]
    cells += [(int(matrix.user_ids[a]), int(matrix.movie_ids[b])) for a, b in
              zip(rng.integers(0, len(matrix.user_ids), 300), rng.integers(0, m, 300),
                  strict=True)]
    row = {u: k for k, u in enumerate(matrix.user_ids.tolist())}
    col = {i: k for k, i in enumerate(matrix.movie_ids.tolist())}
    n_unrated = 0
    for u, i in cells:
        value, mask = matrix.y[row[u], col[i]], matrix.w[row[u], col[i]]
        if (u, i) in lookup:
            assert (value, mask) == (lookup[u, i], 1.0)
        else:
            assert (value, mask) == (0.0, 0.0)
            n_unrated += 1
    assert n_unrated > 50  # both kinds of cells were checked
    assert matrix.w.sum() == len(matrix.values)


@needs_ml100k
def test_ml100k_load_factors_finite_deterministic_and_learned():
    ds = load_movielens(ML100K)
    prov = ds.provenance
    assert ds.x_train.shape[1] == 5 and ds.feature_names == ("f0", "f1", "f2", "f3", "f4")
    assert ds.y_train.shape[1] == 200 and ds.w_train.shape == ds.y_train.shape
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_test).all()
    assert ds.n_train + len(ds.x_test) == prov["users"] == 943
    assert len(ds.x_test) == math.ceil(0.1 * 943)  # scikit-learn rounds the test share up
    assert prov["ratings_read"] == 100_000 and prov["movies_read"] == 1682
    assert prov["files"][0]["sha256"] == \
        "d5cd19fba4562fe2867bf2964d99d97ec55bce45b150df3763dfa8668cf22f4f"
    assert len(prov["movie_ids"]) == 200 and prov["split"]["seed"] == 0
    # every user has at least one kept rating; y is 0 exactly where unrated
    assert (ds.w_train.sum(axis=1) >= 1).all()
    assert ((ds.y_train != 0) == (ds.w_train == 1)).all()
    # the factorisation learns: training RMSE clearly below the ratings' own spread
    assert prov["mf"]["train_rmse"] < 0.9 * prov["mf"]["rating_std"]
    again = load_movielens(ML100K)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
    # another split seed moves users between train and test, not their factors
    other = load_movielens(ML100K, seed=1)
    assert not np.array_equal(other.attributes_test["user_id"], ds.attributes_test["user_id"])
    by_user = dict(zip(np.concatenate([ds.attributes_train["user_id"],
                                       ds.attributes_test["user_id"]]).tolist(),
                       np.concatenate([ds.x_train, ds.x_test]), strict=True))
    for user, x in zip(other.attributes_test["user_id"].tolist(), other.x_test, strict=True):
        np.testing.assert_array_equal(by_user[user], x)


@needs_ml100k
def test_ml100k_factors_equal_scikit_surprise_svd():
    surprise = pytest.importorskip("surprise", reason="scikit-surprise not installed")
    matrix = ratings_matrix(read_ratings(ML100K), 200)
    model = fit_biased_mf(matrix.rows, matrix.cols, matrix.values, seed=0)
    kept = pd.DataFrame({"u": matrix.user_ids[matrix.rows], "i": matrix.movie_ids[matrix.cols],
                         "r": matrix.values})
    trainset = surprise.Dataset.load_from_df(kept, surprise.Reader(rating_scale=(1, 5))) \
        .build_full_trainset()
    algo = surprise.SVD(n_factors=5, random_state=0).fit(trainset)
    inner_u = [trainset.to_inner_uid(u) for u in matrix.user_ids]
    inner_i = [trainset.to_inner_iid(i) for i in matrix.movie_ids]
    np.testing.assert_allclose(model.user_factors, algo.pu[inner_u], rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.item_factors, algo.qi[inner_i], rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.user_bias, algo.bu[inner_u], rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.item_bias, algo.bi[inner_i], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, sep, header", [
    ("u.data", "\t", ""),
    ("ratings.dat", "::", ""),
    ("ratings.csv", ",", "userId,movieId,rating,timestamp\n"),
])
def test_each_format_plain_and_gzipped(tmp_path, name, sep, header):
    text = header + lines(sep)
    (tmp_path / name).write_text(text)
    frame = read_ratings(tmp_path / name)
    check_frame(frame)
    assert frame.attrs["format"]["separator"] == sep
    assert frame.attrs["format"]["header"] == bool(header)
    (tmp_path / f"{name}.gz").write_bytes(gzip.compress(text.encode()))
    check_frame(read_ratings(tmp_path / f"{name}.gz"))


def test_format_is_detected_from_content_not_name(tmp_path):
    (tmp_path / "ratings.csv").write_text(lines("::"))
    assert read_ratings(tmp_path / "ratings.csv").attrs["format"]["style"] == "ratings.dat"


def test_crlf_bom_blank_lines_and_three_fields(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"\xef\xbb\xbf" + lines("::").replace("\n", "\r\n").encode() + b"\r\n\r\n")
    check_frame(read_ratings(path))
    path.write_text(lines("\t", [r[:3] for r in ROWS]))
    assert read_ratings(path).attrs["format"]["fields"] == 3
    check_frame(read_ratings(path))


# ML-100K and ML-1M rate in whole stars: the same rows with 3.5 → 4 and 2.5 → 3.
WHOLE_ROWS = [(u, i, math.ceil(r), t) for u, i, r, t in ROWS]
WHOLE = EXPECTED.assign(rating=[float(r[2]) for r in WHOLE_ROWS])


@pytest.mark.parametrize("archive, member, sep, header", [
    ("ml-100k.zip", "ml-100k/u.data", "\t", ""),
    ("ml-1m.zip", "ml-1m/ratings.dat", "::", ""),
    ("ml-10m.zip", "ml-10M100K/ratings.dat", "::", ""),
    ("ml-latest-small.zip", "ml-latest-small/ratings.csv", ",",
     "userId,movieId,rating,timestamp\n"),
])
def test_official_zip_layouts(tmp_path, archive, member, sep, header):
    folder = member.split("/")[0]
    whole = archive in ("ml-100k.zip", "ml-1m.zip")
    rows = WHOLE_ROWS if whole else ROWS
    with zipfile.ZipFile(tmp_path / archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{folder}/", "")
        z.writestr(f"{folder}/README", "readme")
        z.writestr(f"{folder}/u1.base" if sep == "\t" else f"{folder}/movies.dat",
                   lines(sep, rows[:2]))
        z.writestr(member, header + lines(sep, rows))
    frame = read_ratings(tmp_path / archive)
    check_frame(frame, WHOLE if whole else EXPECTED)
    assert frame.attrs["member"] == member
    assert frame.attrs["rating_scale"]["step"] == (1.0 if whole else 0.5)


def test_synthetic_writer_round_trips_every_format(tmp_path):
    for fmt, name in (("::", "ratings.dat"), ("\t", "u.data.gz"), (",", "ratings.csv")):
        truth = write_synthetic_ratings(tmp_path / name, 500, 40, 30, seed=3, fmt=fmt)
        frame = read_ratings(tmp_path / name)
        pd.testing.assert_frame_equal(frame, truth.frame(), check_dtype=False)
    assert set(np.unique(truth.ratings)) <= set(np.arange(1, 11) / 2)
    assert not truth.frame().duplicated(["user", "item"]).any()


# --------------------------------------------------------------------------------------------
# Malformed input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sep, bad, line, words", [
    ("\t", "1\t2", 3, ["2 fields"]),
    ("::", "1::2::3::4::5", 3, ["5 fields"]),
    ("\t", "1\t2\tfive\t8", 3, ["rating", "'five'"]),
    ("::", "1::abc::3::8", 3, ["item", "'abc'"]),
    ("\t", "1\t2\tnan\t8", 3, ["rating", "'nan'"]),
    ("\t", "1.5\t2\t3\t8", 3, ["user", "'1.5'"]),
    ("\t", "1\t2\t3\t", 3, ["timestamp"]),
])
def test_bad_line_is_named(tmp_path, sep, bad, line, words):
    rows = lines(sep).splitlines()
    text = "\n".join([*rows[:2], bad, *rows[2:]]) + "\n"
    for name, payload in (("ratings.txt", text.encode()),
                          ("ratings.txt.gz", gzip.compress(text.encode()))):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(DataFormatError) as info:
            read_ratings(tmp_path / name)
        message = str(info.value)
        assert name in message and f"line {line}" in message, message
        assert info.value.line == line
        assert "expected" in message
        for word in words:
            assert word in message, message


@pytest.mark.parametrize("value", ["-1", "0", "6", "10", "1e9", "0.25", "4.75"])
def test_a_rating_off_the_star_scale_names_file_line_and_value(tmp_path, value):
    rows = lines("::").splitlines()
    text = "\n".join([*rows[:3], f"4::40::{value}::881250960", *rows[3:]]) + "\n"
    for name, payload in (("ratings.dat", text.encode()),
                          ("ratings.dat.gz", gzip.compress(text.encode()))):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(DataFormatError) as info:
            read_ratings(tmp_path / name)
        message = str(info.value)
        assert name in message and "line 4" in message and f"'{value}'" in message, message
        assert info.value.line == 4 and info.value.column == "rating"
        assert "star range" in message and "0.5 to 5" in message
    with pytest.raises(DataFormatError, match=rf"line 4.*'{value}'"):
        load_movielens(tmp_path / "ratings.dat", n_movies=2, test_fraction=0.34)


def test_each_release_has_its_star_scale(tmp_path):
    halves = lines("::")  # ROWS rate 3.5 and 2.5
    for folder, ok in (("ml-1m", False), ("ml-100k", False), ("ml-10M100K", True),
                       ("ml-latest-small", True), ("ml-32m", True), ("mine", True)):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "ratings.dat"
        path.write_text(halves)
        if ok:
            check_frame(read_ratings(path))
        else:
            with pytest.raises(DataFormatError, match=r"line 2.*'3.5'.*whole stars"):
                read_ratings(path)
            check_frame(read_ratings(path, scale="ml-10m"))  # told otherwise: accepted
    with zipfile.ZipFile(tmp_path / "ml-1m.zip", "w") as z:
        z.writestr("ml-1m/ratings.dat", halves)
    with pytest.raises(DataFormatError, match=r"ml-1m\.zip, line 2.*1 to 5 in whole stars"):
        read_ratings(tmp_path / "ml-1m.zip")
    (tmp_path / "ml-1m" / "ratings.dat").write_text(lines("::", WHOLE_ROWS))
    check_frame(read_ratings(tmp_path / "ml-1m" / "ratings.dat"), WHOLE)
    with pytest.raises(ValueError, match="scale must be one of"):
        read_ratings(tmp_path / "ml-1m" / "ratings.dat", scale="ml-5m")


def _damaged_gzip(payload: bytes, how: str) -> bytes:
    packed = gzip.compress(payload, mtime=0)
    if how == "truncated":
        return packed[: len(packed) // 2]
    damaged = bytearray(packed)
    damaged[40:56] = b"\xff" * 16  # inside the deflate stream
    return bytes(damaged)


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_a_damaged_gzip_is_a_format_error_naming_the_file(tmp_path, how):
    text = "".join(f"{u}::{i}::{1 + (u + i) % 5}::88125{u:04d}\n" for u in range(1, 60)
                   for i in range(1, 30)).encode()
    path = tmp_path / "ratings.dat.gz"
    path.write_bytes(_damaged_gzip(text, how))
    with pytest.raises(DataFormatError, match="truncated or corrupt") as info:
        read_ratings(path)
    message = str(info.value)
    assert str(path) in message and "userchoice data fetch" in message
    assert "userchoice data import" in message
    # the same inside a zip (a gzipped member) and a zip whose member is damaged
    with zipfile.ZipFile(tmp_path / "ml-10m.zip", "w") as z:
        z.writestr("ml-10M100K/ratings.dat.gz", _damaged_gzip(text, how))
    with pytest.raises(DataFormatError, match="truncated or corrupt"):
        read_ratings(tmp_path / "ml-10m.zip")
    archive = tmp_path / "ml-latest.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ml-latest/ratings.dat", text)
    data = bytearray(archive.read_bytes())
    start = data.index(b"ratings.dat") + len("ratings.dat") + 200
    data[start:start + 16] = b"\xff" * 16
    archive.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=r"ml-latest\.zip.*truncated or corrupt"):
        read_ratings(archive)


def test_bad_line_after_csv_header_counts_the_header(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,2,3,4\n1,3,x,4\n")
    with pytest.raises(DataFormatError, match="line 3"):
        read_ratings(path)


@pytest.mark.parametrize("text, words", [
    ("1;2;3;4\n5;6;7;8\n", ["cannot tell the format", "line 1"]),
    ("hello world\nthis is not a ratings file\n", ["cannot tell the format", "line 1"]),
    ("movie,title,genres\n1,Toy Story,Comedy\n", ["is not a user id", "line 1"]),
    ("1,2,3,4,5,6\n", ["6 fields", "line 1"]),
])
def test_wrong_separator_or_garbage(tmp_path, text, words):
    path = tmp_path / "ratings.dat"
    path.write_text(text)
    with pytest.raises(DataFormatError) as info:
        read_ratings(path)
    for word in words:
        assert word in str(info.value)


def test_empty_and_header_only_files(tmp_path):
    (tmp_path / "empty.dat").write_bytes(b"")
    with pytest.raises(DataFormatError, match="is empty"):
        read_ratings(tmp_path / "empty.dat")
    (tmp_path / "blank.dat.gz").write_bytes(gzip.compress(b"\n\n  \n"))
    with pytest.raises(DataFormatError, match="is empty"):
        read_ratings(tmp_path / "blank.dat.gz")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    with pytest.raises(DataFormatError, match="contains no ratings"):
        read_ratings(tmp_path / "ratings.csv")


def test_html_page_saved_as_zip_and_broken_archives(tmp_path):
    page = tmp_path / "ml-10m.zip"
    page.write_text("<!DOCTYPE html><html><body>Access denied</body></html>")
    with pytest.raises(DataFormatError, match="HTML page"):
        read_ratings(page)
    broken = tmp_path / "ml-1m.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DataFormatError, match="zip"):
        read_ratings(broken)
    other = tmp_path / "ml-other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("ml-10M100K/movies.dat", "1::Toy Story (1995)::Comedy\n")
    with pytest.raises(DataFormatError, match="no MovieLens ratings file"):
        read_ratings(other)
    with pytest.raises(FileNotFoundError):
        read_ratings(tmp_path / "absent.dat")


def test_missing_dataset_names_the_commands(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_movielens(data_dir=tmp_path)
    message = str(info.value)
    assert "userchoice data fetch movielens" in message
    assert "userchoice data import movielens" in message
    assert str(tmp_path / "movielens" / "ratings.dat") in message


def test_data_dir_search_prefers_ratings_dat_then_zips(tmp_path):
    folder = tmp_path / "movielens"
    folder.mkdir()
    write_synthetic_ratings(folder / "u.data.gz", 400, 30, 20, seed=0, fmt="\t")
    assert movielens.find_ratings_file(tmp_path) == folder / "u.data.gz"
    with zipfile.ZipFile(folder / "ml-10m.zip", "w") as z:
        z.writestr("ml-10M100K/ratings.dat", lines("::"))
    assert movielens.find_ratings_file(tmp_path) == folder / "ml-10m.zip"
    (folder / "ml-10M100K").mkdir()
    (folder / "ml-10M100K" / "ratings.dat").write_text(lines("::"))
    assert movielens.find_ratings_file(tmp_path) == folder / "ml-10M100K" / "ratings.dat"
    ds = load_movielens(data_dir=tmp_path, n_movies=3, test_fraction=0.34)
    assert ds.provenance["files"][0]["path"].endswith("ratings.dat")


# --------------------------------------------------------------------------------------------
# Matrix
# --------------------------------------------------------------------------------------------


def test_matrix_tie_rule_dropped_users_and_layout():
    frame = pd.DataFrame({"user": [7, 7, 8, 8, 9, 9, 4, 5],
                          "item": [30, 10, 30, 50, 30, 10, 50, 60],
                          "rating": [4.0, 3.0, 5.0, 2.0, 1.0, 4.5, 3.5, 2.0]})
    matrix = ratings_matrix(frame, 2)  # 30 has 3 ratings; 10 and 50 tie at 2 → lower id 10
    assert matrix.movie_ids.tolist() == [30, 10] and matrix.movie_counts.tolist() == [3, 2]
    assert matrix.user_ids.tolist() == [7, 8, 9]  # users 4 and 5 rated no kept movie
    np.testing.assert_array_equal(matrix.y, [[4.0, 3.0], [5.0, 0.0], [1.0, 4.5]])
    np.testing.assert_array_equal(matrix.w, [[1, 1], [1, 0], [1, 1]])
    assert (matrix.n_ratings_read, matrix.n_users_read, matrix.n_movies_read) == (8, 5, 4)
    everything = ratings_matrix(frame, 100)
    assert everything.movie_ids.tolist() == [30, 10, 50, 60]
    assert everything.user_ids.tolist() == [4, 5, 7, 8, 9]


def test_matrix_rejects_repeats_and_bad_arguments():
    frame = pd.DataFrame({"user": [1, 1, 2], "item": [5, 5, 5], "rating": [3.0, 4.0, 1.0]})
    with pytest.raises(ValueError, match="user 1 rated movie 5 more than once"):
        ratings_matrix(frame, 1)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_movies"):
            ratings_matrix(frame, bad)
    with pytest.raises(ValueError, match="lacks columns"):
        ratings_matrix(frame.drop(columns="rating"), 1)


# --------------------------------------------------------------------------------------------
# Matrix factorisation
# --------------------------------------------------------------------------------------------


def test_mf_recovers_a_low_rank_rating_set():
    noise = 0.1
    data = synthetic_ratings(12_000, 400, 60, seed=1, n_factors=3, noise=noise,
                             rating_step=None, popularity_exponent=0.3, activity_sigma=0.3)
    users, items, r = data.users - 1, data.items - 1, data.ratings
    held = np.random.default_rng(0).random(len(r)) < 0.1
    model = fit_biased_mf(users[~held], items[~held], r[~held], n_users=400, n_items=60,
                          n_factors=3, n_epochs=100, lr=0.01, reg=0.005, seed=0)
    held_rmse = np.sqrt(np.mean((model.predict(users[held], items[held]) - r[held]) ** 2))
    assert model.train_rmse < 1.1 * noise
    assert held_rmse < 1.3 * noise  # generalises: the structure, not the noise, was learnt
    assert r.std() > 8 * noise
    # biases approach the generating ones (up to the shift absorbed by the global mean)
    true_bu = data.user_bias - data.user_bias.mean()
    true_bi = data.item_bias - data.item_bias.mean()
    assert np.corrcoef(model.user_bias, true_bu)[0, 1] > 0.95
    assert np.corrcoef(model.item_bias, true_bi)[0, 1] > 0.98
    assert np.sqrt(np.mean((model.user_bias - true_bu) ** 2)) < 0.4 * true_bu.std()
    assert np.sqrt(np.mean((model.item_bias - true_bi) ** 2)) < 0.2 * true_bi.std()
    assert abs(model.global_mean - (data.global_mean + data.user_bias.mean()
                                    + data.item_bias.mean())) < 0.05
    # the paper's settings (20 epochs, lr 0.005, reg 0.02) already beat the mean predictor
    paper = fit_biased_mf(users, items, r, n_factors=3)
    assert paper.train_rmse < 0.85 * r.std()


def test_mf_compiled_loop_equals_plain_python_and_is_deterministic():
    data = synthetic_ratings(300, 25, 15, seed=2)
    users, items, r = data.users - 1, data.items - 1, data.ratings
    model = fit_biased_mf(users, items, r, n_epochs=3, seed=4)
    again = fit_biased_mf(users, items, r, n_epochs=3, seed=4)
    np.testing.assert_array_equal(model.user_factors, again.user_factors)
    other = fit_biased_mf(users, items, r, n_epochs=3, seed=5)
    assert not np.allclose(other.user_factors, model.user_factors)
    # the same loop run as plain Python (surprise's visiting order, by hand)
    inner_u, seen_u = pd.factorize(users)
    inner_i, seen_i = pd.factorize(items)
    order = np.argsort(inner_u, kind="stable")
    rng = np.random.RandomState(4)
    pu, qi = rng.normal(0, 0.1, (len(seen_u), 5)), rng.normal(0, 0.1, (len(seen_i), 5))
    bu, bi = np.zeros(len(seen_u)), np.zeros(len(seen_i))
    movielens._sgd_epochs(inner_u[order], inner_i[order], r[order], r.mean(), bu, bi, pu, qi,
                          3, 0.005, 0.02)
    np.testing.assert_allclose(model.user_factors[seen_u], pu, rtol=0, atol=1e-13)
    np.testing.assert_allclose(model.item_bias[seen_i], bi, rtol=0, atol=1e-13)


def test_mf_unseen_indices_and_argument_checks():
    model = fit_biased_mf([0, 2], [1, 1], [4.0, 2.0], n_users=4, n_items=3, n_epochs=2)
    assert model.user_factors.shape == (4, 5) and model.item_factors.shape == (3, 5)
    assert not model.user_factors[[1, 3]].any() and not model.item_bias[[0, 2]].any()
    with pytest.raises(ValueError, match="one length"):
        fit_biased_mf([0, 1], [0], [1.0, 2.0])
    with pytest.raises(ValueError, match="no ratings"):
        fit_biased_mf([], [], [])
    with pytest.raises(ValueError, match=r"indices in \[0, 2\)"):
        fit_biased_mf([0, 2], [0, 0], [1.0, 2.0], n_users=2)
    with pytest.raises(ValueError, match="finite"):
        fit_biased_mf([0], [0], [np.nan])


def test_load_from_synthetic_dat_file(tmp_path):
    path = tmp_path / "ratings.dat"
    truth = write_synthetic_ratings(path, 20_000, 600, 400, seed=5)
    ds = load_movielens(path, n_movies=50, test_fraction=0.2, seed=3)
    prov = ds.provenance
    counts = truth.frame()["item"].value_counts()
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:50]
    assert prov["movie_ids"] == [i for i, _ in top]
    assert prov["format"]["style"] == "ratings.dat" and prov["ratings_read"] == 20_000
    assert ds.y_train.shape[1] == 50 and ds.x_train.shape[1] == 5
    assert len(ds.x_test) == math.ceil(0.2 * prov["users"])
    assert prov["mf"]["train_rmse"] < prov["mf"]["rating_std"]
