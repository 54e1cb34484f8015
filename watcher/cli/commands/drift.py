"""``watcher drift DIR``: how a data directory differs from what Production was trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from watcher.drift.stats import ColumnDrift, DriftReport


@click.command("drift")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--model", help="Registered model (default: pipeline.model_name).")
@click.option(
    "--reference",
    "reference_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Compare against this data directory instead of the Production version's profile.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def drift_cmd(
    ctx: click.Context,
    directory: Path,
    model: str | None,
    reference_dir: Path | None,
    as_json: bool,
) -> None:
    """Per-column drift of DIRECTORY against the Production model's training data.

    Numeric columns: KS test (reference <= 1,000 rows) or normalised Wasserstein
    distance; categorical ones: chi-square or Jensen-Shannon; PSI with
    drift.method = "psi". Exit 0 whether or not the data drifted (see the
    report), 1 when MLflow fails, 2 for bad input.
    """
    from watcher.extras import require

    require(["watcher drift: drift checks (pandas, scipy)"])
    from watcher.drift.check import drift_for_dataset, production_reference, profile_of_dir
    from watcher.errors import UsageError

    cfg = ctx.obj.config()
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    if reference_dir is not None:
        if not reference_dir.is_dir():
            raise UsageError(f"--reference {reference_dir}: not a directory")
        profile = profile_of_dir(reference_dir, cfg)
        label = str(reference_dir)
    else:
        name = model or cfg.pipeline.model_name
        ref = production_reference(ctx.obj.registry(), ctx.obj.models(), name)
        if ref.profile is None:
            note = ref.note or "no reference"
            if as_json:
                payload = {"data_dir": str(directory), "model": name, "version": ref.version}
                click.echo(json.dumps({**payload, "reference": None, "note": note}))
            else:
                click.echo(note)
            return
        profile = ref.profile
        label = ref.label

    report = drift_for_dataset(directory, profile, cfg, reference_label=label)
    if as_json:
        click.echo(json.dumps({"data_dir": str(directory), **report.to_dict()}))
    else:
        click.echo(render(report, directory, profile.sample_rows))


def render(report: DriftReport, directory: Path, reference_rows: int) -> str:
    """A human-readable table; one line per column, verdict last."""
    current_rows = max((c.current_rows for c in report.columns), default=0)
    short_hash = (report.data_hash or "")[:12]
    lines = [
        f"{directory} ({current_rows} rows, data_hash {short_hash}) vs {report.reference} "
        f"(sample of {reference_rows} rows)",
    ]
    width = max([len(c.name) for c in report.columns] + [6])
    lines.append(f"{'column':<{width}}  kind  {'test':<13}  {'score':>12}  {'drift if':<10}  drift")
    lines.extend(_row(c, width) for c in report.columns)
    lines.extend(
        f"{name:<{width}}  -     missing from the current data           yes"
        for name in report.missing_columns
    )
    if report.new_columns:
        lines.append("new columns (not compared): " + ", ".join(report.new_columns))
    lines.extend(f"note: {n}" for n in report.notes)
    total = len(report.columns) + len(report.missing_columns)
    verdict = "DRIFT" if report.dataset_drift else "no drift"
    lines.append(
        f"dataset: {verdict}: {len(report.drifted_columns)} of {total} columns drifted "
        f"({report.share:.0%}; dataset drift at >= {report.drift_share:.0%})"
        + (f": {', '.join(report.drifted_columns)}" if report.drifted_columns else "")
    )
    return "\n".join(lines)


def _row(c: ColumnDrift, width: int) -> str:
    if c.p_value is not None:
        score, rule = f"p={c.p_value:.4g}", f"p < {c.threshold:g}"
    else:
        score, rule = f"{c.statistic:.4f}", f">= {c.threshold:g}"
    flag = "yes" if c.drifted else "no"
    return f"{c.name:<{width}}  {c.kind:<4}  {c.test:<13}  {score:>12}  {rule:<10}  {flag}"
