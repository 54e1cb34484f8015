"""Load and validate the training data directory; deterministic stratified split.

Every regular file under the data dir that ``pipeline.lineage`` does not ignore is
hashed; ``*.csv`` and ``*.parquet`` files are also parsed. The manifest is built
from the very bytes that were parsed, so the dataset hash a run is tagged with
always describes the data the model was trained on, even if files change while
the pipeline runs.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import lineage
from pipeline.errors import BadInputError, DataHashMismatchError, DataValidationError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_TARGET = "target"
DEFAULT_TEST_SIZE = 0.25
DEFAULT_SEED = 42
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
MAX_COLUMNS = 10_000  # wider CSV headers are refused before parsing (see _parse)
# Spellings of "missing" that a CSV writer may produce; all are rejected as NaN.
NA_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none", "-nan"})


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A parsed data file: its relative path and how many rows it contributed."""

    path: str
    rows: int
    kind: str  # "csv" | "parquet"


@dataclass(frozen=True, slots=True)
class Dataset:
    """Validated features and labels, with the manifest of the bytes they came from."""

    features: pd.DataFrame
    target: pd.Series[Any]
    feature_names: tuple[str, ...]
    target_name: str
    sources: tuple[SourceFile, ...]
    manifest: lineage.Manifest

    @property
    def data_hash(self) -> str:
        return self.manifest.dataset_hash

    @property
    def n_rows(self) -> int:
        return len(self.target)

    def locate(self, index: int) -> tuple[str, int]:
        """(file, 1-based data row) of the global row ``index``."""
        for src in self.sources:
            if index < src.rows:
                return src.path, index + 1
            index -= src.rows
        raise IndexError(index)


@dataclass(frozen=True, slots=True)
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series[Any]
    y_test: pd.Series[Any]


def _is_data_file(rel: str) -> str | None:
    lower = rel.lower()
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _where(kind: str, row: int) -> str:
    # CSV row N (1-based, header excluded) is on line N+1 of the file.
    return f"row {row} (line {row + 1})" if kind == "csv" else f"row {row}"


def _parse(rel: str, kind: str, data: bytes) -> pd.DataFrame:
    import pandas as pd

    if not data.strip():
        raise DataValidationError("empty file", file=rel)
    if kind == "csv":
        end = data.find(b"\n")
        columns = data.count(b",", 0, len(data) if end < 0 else end) + 1
        if columns > MAX_COLUMNS:
            # A huge single line (binary junk, a broken export) would otherwise make pandas
            # build and de-duplicate millions of column names: minutes of CPU, then OOM.
            raise DataValidationError(
                f"header has {columns} columns (at most {MAX_COLUMNS} supported)", file=rel
            )
        try:
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
            # pandas renames a repeated name (`a`, `a.1`): read the header as written.
            names = pd.read_csv(
                io.BytesIO(data), header=None, nrows=1, dtype=str, keep_default_na=False
            ).iloc[0]
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataValidationError(f"cannot parse CSV: {exc}", file=rel) from exc
        header = [str(n) for n in names]
    else:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        try:
            frame = pq.read_table(io.BytesIO(data)).to_pandas()
        except Exception as exc:  # pyarrow raises several unrelated types for bad files
            raise DataValidationError(f"cannot read Parquet: {exc}", file=rel) from exc
        header = [str(c) for c in frame.columns]
    if frame.shape[0] == 0:
        raise DataValidationError("empty file (header but no data rows)", file=rel)
    _refuse_duplicates(rel, header)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _refuse_duplicates(rel: str, header: Sequence[str]) -> None:
    """Names equal after stripping spaces would be one feature twice (or a silent `a.1`)."""
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(header, start=1):
        if name.strip():  # empty names get distinct `Unnamed: N` names from pandas
            positions.setdefault(name.strip(), []).append(i)
    dupes = {name: at for name, at in positions.items() if len(at) > 1}
    if dupes:
        detail = "; ".join(f"{name!r} at columns {at}" for name, at in dupes.items())
        raise DataValidationError(
            f"duplicate columns in header: {detail}", file=rel, column=next(iter(dupes))
        )


