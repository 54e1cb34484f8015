"""Quality gate: ``python -m pipeline.validate --model NAME --version V --threshold 0.9``.

Reads the metric (default ``accuracy``) of a model version's source run, or of a
run given by ``--run-id``, and compares it with the threshold in the metric's
direction (``pipeline.metrics``): ``--metric rmse --threshold 40`` passes at or below 40.
Exit 0 when it passes, 1 when not, 2 on bad input (unknown model/version/run/metric);
a backend failure (MLflow unreachable) is also exit 1, with a different message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline import tracking
from pipeline.errors import BackendError, BadInputError, SettingError
from pipeline.metrics import METRICS, gate_threshold

DEFAULT_METRIC = "accuracy"
EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class GateResult:
    subject: str  # "model NAME version V (run R)" or "run R"
    metric: str
    value: float
    threshold: float

    @property
    def passed(self) -> bool:
        return METRICS[self.metric].passes(self.value, self.threshold)

    def line(self) -> str:
        symbol = METRICS[self.metric].symbol()
        verdict, op = ("PASS", symbol) if self.passed else ("FAIL", f"not {symbol}")
        return (
            f"{verdict} {self.metric}={self.value:.4f} {op} threshold={self.threshold:.4f} "
            f"({self.subject})"
        )


def _run_metric(run_id: str, metric: str, tracking_uri: str | None) -> float:
    client = tracking.client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        raise tracking.translate(exc, f"run {run_id!r}") from exc
    if metric not in run.data.metrics:
        raise BadInputError(f"run {run_id!r} has no metric {metric!r}")
    return float(run.data.metrics[metric])


def gate(
    *,
    threshold: float | None = None,
    model: str | None = None,
    version: str | None = None,
    alias: str | None = None,
    run_id: str | None = None,
    metric: str = DEFAULT_METRIC,
    tracking_uri: str | None = None,
) -> GateResult:
    """Look the metric up and compare; raises BadInputError/BackendError.

    The metric and threshold are settled by the catalogue first, before any MLflow
    call: a known metric, a finite threshold in its range, the default only where the
    metric has one (a SettingError naming ``metric`` or ``threshold`` otherwise).
    """
    threshold = gate_threshold(metric, threshold)
    if run_id:
        if model or version or alias:
            raise BadInputError("give either --run-id or --model with --version/--alias")
        return GateResult(
            f"run {run_id}", metric, _run_metric(run_id, metric, tracking_uri), threshold
        )
    if not model or bool(version) == bool(alias):
        raise BadInputError("give --model NAME with exactly one of --version V / --alias A")
    client = tracking.client(tracking_uri)
    what = f"model {model!r} version {version!r}" if version else f"model {model!r} alias {alias!r}"
    try:
        if version:
            if not version.isdigit():
                raise BadInputError(f"version must be a positive integer, got {version!r}")
            mv = client.get_model_version(model, version)
        else:
            mv = client.get_model_version_by_alias(model, str(alias))
    except BadInputError:
        raise
    except Exception as exc:
        raise tracking.translate(exc, what) from exc
    subject = f"model {model} version {mv.version}"
    if mv.run_id:
        value = _run_metric(mv.run_id, metric, tracking_uri)
        subject += f", run {mv.run_id}"
    elif metric in (mv.tags or {}):
        value = float(mv.tags[metric])
    else:
        raise BadInputError(f"{what} has no source run and no {metric!r} tag")
    return GateResult(subject, metric, value, threshold)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.validate",
        description="Fail when a metric misses its threshold (in the metric's direction).",
    )
    p.add_argument("--model", help="registered model name")
    p.add_argument("--version", help="model version number")
    p.add_argument("--alias", help="model alias instead of --version (e.g. production)")
    p.add_argument("--run-id", help="an MLflow run id instead of a model version")
    p.add_argument("--metric", default=DEFAULT_METRIC, help="default: accuracy")
    p.add_argument(
        "--threshold",
        type=float,
        help="passes at or above it (accuracy), at or below it (rmse); default 0.9 for "
        "accuracy and f1_score, required for the others",
    )
    p.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tracking.small_retry_budget()
    try:
        result = gate(
            threshold=args.threshold,
            model=args.model,
            version=args.version,
            alias=args.alias,
            run_id=args.run_id,
            metric=args.metric,
            tracking_uri=args.tracking_uri,
        )
    except SettingError as exc:  # named as the option the user typed
        sys.stderr.write(f"error: --{exc.key}: {exc.detail}\n")
        return EXIT_BAD_INPUT
    except BadInputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    except BackendError as exc:
        sys.stderr.write(f"error: backend failure: {exc}\n")
        return EXIT_FAIL
    sys.stdout.write(result.line() + "\n")
    return EXIT_PASS if result.passed else EXIT_FAIL


if __name__ == "__main__":
    raise SystemExit(main())
