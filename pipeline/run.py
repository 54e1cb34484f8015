"""Run the whole pipeline without Airflow: preprocess -> train -> register -> validate.

    python -m pipeline.run --data-dir examples/data [--data-hash H] [--promote if_better]

Honours MLFLOW_TRACKING_URI. The last stdout line is a JSON summary (run_id,
version, promoted, accuracy, data_hash, ...) for the watcher's ``local`` trigger.
Exit codes: 0 done (a model below the gate is registered but not promoted;
see ``gate_passed``), 2 bad data or input (nothing registered), 1 backend failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pipeline import steps
from pipeline.config import DEFAULT_MODEL_NAME, from_conf
from pipeline.errors import BackendError, BadInputError, DataValidationError
from pipeline.metrics import METRICS, TASKS
from pipeline.register import PROMOTE_RULES, REGISTRY_MODES

EXIT_OK, EXIT_BACKEND, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.run", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", help="training data directory (default: WATCHER_DATA_DIR)")
    p.add_argument("--data-hash", help="fail unless the data still hashes to this")
    p.add_argument("--target", help="label column (default: target)")
    p.add_argument("--model-name", help=f"registered model (default: {DEFAULT_MODEL_NAME})")
    p.add_argument("--registry-mode", choices=REGISTRY_MODES)
    p.add_argument("--promote", choices=PROMOTE_RULES)
    p.add_argument("--estimator", help="import path of an estimator class or factory")
    p.add_argument("--params", help="the estimator's keyword arguments as a JSON object")
    p.add_argument("--task", choices=TASKS, help="default: inferred")
    p.add_argument("--metric", choices=sorted(METRICS), help="the gate metric")
    p.add_argument("--threshold", type=float, help="the gate (default 0.9 for accuracy)")
    p.add_argument("--n-estimators", type=int, help="the default RandomForest's")
    p.add_argument("--max-depth", type=int, help="the default RandomForest's")
    p.add_argument("--random-state", type=int)
    p.add_argument("--test-size", type=float)
    p.add_argument("--experiment")
    p.add_argument("--dag-run-id", help="recorded as the run's dag_run_id tag")
    p.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI")
    p.add_argument("--conf", help="a run conf as a JSON object (as the DAG receives it); flags win")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline import tracking

    args = build_parser().parse_args(argv)
    tracking.small_retry_budget()
    flags = {k: v for k, v in vars(args).items() if v is not None and k != "conf"}
    try:
        extra = json.loads(args.conf) if args.conf else {}
        if not isinstance(extra, dict):
            raise BadInputError("--conf: expected a JSON object")
    except json.JSONDecodeError as exc:
        sys.stderr.write(f"error: --conf: not JSON: {exc}\n")
        return EXIT_BAD_INPUT
    except BadInputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    conf = {**extra, **flags}
    try:
        state = steps.preprocess(from_conf(conf))
        state = steps.train(state)
        state = steps.register(state)
        state = steps.validate(state, fail_below=False)
    except (DataValidationError, BadInputError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    except BackendError as exc:
        sys.stderr.write(f"error: backend failure: {exc}\n")
        return EXIT_BACKEND
    except Exception as exc:  # MLflow/network errors surface as many types; one line, exit 1
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        sys.stderr.write(f"error: backend failure: {type(exc).__name__}: {first}\n")
        return EXIT_BACKEND
    sys.stdout.write(json.dumps(steps.summary(state), sort_keys=True) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
