"""Your own model in the loop: import paths, entry points, check_model on broken classes.

The plugin package ``tests/plugins/genloop_demo_plugin`` declares a model family, a data
source and a metric by entry point (its ``*.dist-info/entry_points.txt``, as an installed
package would); the tests put ``tests/plugins`` on ``sys.path``.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from genloop.config import parse_config, parse_stored_config
from genloop.data import DATASETS
from genloop.errors import ConfigError, DataError
from genloop.metrics import METRICS
from genloop.models import MODELS, GenerativeModel, make_model
from genloop.models.gmm import GMMModel
from genloop.testing import CHECKS, HINTS, ModelCheckError, check_model

HERE = Path(__file__).parent
PLUGINS = HERE / "plugins"
SRC = HERE.parent / "src"
DOCS = HERE.parent / "docs" / "extending.md"


def _two_moons(rng: np.random.Generator) -> np.ndarray:
    from genloop.data import make_data

    return make_data("two_moons", noise=0.05).sample(128, rng=rng)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch):
    """tests/plugins on sys.path, registries re-reading entry points (and forgetting them after)."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    for reg in (MODELS, DATASETS, METRICS):
        reg.refresh()
    yield
    monkeypatch.undo()
    for reg in (MODELS, DATASETS, METRICS):
        reg.refresh()


@pytest.fixture
def docs_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The worked example of docs/extending.md as an importable module; returns its import path."""
    code = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)[0]
    assert 30 <= len(code.splitlines()) <= 50, "the worked example is about 40 lines"
    (tmp_path / "docs_example_models.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "docs_example_models:SmoothedGaussian"


# ---- check_model ------------------------------------------------------------------------------
def test_docs_example_passes_check_model(docs_example: str) -> None:
    report = check_model(docs_example, _two_moons, options={"rate": 0.3})
    assert report.ok and [r.name for r in report.results] == list(CHECKS)
    assert {r.name for r in report.results if r.status == "skipped"} == {"gradients"}


class NondeterministicGMM(GMMModel):
    """Broken: samples from fresh OS entropy instead of the rng argument."""

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        return super().sample(n, rng=np.random.default_rng())


class ReinitialisingGMM(GMMModel):
    """Broken: the warm start ignores init (re-initialises) while claiming to support it."""

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: Any = None) -> ReinitialisingGMM:
        return super().fit(X, rng=rng, init=None)


class CountingGaussian(GenerativeModel):
    """A Gaussian whose warm start weights the previous mean by the samples it has seen:
    μ_{t+1} = (m_t μ_t + n x̄) / (m_t + n), m_{t+1} = m_t + n (a running mean)."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: Any = None) -> CountingGaussian:
        X = np.asarray(X, dtype=np.float64)
        if not np.all(np.isfinite(X)):
            raise DataError("X contains NaN")
        n, mu = len(X), X.mean(axis=0)
        if init is not None:
            m = float(init.seen_)
            mu = (m * init.mu_ + n * mu) / (m + n)
            n = int(m + n)
        self.mu_, self.seen_, self.event_shape_ = mu, n, X.shape[1:]
        return self

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        self._check_fitted()
        return self.mu_ + self.scale * rng.standard_normal((n, self.mu_.size))

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        return {"mu": self.mu_}, {"seen": self.seen_}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.mu_, self.seen_ = np.array(arrays["mu"]), int(meta["seen"])
        self.event_shape_ = self.mu_.shape


class DroppingGaussian(CountingGaussian):
    """Broken: the state drops the sample count the warm start reads (resume restarts it at 1)."""

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        return {"mu": self.mu_}, {}

    def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.mu_, self.seen_ = np.array(arrays["mu"]), int(meta.get("seen", 1))
        self.event_shape_ = self.mu_.shape


GMM_OPTIONS = {"n_components": 3, "max_iter": 50}


def test_the_correct_counting_model_passes() -> None:
    """The control of the dropped-field case: with its whole state it passes every check."""
    assert check_model(CountingGaussian, _two_moons).ok


