"""Issue 15: data-dir edge cases a deploy tool or a careless export produces.

Duplicated CSV header columns, file names that are not UTF-8, a self-symlink with
``watch.follow_symlinks``, and a data dir that is a symlink (watched through inotify).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from pipeline.run import main as pipeline_main


def _preprocess_fails(data: Path, tmp_path: Path) -> str:
    """Run the pipeline and return its one-line error: exit 2, MLflow never touched."""
    db = tmp_path / "mlflow.db"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = pipeline_main(
            ["--data-dir", str(data), "--tracking-uri", f"sqlite:///{db}", "--promote", "always"]
        )
    assert 2 == code, err.getvalue()
    assert not db.exists(), "the pipeline reached MLflow"
    lines = err.getvalue().strip().splitlines()
    assert 1 == len(lines) and lines[0].startswith("error: "), lines
    assert "Traceback" not in err.getvalue()
    return lines[0]


# -- Duplicated header columns ------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "sepal_length,sepal_length,target",  # pandas would rename the second: sepal_length.1
        "sepal_length, sepal_length,target",  # equal after stripping (was AttributeError)
        "a,sepal_length,b, sepal_length ,target",
    ],
)
def test_duplicate_header_columns_are_refused_naming_file_and_column(
    header: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    width = header.count(",") + 1
    rows = "".join(",".join(["1"] * (width - 1) + [str(i % 2)]) + "\n" for i in range(8))
    (data / "iris.csv").write_text(header + "\n" + rows)
    message = _preprocess_fails(data, tmp_path)
    assert "iris.csv" in message and "sepal_length" in message and "duplicate" in message
