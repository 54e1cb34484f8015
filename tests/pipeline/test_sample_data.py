"""pipeline.sample_data: the committed example is sklearn's iris; variants do what they say."""

from __future__ import annotations

from pathlib import Path

from pipeline import sample_data
from tests.pipeline.conftest import EXAMPLE_DATA


def test_example_csv_is_reproducible(tmp_path: Path) -> None:
    """examples/data/iris.csv is byte-identical to a fresh `sample_data iris` from sklearn."""
    assert 0 == sample_data.main(["iris", str(tmp_path / "iris.csv")])
    assert (EXAMPLE_DATA / "iris.csv").read_bytes() == (tmp_path / "iris.csv").read_bytes()


def test_shift_and_noise_variants(tmp_path: Path) -> None:
    """shift adds delta to one column only; noise changes the requested share of labels."""
    table = sample_data.iris_table()
    header, rows = table
    i = header.index("petal_length")
    _, shifted = sample_data.shift(table, "petal_length", 1.5)
    assert all(
        abs(float(s[i]) - float(r[i]) - 1.5) < 1e-9 for s, r in zip(shifted, rows, strict=True)
    )
    assert [r[:i] for r in rows] == [s[:i] for s in shifted]
    _, noisy = sample_data.label_noise(table, 0.4, seed=1)
    changed = sum(a[-1] != b[-1] for a, b in zip(rows, noisy, strict=True))
    assert 60 == changed
    out = tmp_path / "noisy.csv"
    assert 0 == sample_data.main(
        ["noise", str(EXAMPLE_DATA / "iris.csv"), str(out), "--fraction", "0.4", "--seed", "1"]
    )
    assert (header, noisy) == sample_data.read_csv(out)
