"""The lean install (the daemon alone, no extras) against the full venv of `make sync`.

    python benchmarks/lean_install.py [--runs 3] [--settle 10] [--json PATH]

Builds two fresh venvs from uv's cache, bytecode compiled as `make sync` does: the lean
one (the built wheel plus uv.lock's base dependencies: `build_lean_venv`, shared with
tests/lean) and the full one (`uv sync --locked --all-extras --all-groups`). Per venv:
installed size (du), files, top-level entries of site-packages; then `watcher run`
against a real `mlflow server` with the command backend (benchmarks/start.py's
``one_start``, alternating lean and full): time to READY=1 and RSS at READY=1 and
``--settle`` s later. Each lean figure's anchor is the full venv's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.mlflow_server import start_server, stop_server
from benchmarks.report import Report, add_json_arg
from benchmarks.start import one_start

REPO = Path(__file__).resolve().parents[1]


def find_uv() -> str:
    """uv: $UV (set by `uv run`, so by `make`), else on PATH, else the Makefile's."""
    for candidate in (
        os.environ.get("UV"),
        shutil.which("uv"),
        str(Path.home() / ".local/bin/uv"),
        str(REPO / ".tools/uv-venv/bin/uv"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    raise SystemExit("no uv: run through make (it bootstraps uv) or put uv on PATH")


def clean_env() -> dict[str, str]:
    """An environment with nothing of the calling venv, checkout or watcher config."""
    drop = ("WATCHER_", "VIRTUAL_ENV", "PYTHONPATH", "MLFLOW_TRACKING_URI", "UV_PROJECT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "MLFLOW_CONFIGURE_LOGGING": "false", "UV_LINK_MODE": "hardlink"}


def uv(*args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    """uv ARGS from its cache (--offline); online only when the cache lacks something."""
    for offline in (["--offline"], []):
        done = subprocess.run(
            [find_uv(), *args, *offline],
            cwd=cwd,
            env=env or clean_env(),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode == 0:
            return
        if "network" not in done.stderr and "offline" not in done.stderr:
            break
    raise RuntimeError(f"uv {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}")


def build_lean_venv(root: Path, *, compile_bytecode: bool = False) -> Path:
    """``root/venv``: the wheel built from this checkout and the locked versions of its
    base dependencies (no extras, no dev group); `uv pip check` proves the wheel's own
    requirements are met by that set."""
    uv("build", "--wheel", "--out-dir", str(root / "dist"), str(REPO), cwd=root)
    (wheel,) = (root / "dist").glob("registry_watcher-*.whl")
    lock = root / "pylock.toml"
    uv("export", "--locked", "--no-dev", "--no-emit-project", "--format", "pylock.toml",
       "--quiet", "-o", str(lock), cwd=REPO)  # fmt: skip
    venv = root / "venv"
    uv("venv", "--python", sys.executable, str(venv), cwd=root)
    python = ["--python", str(venv / "bin/python")]
    compiled = ["--compile-bytecode"] if compile_bytecode else []
    uv("pip", "install", *python, *compiled, "-r", str(lock), cwd=root)
    uv("pip", "install", *python, *compiled, "--no-deps", str(wheel), cwd=root)
    uv("pip", "check", *python, cwd=root)
    return venv


def build_full_venv(root: Path) -> Path:
    """``root/full``: what `make sync` installs (every extra and group), compiled."""
    venv = root / "full"
    env = {**clean_env(), "UV_PROJECT_ENVIRONMENT": str(venv)}
    uv("sync", "--locked", "--all-extras", "--all-groups", "--compile-bytecode", cwd=REPO, env=env)
    return venv


def footprint(venv: Path) -> dict[str, float]:
    """MiB on disk (du: hardlinks to uv's cache counted once), files, top-level entries."""
    du = subprocess.run(["du", "-sk", str(venv)], capture_output=True, text=True, check=True)
    files = sum(len(names) for _, _, names in os.walk(venv))
    (site,) = venv.glob("lib/python3.*/site-packages")
    return {
        "size_mib": int(du.stdout.split()[0]) / 1024,
        "files": files,
        "entries": sum(1 for _ in site.iterdir()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0)
    add_json_arg(parser)
    args = parser.parse_args()
    report = Report("lean_install", vars(args))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        venvs = {
            "lean": build_lean_venv(root, compile_bytecode=True),
            "full": build_full_venv(root),
        }
        sizes = {name: footprint(venv) for name, venv in venvs.items()}
        server, url = start_server(root)
        samples: dict[str, list[float]] = {}
        try:
            for i in range(args.runs):
                for name, venv in venvs.items():
                    run_dir = root / f"{name}-{i}"
                    run_dir.mkdir()
                    watcher = str(venv / "bin/watcher")
                    result = one_start(run_dir, args.settle, url, watcher=watcher, drift=False)
                    for key, value in result.items():
                        samples.setdefault(f"{name}.{key}", []).append(value)
        finally:
            stop_server(server)
    med = {k: statistics.median(v) for k, v in samples.items()}
    for label, key, unit in (
        ("installed size", "size_mib", "MiB"),
        ("installed files", "files", "files"),
        ("site-packages entries", "entries", "entries"),
    ):
        report.add(f"{label}, lean", sizes["lean"][key], unit,
                   anchor_name="full", anchor=sizes["full"][key])  # fmt: skip
    for label, key, unit in (
        ("time to READY=1", "ready_s", "s"),
        ("RSS at READY=1", "rss_ready_mib", "MiB"),
        ("idle RSS", "rss_steady_mib", "MiB"),
    ):
        report.add(f"{label}, lean", med[f"lean.{key}"], unit,
                   anchor_name="full", anchor=med[f"full.{key}"])  # fmt: skip
    sys.exit(report.finish(args.json))


if __name__ == "__main__":
    main()
