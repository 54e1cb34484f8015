"""Load, scaled down: 20,000 files hashed first cold, then incrementally, in bounded memory.

The full-size figures (100,000 files, a 50,000-event burst) come from benchmarks/load.py;
the 10,000-file event burst is tests/data/test_datawatch.py
test_burst_of_10000_files_is_one_trigger.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from benchmarks.load import write_files
from watcher.data.hashing import IncrementalHasher
from watcher.runtime.state import open_state

FILES = 20_000


@pytest.mark.slow
def test_20000_files_first_then_incremental_in_bounded_memory(tmp_path: Path) -> None:
    """Cold scan reads all 20,000 files; after one change the next scan reads exactly one;
    Python-level peak memory of either scan stays under 2 KiB per file (40 MiB; ~1.5 KiB
    measured cold): linear in the tree, no per-event or per-scan leak."""
    data = tmp_path / "data"
    data.mkdir()
    write_files(data, FILES, "f")
    time.sleep(2.1)  # older than the racy-clean window, as data that has sat a while
    state = open_state(tmp_path / "state")
    try:
        tracemalloc.start()
        try:
            first = IncrementalHasher(data, state, patterns=(), progress=False).scan()
            _, first_peak = tracemalloc.get_traced_memory()
            first_counts = (first.hashed_files, first.cached_files)
            first_hash = first.manifest.dataset_hash
            del first  # measure the second scan alone, not what the first still holds
            (data / "f000007.csv").write_text("a,target\n7,0\n8,1\n")
            time.sleep(2.1)  # past the racy-clean window
            tracemalloc.reset_peak()
            baseline, _ = tracemalloc.get_traced_memory()
            again = IncrementalHasher(data, state, patterns=(), progress=False).scan()
            _, again_peak = tracemalloc.get_traced_memory()
            again_peak -= baseline
        finally:
            tracemalloc.stop()
    finally:
        state.close()
    assert (FILES, 0) == first_counts
    assert (1, FILES - 1) == (again.hashed_files, again.cached_files)
    assert first_hash != again.manifest.dataset_hash
    assert first_peak < FILES * 2048, f"cold scan peak {first_peak / 2**20:.1f} MiB"
    assert again_peak < FILES * 2048, f"incremental scan peak {again_peak / 2**20:.1f} MiB"
