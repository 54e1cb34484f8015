"""Sample data for demos and tests: iris from scikit-learn (no download) and variants.

python -m pipeline.sample_data iris examples/data/iris.csv
python -m pipeline.sample_data shift IN.csv OUT.csv --column petal_length --delta 1.5
python -m pipeline.sample_data noise IN.csv OUT.csv --fraction 0.5 --seed 7
python -m pipeline.sample_data corrupt nan OUT_DIR
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
TARGET = "target"
Row = list[str]
Table = tuple[Row, list[Row]]  # header, rows


def iris_table() -> Table:
    """The 150-row iris set as text cells, feature columns + integer ``target``."""
    from sklearn.datasets import load_iris

    bunch = load_iris()
    rows = [
        [repr(float(v)) for v in features] + [str(int(label))]
        for features, label in zip(bunch.data, bunch.target, strict=True)
    ]
    return [*FEATURES, TARGET], rows


def write_csv(path: Path | str, table: Table) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header, rows = table
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path | str) -> Table:
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [list(r) for r in reader]


def shift(table: Table, column: str, delta: float) -> Table:
    """Add ``delta`` to one feature column (covariate shift for drift demos)."""
    header, rows = table
    i = header.index(column)
    return header, [[*r[:i], repr(round(float(r[i]) + delta, 6)), *r[i + 1 :]] for r in rows]


def label_noise(table: Table, fraction: float, seed: int = 0) -> Table:
    """Replace the label of ``fraction`` of the rows with a different class (seeded)."""
    header, rows = table
    t = header.index(TARGET)
    labels = sorted({r[t] for r in rows})
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not crypto
    picked = set(rng.sample(range(len(rows)), round(fraction * len(rows))))
    out: list[Row] = []
    for n, row in enumerate(rows):
        label = rng.choice([lab for lab in labels if lab != row[t]]) if n in picked else row[t]
        out.append([*row[:t], label, *row[t + 1 :]])
    return header, out


def _set_cell(table: Table, row: int, column: str, value: str) -> Table:
    header, rows = table
    rows = [list(r) for r in rows]
    rows[row][header.index(column)] = value
    return header, rows


def _drop_column(table: Table, column: str) -> Table:
    header, rows = table
    i = header.index(column)
    return [h for h in header if h != column], [r[:i] + r[i + 1 :] for r in rows]


def _write_raw(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _corrupt_pair(out: Path, second: Table) -> None:
    header, rows = iris_table()
    write_csv(out / "a.csv", (header, rows[::2]))
    write_csv(out / "b.csv", second)


def _header_mismatch(out: Path) -> None:
    header, rows = iris_table()
    _corrupt_pair(out, _drop_column((header, rows[1::2]), "petal_width"))


def _second_empty(out: Path) -> None:
    write_csv(out / "a.csv", iris_table())
    _write_raw(out / "b.csv", "")


# Each corruption writes a data dir that pipeline.data must reject, naming file and column.
CORRUPTIONS: dict[str, Callable[[Path], object]] = {
    "missing_target": lambda out: write_csv(out / "iris.csv", _drop_column(iris_table(), TARGET)),
    "non_numeric": lambda out: write_csv(
        out / "iris.csv", _set_cell(iris_table(), 41, "sepal_width", "abc")
    ),
    "nan": lambda out: write_csv(out / "iris.csv", _set_cell(iris_table(), 7, "petal_length", "")),
    "inf": lambda out: write_csv(
        out / "iris.csv", _set_cell(iris_table(), 99, "petal_width", "inf")
    ),
    "missing_label": lambda out: write_csv(
        out / "iris.csv", _set_cell(iris_table(), 12, TARGET, "")
    ),
    "empty": _second_empty,
    "header_only": lambda out: _write_raw(out / "iris.csv", ",".join([*FEATURES, TARGET]) + "\n"),
    "header_mismatch": _header_mismatch,
    "single_class": lambda out: write_csv(
        out / "iris.csv", (iris_table()[0], [r for r in iris_table()[1] if r[-1] == "0"])
    ),
    "few_rows": lambda out: write_csv(
        out / "iris.csv", (iris_table()[0], [iris_table()[1][i] for i in (0, 1, 50, 100)])
    ),
}


def corrupt(kind: str, out_dir: Path | str) -> Path:
    """Write a corrupted iris data dir of the given ``kind`` (see ``CORRUPTIONS``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    CORRUPTIONS[kind](out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.sample_data", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("iris", help="write the iris CSV")
    p.add_argument("out")
    p = sub.add_parser("shift", help="add DELTA to one feature column")
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--column", default="petal_length", choices=FEATURES)
    p.add_argument("--delta", type=float, default=1.0)
    p = sub.add_parser("noise", help="flip a fraction of the labels")
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("corrupt", help="write a bad data dir")
    p.add_argument("kind", choices=sorted(CORRUPTIONS))
    p.add_argument("out_dir")
    args = parser.parse_args(argv)
    if args.cmd == "iris":
        path = write_csv(args.out, iris_table())
    elif args.cmd == "shift":
        path = write_csv(args.out, shift(read_csv(args.src), args.column, args.delta))
    elif args.cmd == "noise":
        path = write_csv(args.out, label_noise(read_csv(args.src), args.fraction, args.seed))
    else:
        path = corrupt(args.kind, args.out_dir)
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
