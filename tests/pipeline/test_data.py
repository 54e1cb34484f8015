"""pipeline.data: loading, validation errors that name file/column/row, the split."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline import lineage
from pipeline.data import check_hash, load_dataset, split_dataset
from pipeline.errors import BadInputError, DataHashMismatchError, DataValidationError

# kind -> (file, column, row) the error must name; None = not applicable.
BAD_DATA = {
    "missing_target": ("iris.csv", "target", None),
    "non_numeric": ("iris.csv", "sepal_width", 42),
    "nan": ("iris.csv", "petal_length", 8),
    "inf": ("iris.csv", "petal_width", 100),
    "missing_label": ("iris.csv", "target", 13),
    "empty": ("b.csv", None, None),
    "header_only": ("iris.csv", None, None),
    "header_mismatch": ("b.csv", "petal_width", None),
    "single_class": ("iris.csv", "target", None),
    "few_rows": ("iris.csv", "target", 3),
}


def _fail(data_dir: Path) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        split_dataset(load_dataset(data_dir))
    return info.value


class TestLoad:
    def test_iris_loads_and_hash_matches_lineage(self, iris_dir: Path) -> None:
        """The example data loads as 150 rows x 4 features; its hash is lineage's hash."""
        ds = load_dataset(iris_dir)
        assert 150 == ds.n_rows
        assert ("sepal_length", "sepal_width", "petal_length", "petal_width") == ds.feature_names
        assert {0, 1, 2} == set(ds.target.unique())
        assert lineage.dataset_hash(iris_dir) == ds.data_hash

    def test_ignored_and_non_data_files(self, iris_dir: Path) -> None:
        """Ignored files are neither loaded nor hashed; other files are hashed, not loaded."""
        before = load_dataset(iris_dir).data_hash
        (iris_dir / ".hidden.csv").write_text("garbage\n")
        (iris_dir / "partial.csv.tmp").write_text("garbage\n")
        assert before == load_dataset(iris_dir).data_hash
        (iris_dir / "README.md").write_text("about the data\n")
        ds = load_dataset(iris_dir)
        assert 150 == ds.n_rows
        assert before != ds.data_hash
        assert lineage.dataset_hash(iris_dir) == ds.data_hash

    def test_csv_and_parquet_recursive_any_column_order(self, tmp_path: Path) -> None:
        """CSV and Parquet files in subdirs are joined in path order; column order may vary."""
        import pandas as pd

        frame = pd.read_csv(Path(__file__).resolve().parents[2] / "examples/data/iris.csv")
        (tmp_path / "d" / "sub").mkdir(parents=True)
        frame.iloc[:75].to_csv(tmp_path / "d" / "a.csv", index=False)
        frame.iloc[75:, ::-1].to_parquet(tmp_path / "d" / "sub" / "b.parquet", index=False)
        ds = load_dataset(tmp_path / "d")
        assert ["a.csv", "sub/b.parquet"] == [s.path for s in ds.sources]
        assert 150 == ds.n_rows
        assert frame["petal_width"].tolist() == ds.features["petal_width"].tolist()
        assert lineage.dataset_hash(tmp_path / "d") == ds.data_hash

    def test_configurable_target_and_string_labels(self, tmp_path: Path) -> None:
        """The label column name is configurable; non-integer labels stay strings."""
        (tmp_path / "d").mkdir()
        rows = "\n".join(f"{i},{i % 2 * 10 + i},{'cat' if i % 2 else 'dog'}" for i in range(20))
        (tmp_path / "d" / "x.csv").write_text(f"f1,f2,species\n{rows}\n")
        ds = load_dataset(tmp_path / "d", target="species")
        assert {"cat", "dog"} == set(ds.target)
        assert ("f1", "f2") == ds.feature_names


class TestValidation:
    @pytest.mark.parametrize("kind", sorted(BAD_DATA))
    def test_bad_data_names_file_column_row(
        self, kind: str, make_variant: Callable[[str], Path]
    ) -> None:
        """Each corruption fails with a DataValidationError naming file, column and row."""
        file, column, row = BAD_DATA[kind]
        err = _fail(make_variant(kind))
        assert file == err.file
        assert column == err.column
        assert row == err.row
        assert f"file {file!r}" in str(err)
        if column is not None:
            assert f"column {column!r}" in str(err)

    def test_parquet_nan_names_row(self, tmp_path: Path) -> None:
        """A NaN in a numeric Parquet column is reported with file, column and row."""
        import pandas as pd

        (tmp_path / "d").mkdir()
        frame = pd.DataFrame({"a": [1.0, 2.0, float("nan"), 4.0], "target": [0, 1, 0, 1]})
        frame.to_parquet(tmp_path / "d" / "x.parquet", index=False)
        err = _fail(tmp_path / "d")
        assert ("x.parquet", "a", 3) == (err.file, err.column, err.row)

    def test_no_data_files(self, tmp_path: Path) -> None:
        """A directory without CSV/Parquet files is rejected, naming the directory."""
        (tmp_path / "notes.txt").write_text("x")
        err = _fail(tmp_path)
        assert str(tmp_path) == err.file
        assert "no CSV or Parquet" in str(err)

    def test_hash_check(self, iris_dir: Path) -> None:
        """check_hash passes for the right hash, names both hashes on mismatch, rejects junk."""
        ds = load_dataset(iris_dir)
        check_hash(ds, ds.data_hash, iris_dir)
        with pytest.raises(DataHashMismatchError) as info:
            check_hash(ds, "0" * 64, iris_dir)
        assert ds.data_hash in str(info.value)
        assert "0" * 64 in str(info.value)
        with pytest.raises(BadInputError):
            check_hash(ds, "not-a-hash", iris_dir)


class TestSplit:
    def test_split_is_seeded_and_stratified(self, iris_dir: Path, tmp_path: Path) -> None:
        """Same data and seed give the same split, also from a copy; classes stay balanced."""
        first = split_dataset(load_dataset(iris_dir), seed=7)
        copy = tmp_path / "copy"
        shutil.copytree(iris_dir, copy)
        again = split_dataset(load_dataset(copy), seed=7)
        other = split_dataset(load_dataset(iris_dir), seed=8)
        assert first.x_test.index.tolist() == again.x_test.index.tolist()
        assert first.x_test.index.tolist() != other.x_test.index.tolist()
        assert 38 == len(first.y_test)
        assert {12, 13} == set(first.y_test.value_counts())