@pytest.mark.parametrize(("cls", "options", "check", "passing"), [
    (NondeterministicGMM, GMM_OPTIONS, "same_seed", ["fit", "sample_shape", "clone"]),
    (DroppingGaussian, {}, "save_load_continue", ["fit", "same_seed", "save_load", "warm_start_from_init"]),
    (ReinitialisingGMM, GMM_OPTIONS, "warm_start_from_init", ["fit", "same_seed", "save_load", "save_load_continue"]),
])
def test_broken_copies_fail_the_matching_check(cls: type, options: dict[str, Any], check: str, passing: list[str]) -> None:
    with pytest.raises(ModelCheckError) as info:
        check_model(cls, _two_moons, options=options, schemes=("replace",))
    report = info.value.report
    assert check in {r.name for r in report.failures}
    assert all(report.result(name).status == "passed" for name in passing), str(report)
    message = str(info.value)
    assert f"failed  {check}" in message and HINTS[check] in message
    assert message.splitlines()[0].startswith(f"model {MODELS.name_of(cls)} fails")


def test_dropped_field_also_breaks_the_resumed_loop() -> None:
    report = check_model(DroppingGaussian, _two_moons, checks=["fit", "loop_resume"], schemes=("replace",),
                         raise_on_failure=False)
    assert report.result("loop_resume").status == "failed"
    assert "replace" in report.result("loop_resume").message


def test_nan_data_without_a_library_error_fails_bad_input() -> None:
    class Careless(CountingGaussian):
        def fit(self, X: np.ndarray, *, rng: np.random.Generator, init: Any = None) -> Careless:
            X = np.asarray(X, dtype=np.float64)
            self.mu_, self.seen_, self.event_shape_ = X.mean(axis=0), len(X), X.shape[1:]
            return self

    report = check_model(Careless, _two_moons, checks=["fit", "bad_input"], raise_on_failure=False)
    assert [r.status for r in report.results] == ["passed", "failed"]
    assert "no error" in report.result("bad_input").message


def test_check_model_refuses_unknown_checks() -> None:
    with pytest.raises(ConfigError, match="unknown check"):
        check_model("gaussian", _two_moons, checks=["same_sed"])


# ---- import paths ---------------------------------------------------------------------------
def _config(model: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"data": {"name": "two_moons", "n": 64}, "model": model, "loop": {"generations": 1, "lambdas": [1]}, **more}


def test_import_path_options_are_validated_like_builtins(docs_example: str) -> None:
    cfg = parse_config(_config({"name": docs_example, "rate": "0.25"}))
    assert cfg.model.options == {"rate": "0.25"}
    assert MODELS.validate(docs_example, {"rate": "0.25"}) == {"rate": 0.25}  # coerced by the annotation
    model = make_model(docs_example, rate=0.25)
    assert type(model).__name__ == "SmoothedGaussian" and model.rate == 0.25
    with pytest.raises(ConfigError, match=r"unknown option 'rat' for model .*SmoothedGaussian.* \(known options: min_var, rate\)"):
        parse_config(_config({"name": docs_example, "rat": 0.25}))
    with pytest.raises(ConfigError, match=r"option 'rate' of model .*: Input should be a valid number"):
        parse_config(_config({"name": docs_example, "rate": "fast"}))


