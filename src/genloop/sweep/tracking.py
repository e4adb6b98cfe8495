"""Optional MLflow tracking of runs (``--track mlflow`` or ``tracking: {backend: mlflow}``).

Each run of an experiment is one MLflow run in one MLflow experiment (named after the
output folder unless ``tracking.experiment`` says otherwise): its parameters are the resolved
config flattened to dotted keys (plus ``lam``, ``seed`` and, in grids, ``cell``), its metrics
are logged per generation with ``step = generation``, and at the end its artifacts are the
last checkpoint, the sample grids or scatter plots and the training-loss tables. The MLflow
run id is kept in the run folder (``tracking.json``), so a resumed run continues the same
MLflow run and logs only the generations it has not logged yet.

The default tracking URI is a file store ``OUT/mlruns`` (MLflow keeps that backend in
maintenance mode and asks for an opt-in, which genloop gives for a ``file:`` URI it chose or
was given); any other URI (``sqlite:///…``, ``http://…``) is passed to MLflow as it is.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genloop import _json as strict_json
from genloop._fs import atomic_write_text
from genloop.errors import ConfigError

if TYPE_CHECKING:
    from genloop.config import RunConfig
    from genloop.sweep.spec import RunSpec

log = logging.getLogger(__name__)

STATE_FILE = "tracking.json"


def flatten(doc: Any, prefix: str = "") -> dict[str, str]:
    """``{"model": {"name": "gmm"}}`` -> ``{"model.name": "gmm"}`` (values as strings)."""
    if isinstance(doc, dict):
        out: dict[str, str] = {}
        for key, value in doc.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(doc) if isinstance(doc, (list, tuple)) else str(doc)}


class MlflowTracker:
    """Logs one genloop run to MLflow (see the module docs)."""

    def __init__(self, cfg: RunConfig, spec: RunSpec) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError("--track mlflow needs MLflow: pip install mlflow-skinny (or mlflow)") from None
        self.spec = spec
        experiment_dir = spec.path.parent.parent if not spec.cell else spec.path.parent.parent.parent
        uri = cfg.tracking.uri or (experiment_dir / "mlruns").resolve().as_uri()
        if uri.startswith("file:") or "://" not in uri:  # a file store (a file: URI or a plain path)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        # a server that stops answering mid-run: a bounded wait, not MLflow's minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        try:
            self.client = MlflowClient(tracking_uri=uri)
            name = cfg.tracking.experiment or experiment_dir.resolve().name
            found = self.client.get_experiment_by_name(name)
            self.experiment_id = found.experiment_id if found is not None else self.client.create_experiment(name)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for a store it cannot use
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"MLflow tracking at {uri!r} failed: {first}") from None
        self.state_path = spec.path / STATE_FILE
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.logged_through = int(state.get("logged_through", -1))
        if state.get("run_id"):
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            params = {**flatten(cfg.resolved()), "lam": str(spec.lam), "seed": str(spec.seed)}
            if spec.cell:
                params["cell"] = spec.cell
            run = self.client.create_run(self.experiment_id, run_name=spec.label,
                                         tags={"genloop.run_folder": str(spec.path.resolve())})
            self.run_id = run.info.run_id
            from mlflow.entities import Param

            items = [Param(k[:250], v[:6000]) for k, v in sorted(params.items())]
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(self.run_id, params=items[i:i + 100])
            self._save()

    def _save(self) -> None:
        atomic_write_text(self.state_path, strict_json.dumps({"run_id": self.run_id, "logged_through": self.logged_through}))

    def log_generation(self, generation: int, metrics: dict[str, float]) -> None:
        """Log one generation's metrics at ``step = generation`` (once per generation)."""
        if generation <= self.logged_through:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, generation) for key, value in metrics.items()
                 if isinstance(value, (int, float)) and math.isfinite(value)]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)
        self.logged_through = generation
        self._save()

    def finish(self, run_folder: Path, last_generation: int, *, status: str = "FINISHED") -> None:
        """Attach the artifacts and close the MLflow run."""
        ckpt = run_folder / "checkpoints" / f"gen_{last_generation:04d}"
        if ckpt.is_dir():
            self.client.log_artifacts(self.run_id, str(ckpt), artifact_path="checkpoint")
        for sub in ("grids", "losses"):
            if (run_folder / sub).is_dir():
                self.client.log_artifacts(self.run_id, str(run_folder / sub), artifact_path=sub)
        self.client.set_terminated(self.run_id, status=status)