def _numeric_column(values: pd.Series[Any], rel: str, kind: str, column: str) -> pd.Series[Any]:
    """Convert one feature column to float64, rejecting text, NaN and infinities."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataValidationError(
            "boolean values are not numeric features", file=rel, column=column
        )
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.astype("float64")
        missing = numbers.isna().to_numpy()
        text_bad = np.zeros(len(values), dtype=bool)
    else:
        text = values.map(lambda v: "" if v is None else str(v).strip())
        missing = (text.str.lower().isin(NA_TOKENS) | values.isna()).to_numpy()
        numbers = pd.to_numeric(text.where(~missing, "nan"), errors="coerce").astype("float64")
        text_bad = numbers.isna().to_numpy() & ~missing
    infinite = np.isinf(numbers.to_numpy())
    bad = missing | text_bad | infinite
    if bad.any():
        i = int(np.argmax(bad))
        row = i + 1
        if text_bad[i]:
            msg = f"non-numeric feature value {values.iloc[i]!r} at {_where(kind, row)}"
        elif missing[i]:
            msg = f"missing value (NaN) at {_where(kind, row)}"
        else:
            msg = f"infinite value {values.iloc[i]!r} at {_where(kind, row)}"
        raise DataValidationError(msg, file=rel, column=column, row=row)
    return numbers


def _labels(values: pd.Series[Any], rel: str, kind: str, column: str) -> pd.Series[Any]:
    import numpy as np

    text = values.map(lambda v: "" if v is None else str(v).strip())
    missing = (text.str.lower().isin(NA_TOKENS) | values.isna()).to_numpy()
    if missing.any():
        row = int(np.argmax(missing)) + 1
        raise DataValidationError(
            f"missing target value at {_where(kind, row)}", file=rel, column=column, row=row
        )
    return text


def _normalise_labels(labels: pd.Series[Any]) -> pd.Series[Any]:
    """Integer labels when every label is an integer literal, else strings."""
    import pandas as pd

    numbers = pd.to_numeric(labels, errors="coerce")
    if numbers.notna().all() and (numbers == numbers.round()).all():
        return numbers.astype("int64")
    return labels.astype(str)


def load_dataset(
    data_dir: Path | str,
    *,
    target: str = DEFAULT_TARGET,
    patterns: Sequence[str] = lineage.DEFAULT_IGNORE,
) -> Dataset:
    """Read, validate and hash every data file under ``data_dir`` (recursively)."""
    import pandas as pd

    root = Path(data_dir)
    if not root.is_dir():
        raise DataValidationError("data directory does not exist", file=str(root))
    entries: list[lineage.FileEntry] = []
    frames: list[tuple[str, str, pd.DataFrame]] = []
    try:
        for rel, _st in lineage.iter_files(root, patterns):
            kind = _is_data_file(rel)
            if kind is None:
                entries.append(lineage.FileEntry(rel, lineage.hash_file(root / rel), _st.st_size))
                continue
            data = (root / rel).read_bytes()
            entries.append(lineage.FileEntry(rel, hashlib.sha256(data).hexdigest(), len(data)))
            frames.append((rel, kind, _parse(rel, kind, data)))
    except lineage.DatasetPathError as exc:  # a name the manifest cannot hold: bad input
        raise DataValidationError(f"{root}/{exc}") from None
    manifest = lineage.build_manifest(entries)
    if not frames:
        raise DataValidationError("no CSV or Parquet files found", file=str(root))
    # Concatenate in manifest (path) order so the row order, hence the split, is stable.
    frames.sort(key=lambda f: lineage.sort_key(f[0]))

    first_rel, _, first = frames[0]
    if target not in first.columns:
        raise DataValidationError(
            "target column missing from header", file=first_rel, column=target
        )
    columns = list(first.columns)
    feature_names = tuple(c for c in columns if c != target)
    if not feature_names:
        raise DataValidationError("no feature columns besides the target", file=first_rel)

    xs: list[pd.DataFrame] = []
    ys: list[pd.Series[Any]] = []
    sources: list[SourceFile] = []
    for rel, kind, frame in frames:
        if target not in frame.columns:
            raise DataValidationError("target column missing from header", file=rel, column=target)
        cols = set(frame.columns)
        missing = [c for c in columns if c not in cols]
        extra = [c for c in frame.columns if c not in set(columns)]
        if missing or extra:
            col = missing[0] if missing else extra[0]
            raise DataValidationError(
                f"header differs from {first_rel!r}: missing {missing}, unexpected {extra}",
                file=rel,
                column=col,
            )
        xs.append(pd.DataFrame({c: _numeric_column(frame[c], rel, kind, c) for c in feature_names}))
        ys.append(_labels(frame[target], rel, kind, target))
        sources.append(SourceFile(rel, len(frame), kind))

    features = pd.concat(xs, ignore_index=True)
    labels = _normalise_labels(pd.concat(ys, ignore_index=True))
    labels.name = target
    return Dataset(features, labels, feature_names, target, tuple(sources), manifest)


def load_labelled_file(
    rel: str,
    data: bytes,
    *,
    target: str = DEFAULT_TARGET,
    features: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.Series[Any]]:
    """Validate one labelled file (e.g. live feedback) already read into ``data``.

    ``features`` are the columns a model expects (all non-target columns when None);
    other columns are ignored. Same checks and messages as :func:`load_dataset`.
    """
    import pandas as pd

    kind = _is_data_file(rel)
    if kind is None:
        raise DataValidationError("not a CSV or Parquet file", file=rel)
    frame = _parse(rel, kind, data)
    if target not in frame.columns:
        raise DataValidationError("target column missing from header", file=rel, column=target)
    wanted = (
        [c for c in frame.columns if c != target]
        if features is None
        else [str(f) for f in features]
    )
    if not wanted:
        raise DataValidationError("no feature columns besides the target", file=rel)
    missing = [c for c in wanted if c not in set(frame.columns)]
    if missing:
        raise DataValidationError(
            f"feature column missing from header (expected {wanted})", file=rel, column=missing[0]
        )
    features_frame = pd.DataFrame({c: _numeric_column(frame[c], rel, kind, c) for c in wanted})
    labels = _normalise_labels(_labels(frame[target], rel, kind, target))
    labels.name = target
    return features_frame, labels


def check_hash(dataset: Dataset, expected: str | None, data_dir: Path | str) -> None:
    """Fail unless the loaded data hashes to ``expected`` (no-op when not given)."""
    check_data_hash(dataset.data_hash, expected, data_dir)


def check_data_hash(actual: str, expected: str | None, data_dir: Path | str) -> None:
    """Fail unless ``actual`` (the data's hash now) is ``expected`` (no-op when not given)."""
    if expected is None or expected == "":
        return
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise BadInputError(f"data_hash {expected!r} is not a lowercase SHA-256 hex digest")
    if actual != expected:
        raise DataHashMismatchError(str(data_dir), expected, actual)


def regression_target(dataset: Dataset) -> pd.Series[Any]:
    """The target as float64 for a regression, or a DataValidationError naming the row."""
    import numpy as np
    import pandas as pd

    numbers = pd.to_numeric(dataset.target, errors="coerce").astype("float64")
    bad = (numbers.isna() | np.isinf(numbers)).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        rel, row = dataset.locate(i)
        raise DataValidationError(
            f"non-numeric target value {dataset.target.iloc[i]!r} for a regression at row {row}",
            file=rel,
            column=dataset.target_name,
            row=row,
        )
    numbers.name = dataset.target_name
    return numbers


def check_splittable(
    dataset: Dataset, test_size: float = DEFAULT_TEST_SIZE, task: str = "classification"
) -> None:
    """Enough classes and rows for a stratified split (a regression: enough rows and a
    numeric target), else a DataValidationError."""
    if not 0.0 < test_size < 1.0:
        raise BadInputError(f"test_size must be in (0, 1), got {test_size}")
    if task == "regression":
        regression_target(dataset)
        n, n_test = dataset.n_rows, math.ceil(test_size * dataset.n_rows)
        if n_test < 2 or n - n_test < 2:
            raise DataValidationError(
                f"too few rows to split: {n} rows, test_size {test_size} leaves "
                f"{n - n_test} train / {n_test} test rows (need >= 2 each)",
                file=", ".join(s.path for s in dataset.sources),
            )
        return
    counts = dataset.target.value_counts(sort=False)
    n_classes = len(counts)
    n = dataset.n_rows
    if n_classes < 2:
        only = counts.index[0] if n_classes else None
        raise DataValidationError(
            f"need at least 2 classes, found {n_classes} (only label {str(only)!r})",
            file=", ".join(s.path for s in dataset.sources),
            column=dataset.target_name,
        )
    rare = counts[counts < 2]
    if len(rare):
        label = rare.index[0]
        index = int((dataset.target == label).to_numpy().nonzero()[0][0])
        rel, row = dataset.locate(index)
        raise DataValidationError(
            f"too few rows to split: class {str(label)!r} has only 1 row (need >= 2 per class)",
            file=rel,
            column=dataset.target_name,
            row=row,
        )
    n_test = math.ceil(test_size * n)
    if n_test < n_classes or n - n_test < n_classes:
        raise DataValidationError(
            f"too few rows to split: {n} rows, {n_classes} classes, test_size {test_size} "
            f"leaves {n - n_test} train / {n_test} test rows (need >= {n_classes} each)",
            file=", ".join(s.path for s in dataset.sources),
            column=dataset.target_name,
        )


def split_dataset(
    dataset: Dataset,
    *,
    test_size: float = DEFAULT_TEST_SIZE,
    seed: int = DEFAULT_SEED,
    task: str = "classification",
) -> Split:
    """Seeded split, stratified for a classification; same data + seed + task gives the
    same split everywhere."""
    from sklearn.model_selection import train_test_split

    check_splittable(dataset, test_size, task)
    regression = task == "regression"
    target = regression_target(dataset) if regression else dataset.target
    x_train, x_test, y_train, y_test = train_test_split(
        dataset.features,
        target,
        test_size=test_size,
        random_state=seed,
        stratify=None if regression else target,
    )
    return Split(x_train, x_test, y_train, y_test)