@pytest.mark.parametrize(("name", "message"), [
    ("no_such_pkg.models:M", "cannot import module 'no_such_pkg'"),
    ("genloop.models.no_such_module:M", "cannot import module 'genloop.models.no_such_module'"),
    ("genloop.models.gmm:NoSuchClass", "module 'genloop.models.gmm' has no attribute 'NoSuchClass'"),
    ("genloop.models.gmm:np", "is not a class or function"),
    ("genloop.data.toy:TwoMoons", "is not a model class: it must subclass genloop.GenerativeModel"),
    ("genloop.models.base:GenerativeModel", "does not implement fit, get_state, sample, set_state"),
])
def test_import_path_errors_name_the_problem(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(_config({"name": name}))


def test_data_and_metrics_by_import_path() -> None:
    doc = _config({"name": "gaussian"}, metrics=[{"name": "genloop.metrics.vector:W2", "max_exact": 100}])
    doc["data"] = {"name": "genloop.data.toy:TwoMoons", "n": 32, "noise": 0.1}
    cfg = parse_config(doc)
    assert cfg.data.name == "genloop.data.toy:TwoMoons"
    with pytest.raises(ConfigError, match="unknown option 'nois' for data set 'genloop.data.toy:TwoMoons'"):
        parse_config({**doc, "data": {"name": "genloop.data.toy:TwoMoons", "n": 32, "nois": 0.1}})
    with pytest.raises(ConfigError, match="unknown option 'max_exac' for metric 'genloop.metrics.vector:W2'"):
        parse_config({**doc, "metrics": [{"name": "genloop.metrics.vector:W2", "max_exac": 100}]})


def test_reading_a_stored_config_imports_no_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validating a stored config (check / show / report) never imports the code it names;
    validating it for a run does."""
    marker = tmp_path / "imported"
    (tmp_path / "side_effect_models.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\n"
        "from genloop.models.gaussian import GaussianModel as Model\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = _config({"name": "side_effect_models:Model", "estimator": "mle"},
                  metrics=[{"name": "side_effect_models:Metric", "k": 3}])
    doc["data"] = {"name": "side_effect_models:Data", "n": 8, "x": 1}
    cfg = parse_stored_config(doc)
    assert cfg.model.name == "side_effect_models:Model" and not marker.exists()
    assert "side_effect_models" not in sys.modules
    with pytest.raises(ConfigError, match="has no attribute 'Data'"):
        parse_config(doc)
    assert marker.exists()


# ---- entry points -----------------------------------------------------------------------------
def test_entry_points_register_families_with_their_origin(plugins: None) -> None:
    assert "shrink-gaussian" in MODELS.names() and "ring" in DATASETS.names() and "mean-radius" in METRICS.names()
    origin = MODELS.origin("shrink-gaussian")
    assert origin.kind == "entry point" and str(origin) == (
        "entry point genloop_demo_plugin:ShrinkGaussian (package genloop-demo-plugin 0.1)")
    assert str(MODELS.origin("gmm")) == "built-in genloop.models.gmm"
    model = make_model("shrink-gaussian", rate=0.25)
    assert model.name == "shrink-gaussian" and MODELS.name_of(type(model)) == "shrink-gaussian"
    with pytest.raises(ConfigError, match="unknown option 'rat' for model 'shrink-gaussian'"):
        MODELS.validate("shrink-gaussian", {"rat": 1})
    assert check_model("shrink-gaussian", _two_moons, options={"rate": 0.25}, schemes=("replace",)).ok


def test_genloop_list_shows_where_names_come_from(plugins: None, capsys: pytest.CaptureFixture[str]) -> None:
    from genloop.cli import main

    assert main(["list", "--origin"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  shrink-gaussian +entry point genloop_demo_plugin:ShrinkGaussian \(package genloop-demo-plugin 0.1\)$", out, re.MULTILINE)
    assert re.search(r"^  ring +entry point genloop_demo_plugin:Ring", out, re.MULTILINE)
    assert re.search(r"^  gmm +built-in genloop.models.gmm$", out, re.MULTILINE)
    assert main(["list"]) == 0
    assert "installed: shrink-gaussian (entry point genloop_demo_plugin:ShrinkGaussian" in capsys.readouterr().out


def _dist_info(root: Path, package: str, entry_points: str) -> None:
    info = root / f"{package.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.mark.parametrize(("clash", "other"), [
    ("shrink-gaussian", "entry point genloop_demo_plugin:ShrinkGaussian of package genloop-demo-plugin 0.1"),
    ("gmm", "built-in genloop.models.gmm"),
])
def test_a_name_clash_names_both(plugins: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clash: str, other: str) -> None:
    _dist_info(tmp_path, "other-plugin", f"[genloop.models]\n{clash} = other_plugin:Model\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    MODELS.refresh()
    with pytest.raises(ConfigError) as info:
        MODELS.names()
    message = str(info.value)
    assert f"model {clash!r} is declared twice" in message
    assert "entry point other_plugin:Model of package other-plugin 1.0" in message and other in message


# ---- genloop run with exact --resume (a new user's workflow) ---------------------------------------
#: ``python -c KILLER N args...``: genloop's CLI killed (SIGKILL) right before its N-th file replace
KILLER = """
import os, signal, sys
count = [0]
real_replace = os.replace
def replace(src, dst, *a, **k):
    count[0] += 1
    if count[0] == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst, *a, **k)
os.replace = replace
from genloop.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _genloop(args: list[str], extra_path: Path, cwd: Path, *, kill_at: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(extra_path)]), "OMP_NUM_THREADS": "1"}
    head = ["-m", "genloop.cli"] if kill_at is None else ["-c", KILLER, str(kill_at)]
    return subprocess.run([sys.executable, *head, *args], cwd=cwd, env=env, check=False,
                          capture_output=True, text=True, timeout=300)


def _artefacts(exp: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(exp.rglob("*")):
        rel = p.relative_to(exp).as_posix()
        if p.is_file() and (p.name == "metrics.jsonl" or any(f"/{d}/" in f"/{rel}" for d in ("checkpoints", "samples", "synthetic"))):
            out[rel] = p.read_bytes()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("way", ["entry-point", "import-path"])
def test_genloop_run_resumes_exactly(way: str, tmp_path: Path, docs_example: str) -> None:
    """A run killed in the middle (SIGKILL, after its first generations) and resumed with --resume
    equals the run made in one go, byte for byte — for a family from an entry point and one by
    import path (whose checkpoints name the class by that path)."""
    if way == "entry-point":
        extra, module = PLUGINS, "genloop_demo_plugin"
        doc = {"data": {"name": "ring", "n": 100, "noise": 0.2},
               "model": {"name": "shrink-gaussian", "rate": 0.5},
               "metrics": ["moments", "mean-radius"]}
    else:
        module = docs_example.split(":")[0]
        extra = Path(importlib.import_module(module).__file__).parent
        doc = {"data": {"name": "two_moons", "n": 100, "noise": 0.05},
               "model": {"name": docs_example, "rate": 0.3},
               "metrics": ["moments"]}
    doc["loop"] = {"generations": 3, "lambdas": [1, "inf"], "seeds": [0]}
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    full = _genloop(["run", str(cfg), "--out", "full", "-q"], extra, tmp_path)
    assert full.returncode == 0, full.stderr
    killed = _genloop(["run", str(cfg), "--out", "part", "-q"], extra, tmp_path, kill_at=25)
    assert killed.returncode == -9, killed.stderr
    done_before = [p.read_text().count("\n") for p in (tmp_path / "part").rglob("metrics.jsonl")]
    assert 1 <= sum(done_before) < 8, done_before  # stopped after some generations, before the end
    resumed = _genloop(["run", str(cfg), "--out", "part", "--resume", "-q"], extra, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    a, b = _artefacts(tmp_path / "full"), _artefacts(tmp_path / "part")
    assert a.keys() == b.keys() and any("gen_0003" in k or "0003" in k for k in a)
    assert [k for k in a if a[k] != b[k]] == []
    metrics = (tmp_path / "full").rglob("metrics.jsonl")
    assert all(p.read_text().count("\n") == 4 for p in metrics)  # generations 0..3
    if way == "entry-point":
        assert "mean_radius" in next((tmp_path / "full").rglob("metrics.jsonl")).read_text()
    # reading the folder back imports nothing: check, show and report in one process without
    # the model's code on the path, which has not imported it afterwards
    reader = ("import sys\nfrom genloop.cli import main\n"
              "codes = [main([c, 'full']) for c in ('check', 'show', 'report')]\n"
              "assert codes == [0, 0, 0], codes\n"
              f"assert not [m for m in sys.modules if m.startswith({module!r})]\n")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", reader], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# ---- genloop check-model ----------------------------------------------------------------------------
def test_check_model_command_names_failed_checks(docs_example: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Tried as a new user would: the documented example passes (exit 0), a class whose sampling
    ignores the seed fails (exit 1) with the check's name and its hint on one line."""
    from genloop.cli import main

    assert main(["check-model", docs_example, "--set", "rate=0.3", "--n", "128", "--schemes", "replace"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == f"{docs_example} passes the model contract (12 passed, 0 failed, 1 skipped)"
    assert "passed  save_load_continue" in out
    code = main(["check-model", "test_own_model:NondeterministicGMM", "--set", "n_components=3",
                 "--n", "128", "--checks", "fit,same_seed,save_load"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"failed  same_seed: two sample() calls with the same seed gave different samples (hint: {HINTS['same_seed']})" in out
    assert out.splitlines()[0] == "passed  fit"
    assert out.splitlines()[-1] == "test_own_model:NondeterministicGMM FAILS the model contract (1 passed, 2 failed, 0 skipped)"
