"""Every kind of bad input: exit code 2, one message naming the problem, no traceback, and
nothing written to disk (so a corrected rerun needs no --resume).

Each case is a function of the test's folder that returns the command line and the message
the error must contain. The table covers what a new user and an adversarial one were seen to
try; add a case here for every new kind of bad input.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml

from genloop.cli import main

GOOD = {
    "data": {"name": "two_moons", "n": 100, "noise": 0.05},
    "model": {"name": "gmm", "n_components": 2, "max_iter": 20},
    "loop": {"generations": 1, "lambdas": [0, 0.5], "seeds": [0]},
    "metrics": ["w2"],
}


def cfg(**changes: object) -> dict:
    """GOOD with dotted keys changed (``KeyError`` as a value deletes the key)."""
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    for path, value in changes.items():
        node = doc
        keys = path.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return doc


def write(folder: Path, doc: object, name: str = "cfg.yaml") -> str:
    path = folder / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def npy(folder: Path, arr: np.ndarray, name: str = "data.npy") -> str:
    path = folder / name
    np.save(path, arr)
    return str(path)


Case = Callable[[Path], tuple[list[str], str]]


def _run(folder: Path, doc: object, *extra: str) -> list[str]:
    return ["run", write(folder, doc), "--out", str(folder / "out"), *extra]


def _truncated_npy(folder: Path) -> str:
    path = Path(npy(folder, np.zeros((1000, 2))))
    path.write_bytes(path.read_bytes()[:400])  # the header still claims 1000 rows
    return str(path)


def _npy_cfg(folder: Path, path: str, **changes: object) -> dict:
    return cfg(data={"name": "npy", "path": path, "n": 50}, **changes)


CASES: dict[str, Case] = {
    # -- files -----------------------------------------------------------------------------------
    "config missing": lambda f: (["run", str(f / "nope.yaml"), "--out", str(f / "out")], "config file not found"),
    "config is a folder": lambda f: (["run", str(f), "--out", str(f / "out")], "not a regular file"),
    "config not UTF-8": lambda f: (["run", _latin1(f), "--out", str(f / "out")], "not UTF-8"),
    "config not YAML": lambda f: (_run(f, "data: [unclosed"), "not valid YAML"),
    "config duplicate key": lambda f: (_run(f, yaml.safe_dump(GOOD) + "metrics: [mmd]\n"), "duplicate key 'metrics'"),
    "config is a list with --set": lambda f: (_run(f, "- a\n- b\n", "--set", "loop.generations=2"), "must be a mapping"),
    "data file missing": lambda f: (_run(f, _npy_cfg(f, str(f / "none.npy"))), "not found"),
    "npy header claims more rows": lambda f: (_run(f, _npy_cfg(f, _truncated_npy(f))), "cannot be read"),
    "npy complex": lambda f: (_run(f, _npy_cfg(f, npy(f, np.ones((80, 2)) * (1 + 1j)))), "complex-valued"),
    "npy object": lambda f: (_run(f, _npy_cfg(f, _object_npy(f))), "cannot be read"),
    # -- output folder -----------------------------------------------------------------------------
    "out is a file": lambda f: (["run", write(f, GOOD), "--out", write(f, "x", "file.txt")], "is a file"),
    "out below a file": lambda f: (["run", write(f, GOOD), "--out", write(f, "x", "file.txt") + "/sub"], "which is a file"),
    "out is /dev/null": lambda f: (["run", write(f, GOOD), "--out", "/dev/null"], "is a file"),
    "name escapes runs/": lambda f: (["run", write(f, cfg(name="../../x"))], "plain folder name"),
    "name absolute": lambda f: (["run", write(f, cfg(name="/tmp/x"))], "plain folder name"),
    # -- values --------------------------------------------------------------------------------------
    "generations bool": lambda f: (_run(f, cfg(loop__generations=True)), "not a boolean"),
    "generations negative": lambda f: (_run(f, cfg(loop__generations=-1)), "loop.generations"),
    "generations fractional": lambda f: (_run(f, cfg(loop__generations=2.5)), "whole number"),
    "seed negative": lambda f: (_run(f, cfg(loop__seeds=[-1])), "loop.seeds"),
    "seeds duplicate": lambda f: (_run(f, cfg(loop__seeds=[1, 1])), "listed twice"),
    "lambdas duplicate": lambda f: (_run(f, cfg(loop__lambdas=[0.5, 0.5])), "listed twice"),
    "lambdas 1 and 1.0": lambda f: (_run(f, cfg(loop__lambdas=[1, 1.0])), "listed twice"),
    "lambdas inf twice": lambda f: (_run(f, cfg(loop__lambdas=["inf", "fully-synthetic"])), "listed twice"),
    "lambda negative": lambda f: (_run(f, cfg(loop__lambdas=[-0.5])), "lambda must be >= 0"),
    "lambda word": lambda f: (_run(f, cfg(loop__lambdas=["half"])), "lambda must be a number"),
    "n_eval fractional": lambda f: (_run(f, cfg(loop__n_eval=2.5)), "whole number"),
    "unknown key": lambda f: (_run(f, cfg(loop__generation=3)), "unknown key 'loop.generation'"),
    "unknown model": lambda f: (_run(f, cfg(model={"name": "vae"})), "unknown model 'vae'"),
    "unknown metric option": lambda f: (_run(f, cfg(metrics=[{"name": "w2", "maxexact": 3}])), "unknown option 'maxexact'"),
    "keep_checkpoints every 0": lambda f: (_run(f, cfg(output={"keep_checkpoints": {"every": 0}})),
                                         "must be all, last or {every: k}"),
    "keep_checkpoints unknown word": lambda f: (_run(f, cfg(output={"keep_checkpoints": "sometimes"})),
                                              "must be all, last or {every: k}"),
    "edm augment unknown word": lambda f: (_run(f, cfg(data={"name": "digits_images", "n": 100},
                                                       model={"name": "edm", "augment": "sometimes"}, metrics=[])),
                                           "should be 'auto' or 'off'"),
    "hf lm mask_special not a boolean": lambda f: (_run(f, cfg(model={"name": "hf-causal-lm", "mask_special": "maybe"})),
                                                   "mask_special"),
    "flow sampled in bfloat16": lambda f: (_run(f, cfg(model={"name": "flow", "train": {"sample_precision": "bfloat16"}})),
                                           "not available for flows"),
    "sample_compile not a boolean": lambda f: (_run(f, cfg(model={"name": "edm", "train": {"sample_compile": "maybe"}})),
                                               "sample_compile"),
    "sample_precision unknown": lambda f: (_run(f, cfg(model={"name": "edm", "train": {"sample_precision": "fp8"}})),
                                           "sample_precision"),
    "checkpoints every k on a mixture": lambda f: (_run(f, cfg(output={"checkpoints": {"every": 2}},
                                                               loop__variant={"kind": "mixture"})), "needs output.checkpoints: all"),
    # -- code named by import path (docs/extending.md) ------------------------------------------
    "model module missing": lambda f: (_run(f, cfg(model={"name": "no_such_pkg.models:Model"})),
                                       "cannot import module 'no_such_pkg'"),
    "model class missing": lambda f: (_run(f, cfg(model={"name": "genloop.models.gmm:NoSuchModel"})),
                                      "module 'genloop.models.gmm' has no attribute 'NoSuchModel'"),
    "model path not a model": lambda f: (_run(f, cfg(model={"name": "genloop.data.toy:TwoMoons"})),
                                         "must subclass genloop.GenerativeModel"),
    "model path option misspelt": lambda f: (_run(f, cfg(model={"name": "genloop.models.gmm:GMMModel", "n_component": 2})),
                                             "unknown option 'n_component' for model 'genloop.models.gmm:GMMModel'"),
    "model path malformed": lambda f: (_run(f, cfg(model={"name": "genloop.models.gmm:"})), "unknown model 'genloop.models.gmm:'"),
    "data module missing": lambda f: (_run(f, cfg(data={"name": "no_such_pkg:Data", "n": 10})),
                                      "data set 'no_such_pkg:Data': cannot import module 'no_such_pkg'"),
    "metric class missing": lambda f: (_run(f, cfg(metrics=["genloop.metrics.vector:NoMetric"])),
                                       "module 'genloop.metrics.vector' has no attribute 'NoMetric'"),
    "check-model unknown check": lambda f: (["check-model", "gmm", "--checks", "same_sed"], "unknown check(s) same_sed"),
    "check-model module missing": lambda f: (["check-model", "no_such_pkg.models:Model"], "cannot import module 'no_such_pkg'"),
    "check-model option misspelt": lambda f: (["check-model", "gmm", "--set", "n_component=2"], "unknown option 'n_component'"),
    "torch-module option misspelt": lambda f: (_run(f, cfg(model={"name": "torch-module", "module": "own_nets:TinyMLP",
                                                                  "module_options": {"hiden": 8}})),
                                               "unknown option 'hiden' for torch-module module 'own_nets:TinyMLP'"),
    "torch-module loss without sampler": lambda f: (_run(f, cfg(model={"name": "torch-module", "module": "own_nets:TinyMLP",
                                                                       "objective": "own_nets:denoising_loss"})),
                                                    "needs a sampler"),
    "diffusers folder missing": lambda f: (_run(f, cfg(model={"name": "diffusers", "path": str(f / "no-model")}, metrics=[])),
                                           "does not exist"),
    "eval_samples unknown": lambda f: (_run(f, cfg(loop__eval_samples="recycle")), "eval_samples"),
    "eval_samples reuse with curation": lambda f: (_run(f, cfg(loop__eval_samples="reuse",
                                                               loop__variant={"kind": "curated", "reward": "quadratic"})),
                                                   "reuse needs the plain variant"),
    "device cuda:7 not here": lambda f: (_run(f, cfg(model={"name": "edm", "train": {"device": "cuda:7"}})), "cuda:7"),
    "metric listed twice": lambda f: (_run(f, cfg(metrics=["w2", {"name": "w2", "max_exact": 50}])), "more than once"),
    # -- found only by looking at the components together (before anything is written) ---------
    "metric option out of range": lambda f: (_run(f, cfg(metrics=[{"name": "w2", "max_exact": -1}])), "max_exact"),
    "n_heldout zero": lambda f: (_run(f, cfg(data__n_heldout=0)), "n_heldout is 0"),
    "n_components above n": lambda f: (_run(f, cfg(data__n=3, model__n_components=5)), "n_components=5"),
    "fresh on finite data": lambda f: (_run(f, _npy_cfg(f, npy(f, np.ones((80, 2))), loop__scheme="fresh")), "fresh"),
    "gmm on images": lambda f: (_run(f, cfg(data={"name": "digits_images", "n": 100}, metrics=[])), "fits vectors"),
    "inception weights missing": lambda f: (_run(f, cfg(data={"name": "digits_images", "n": 100},
                                                         model={"name": "edm"}, metrics=[{"name": "fid"}])),
                                            "Inception weights"),
    "image features on vectors": lambda f: (_run(f, cfg(metrics=[{"name": "fid", "features": "classifier"}])),
                                            "needs images"),
    "data.n above the data set": lambda f: (_run(f, _npy_cfg(f, npy(f, np.ones((80, 2))), data__n=500)), "80 samples"),
    # -- model.init: read and checked before anything is written (issue 20) ------------------------
    "init hostile pickle": lambda f: (_run(f, _init_cfg(_file(f, "evil.pkl", _HOSTILE_PKL))),
                                      "refused to load the global os.system"),
    "init random bytes .pkl": lambda f: (_run(f, _init_cfg(_file(f, "x.pkl", os.urandom(64)))), "not an EDM network snapshot"),
    "init random bytes .pt": lambda f: (_run(f, _init_cfg(_file(f, "x.pt", os.urandom(64)))), "can read safely"),
    "init random bytes .safetensors": lambda f: (_run(f, _init_cfg(_file(f, "x.safetensors", os.urandom(64)))),
                                                 "not a readable safetensors file"),
    "init folder with broken model.json": lambda f: (_run(f, _init_cfg(_broken_generation(f))),
                                                     "not a readable genloop generation checkpoint"),
    "init for other images": lambda f: (_run(f, _init_cfg(_safetensors_for(f, [3, 32, 32]))),
                                        "images of shape (3, 32, 32); the data have shape (1, 8, 8)"),
    # -- genloop reproduce ---------------------------------------------------------------------------
    "reproduce configs folder missing": lambda f: (["reproduce", "--configs", str(f / "none"), "--out", str(f / "out")],
                                                   "reproduction configs folder"),
    "reproduce unknown --only": lambda f: (["reproduce", "--configs", _repro(f, a=GOOD), "--only", "b",
                                            "--out", str(f / "out")], "unknown reproduction config 'b'"),
    "reproduce init from a missing config": lambda f: (
        ["reproduce", "--configs", _repro(f, a=_init_cfg("{out}/gen0/lam=0/seed=0/checkpoints/gen_0000")),
         "--out", str(f / "out")], "has no config gen0.yaml"),
    "reproduce invalid config": lambda f: (["reproduce", "--configs", _repro(f, a=GOOD, b=cfg(loop__generations=-1)),
                                            "--out", str(f / "out")], "loop.generations"),
    "reproduce --tables-only without runs": lambda f: (["reproduce", "--configs", _repro(f, a=GOOD), "--tables-only",
                                                          "--out", str(f / "out")], "no runs in"),
    "reproduce compare folder missing": lambda f: (["reproduce", "--compare", str(f / "none")], "does not exist"),
    # -- .npz inputs of genloop eval (issue 20) ------------------------------------------------------------
    "npz of random bytes": lambda f: (["eval", _file(f, "a.npz", os.urandom(300)), npy(f, np.ones((50, 3))),
                                       "--features", "raw"], "not a valid .npz archive"),
    "npz stats without sigma": lambda f: (["eval", _npz(f, mu=np.zeros(3)), npy(f, np.ones((50, 3))), "--features", "raw"],
                                          "has no 'sigma'"),
    "npz stats mu and sigma differ": lambda f: (["eval", _npz(f, mu=np.zeros(3), sigma=np.eye(4)), npy(f, np.ones((50, 3))),
                                                 "--features", "raw"], "mu has dimension 3 but sigma has shape (4, 4)"),
    "npz stats against other features": lambda f: (["eval", _npz(f, mu=np.zeros(4), sigma=np.eye(4)),
                                                    npy(f, np.ones((50, 3))), "--features", "raw"],
                                                   "feature dimensions differ: A 4, B 3"),
    # -- variants, estimators and metric sizes: every configured piece is built before the first write --
    "sampler option unknown": lambda f: (_run(f, _variant({"kind": "biased", "sampler": {"nope": 1}})), "no option 'nope'"),
    "sampler option value": lambda f: (_run(f, _variant({"kind": "biased", "sampler": {"max_iter": "many"}})),
                                       "option 'max_iter' of model 'gmm'"),
    "sampler value the family refuses": lambda f: (_run(f, _variant({"kind": "biased", "sampler": {"S_churn": -1}},
                                                                    model={"name": "edm"})), "need S_churn >= 0"),
    "temperature on ngram": lambda f: (_run(f, _tokens(variant={"kind": "biased", "temperature": 0.5})),
                                       "no temperature for model 'ngram'"),
    "reward centre dimension": lambda f: (_run(f, _variant({"kind": "curated", "reward": {"name": "quadratic",
                                                                                          "center": [0, 0, 0]}})),
                                          "center has 3 coordinates but the data have 2"),
    "reward box dimension": lambda f: (_run(f, _variant({"kind": "curated", "reward": {"name": "region", "low": [0],
                                                                                       "high": [1]}})),
                                       "low has 1 coordinates but the data have 2"),
    "schedule negative after t=1": lambda f: (_run(f, _variant({"kind": "plain", "lam_schedule": "1.5 - t"},
                                                               loop__generations=3)),
                                              "gives λ = -0.5 at t=2"),
    "schedule negative on resume": lambda f: (_run(f, _variant({"kind": "plain", "lam_schedule": "1.5 - t"},
                                                               loop__generations=3), "--resume"),
                                              "gives λ = -0.5 at t=2"),
    "schedule negative only for one lambda": lambda f: (_run(f, _variant({"kind": "plain", "lam_schedule": "lam - t / 4"},
                                                                         loop__generations=2)),
                                                        "at t=1 (lam=0, T=2)"),
    "mixture weights [0, 1]": lambda f: (_run(f, _variant({"kind": "mixture", "weights": [0, 1]})), "give no weight"),
    "knn correction on tokens": lambda f: (_run(f, _tokens(variant={"kind": "corrected", "gamma": 0.5})),
                                           "correction 'knn' averages samples"),
    "ot-gaussian target dimension": lambda f: (_run(f, _variant({"kind": "corrected", "gamma": 0.5, "correction": "ot-gaussian",
                                                                 "target_mean": [0, 0, 0],
                                                                 "target_cov": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]})),
                                               "ot-gaussian target must have shape (2,)"),
    "OLS with d > n": lambda f: (_run(f, cfg(data={"name": "linear_regression", "n": 5, "d": 10, "sigma": 1.0},
                                             model={"name": "regression", "sigma": 1.0}, metrics=[])),
                                 "d=10 features and n=5 rows is underdetermined"),
    "fid n_eval <= raw dimension": lambda f: (_run(f, cfg(loop__n_eval=2, metrics=[{"name": "fid", "features": "raw"}])),
                                              "the generated set has 2 samples"),
    "fid n_eval <= classifier dimension": lambda f: (_run(f, cfg(data={"name": "digits_images", "n": 100},
                                                                 model={"name": "edm"}, loop__n_eval=64,
                                                                 metrics=[{"name": "fid", "features": "classifier"}])),
                                                     "compares 64-dimensional features; the generated set has 64"),
    "fid held-out set <= dimension": lambda f: (_run(f, cfg(data__n_heldout=2, loop__n_eval=100, metrics=[{"name": "fid", "features": "raw"}])),
                                                "the real set has 2 samples"),
    "grid with one bad cell": lambda f: (_run(f, cfg(loop__variant={"kind": "curated", "reward": {
        "name": "quadratic", "center": {"sweep": [[0, 0], [0, 0, 0]]}}})), "grid cell"),
    "grid with one bad cell on resume": lambda f: (_run(f, cfg(model__n_components={"sweep": [2, 3]},
                                                               loop__variant={"kind": "mixture", "weights": {"sweep": [[1], [0, 1]]}}),
                                                        "--resume"), "give no weight"),
    # -- sizes -----------------------------------------------------------------------------------------
    "data.n 1e9": lambda f: (_run(f, cfg(data__n="1e9", data__n_heldout=10)), "of memory"),
    "n_eval 1e9": lambda f: (_run(f, cfg(loop__n_eval=10**9)), "of memory"),
    "generations 1e9": lambda f: (_run(f, cfg(loop__generations="1e9")), "of disk"),
    # -- grids ------------------------------------------------------------------------------------------
    "grid: a sweep value that is not a block": lambda f: (_run(f, cfg(model={"sweep": [{"name": "gmm"}, 5]})),
                                                          "grid cell model=5"),
    "grid: the whole config a sweep": lambda f: (_run(f, {"sweep": [GOOD, GOOD]}), "whole config cannot be a sweep"),
    "grid: a cell that cannot be built": lambda f: (_run(f, cfg(model__n_components={"sweep": [2, 300]})),
                                                    "grid cell n_components=300"),
    "grid: millions of cells": lambda f: (_run(f, cfg(data__n={"sweep": list(range(50, 90))},
                                                      data__noise={"sweep": [i / 100 for i in range(1, 41)]},
                                                      model__max_iter={"sweep": list(range(10, 50))})),
                                          "at most 1000 cells"),
    # -- loop variants (checked against the model and the data before anything is written) ---------
    "variant: reward centre of the wrong size": lambda f: (_run(f, _gauss_variant({"kind": "curated", "reward": {
        "name": "quadratic", "center": [1, 2, 3]}})), "center has 3 coordinates but the data have 2"),
    "variant: sampler option the model lacks": lambda f: (_run(f, _gauss_variant({"kind": "biased", "sampler": {"nope": 1}})),
                                                          "has no option 'nope'"),
    "variant: ot-gaussian target of the wrong shape": lambda f: (_run(f, _gauss_variant({
        "kind": "corrected", "gamma": 0.5, "correction": "ot-gaussian", "target_mean": [0, 0], "target_cov": [[1]]})),
        "ot-gaussian target must have shape (2,) and (2, 2)"),
    "variant: denoiser on a GMM": lambda f: (_run(f, _gauss_variant({"kind": "corrected", "gamma": 0.5, "correction": "denoiser"})),
                                             "diffusion families"),
    "variant: reward of the wrong signature": lambda f: (_run(f, _gauss_variant({"kind": "curated", "reward": "os:getcwd"})),
                                                         "fails on 4 real samples"),
    "variant: reward giving one value": lambda f: (_run(f, _gauss_variant({"kind": "curated", "reward": "numpy:sum"})),
                                                   "one per sample"),
    "variant: correction of the wrong signature": lambda f: (_run(f, _gauss_variant({
        "kind": "corrected", "gamma": 0.5, "correction": "os:getcwd"})), "fails on 4 real samples"),
    "variant: reward module missing": lambda f: (_run(f, _gauss_variant({"kind": "curated", "reward": "genloop_no_such_xyz:f"})),
                                                 "cannot import module"),
    "variant: log-density reference too large": lambda f: (_run(f, _gauss_variant({"kind": "curated", "reward": {
        "name": "log-density", "reference": {"name": "gmm", "n_components": 500}}})), "reference"),
    "variant: classifier reward on vectors": lambda f: (_run(f, _gauss_variant({"kind": "curated", "reward": {
        "name": "classifier", "digit": 3}})), "needs images"),
    # -- genloop eval -----------------------------------------------------------------------------------
    "eval: a corrupt PNG": lambda f: (["eval", _images(f, "a"), _images(f, "b", corrupt=True), "--features", "raw"],
                                      "cannot be read"),
    "eval: a truncated PNG": lambda f: (["eval", _images(f, "a", truncated=True), _images(f, "b"), "--features", "raw"],
                                        "cannot be read"),
    "eval: mixed image sizes": lambda f: (["eval", _images(f, "a"), _images(f, "b", mixed=True), "--features", "raw"],
                                          "resize all images"),
    "eval: --save-stats below a file": lambda f: (["eval", _images(f, "a"), _images(f, "b"), "--features", "raw",
                                                   "--save-stats", write(f, "x", "file.txt") + "/s.npz"], "is a file"),
    "eval: --save-stats not .npz": lambda f: (["eval", _images(f, "a"), _images(f, "b"), "--features", "raw",
                                               "--save-stats", str(f / "s.txt")], "end in .npz"),
    # -- genloop convert --------------------------------------------------------------------------------
    "convert: to a missing folder": lambda f: (["convert", "edm-pkl", write(f, "x", "snap.pkl"),
                                                str(f / "missing" / "net.safetensors")], "does not exist"),
    "convert: below a file": lambda f: (["convert", "edm-pkl", write(f, "x", "snap.pkl"),
                                         write(f, "x", "file.txt") + "/net.safetensors"], "is a file"),
    "convert: not .safetensors": lambda f: (["convert", "edm-pkl", write(f, "x", "snap.pkl"), str(f / "net.pt")],
                                            "must be a .safetensors file"),
    # -- executors and tracking (bounded probes: never a hang) ------------------------------------------
    "ray: --address not HOST:PORT": lambda f: (_run(f, GOOD, "--executor", "ray", "--address", "nohost"), "not HOST:PORT"),
    "ray: --address port out of range": lambda f: (_run(f, GOOD, "--executor", "ray", "--address", "1.2.3.4:99999"),
                                                   "not HOST:PORT"),
    "ray: --address to a closed port": lambda f: (_run(f, GOOD, "--executor", "ray", "--address", f"127.0.0.1:{_closed_port()}"),
                                                  "cannot be reached"),
    "ray: --address without --executor ray": lambda f: (_run(f, GOOD, "--address", "127.0.0.1:6379"), "--executor ray"),
    "mlflow: empty tracking.uri": lambda f: (_run(f, cfg(tracking={"uri": ""}), "--track", "mlflow"), "tracking.uri is empty"),
    "mlflow: tracking.uri not a string": lambda f: (_run(f, cfg(tracking={"uri": 5}), "--track", "mlflow"), "tracking.uri"),
    "mlflow: tracking.uri server down": lambda f: (_run(f, cfg(tracking={"uri": f"http://127.0.0.1:{_closed_port()}"}),
                                                        "--track", "mlflow"), "cannot be reached"),
    "mlflow: tracking.uri with no host": lambda f: (_run(f, cfg(tracking={"uri": "http://:80"}), "--track", "mlflow"),
                                                    "names no host"),
    "mlflow: tracking.uri below a file": lambda f: (_run(f, cfg(tracking={"uri": write(f, "x", "file.txt") + "/mlruns"}),
                                                         "--track", "mlflow"), "cannot be created or written"),
    "mlflow: tracking.uri of an unknown scheme": lambda f: (_run(f, cfg(tracking={"uri": "ftp://host/x"}), "--track", "mlflow"),
                                                            "cannot be used by MLflow"),
    # -- genloop probe ---------------------------------------------------------------------------
    "probe delta not positive": lambda f: (["probe", write(f, GOOD), "--delta", "0"], "--delta must be a positive number"),
    "probe a checkpoint as generation 0": lambda f: (["probe", write(f, cfg(loop__train_generation_0=False))],
                                                     "loop.train_generation_0: false"),
}


#: a pickle that, unpickled unsafely, runs a shell command
_HOSTILE_PKL = b"\x80\x03}X\x03\x00\x00\x00emacos\nsystem\n(X\x0b\x00\x00\x00touch pwnedtRs."


def _file(folder: Path, name: str, content: bytes) -> str:
    path = folder / name
    path.write_bytes(content)
    return str(path)


def _npz(folder: Path, **arrays: np.ndarray) -> str:
    path = folder / "stats.npz"
    np.savez(path, **arrays)
    return str(path)


def _repro(folder: Path, **docs: dict) -> str:
    """A folder of reproduction configs NAME.yaml."""
    sub = folder / "repro"
    sub.mkdir()
    for name, doc in docs.items():
        write(sub, doc, f"{name}.yaml")
    return str(sub)


def _init_cfg(init: str) -> dict:
    return cfg(data={"name": "digits_images", "n": 100}, model={"name": "edm", "init": init}, metrics=[])


def _broken_generation(folder: Path) -> str:
    gen = folder / "gen-000"
    gen.mkdir()
    (gen / "model.json").write_text("{not json")
    return str(gen)


def _safetensors_for(folder: Path, event_shape: list[int]) -> str:
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, dtype=np.float32)}, str(folder / "net.safetensors"))
    (folder / "net.json").write_text(f'{{"event_shape": {event_shape}}}')
    return str(folder / "net.safetensors")


def _variant(variant: dict, **changes: object) -> dict:
    """GOOD with ``loop.variant`` set (and dotted changes as in :func:`cfg`)."""
    return cfg(loop__variant=variant, **changes)


def _tokens(**loop: object) -> dict:
    """A bigram model of Markov-chain token sequences with ``loop`` options added."""
    return {"data": {"name": "markov", "n": 50, "seq_len": 8, "n_states": 4},
            "model": {"name": "ngram", "order": 2},
            "loop": {"generations": 2, "lambdas": [0.5], "seeds": [0], **loop}}


def _gauss_variant(variant: dict) -> dict:
    """GOOD with a Gaussian model (moments metric) and ``loop.variant`` set."""
    return cfg(model={"name": "gaussian"}, metrics=["moments"], loop__variant=variant)


def _images(folder: Path, name: str, *, corrupt: bool = False, truncated: bool = False, mixed: bool = False) -> str:
    """A folder of six 8x8 RGB PNGs, one of them damaged or of another size when asked."""
    from PIL import Image

    out = folder / name
    out.mkdir()
    rng = np.random.default_rng(len(name))
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(out / f"{i}.png")
    if mixed:
        Image.fromarray(rng.integers(0, 255, (12, 8, 3), dtype=np.uint8)).save(out / "6.png")
    if corrupt:
        (out / "6.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 8)
    if truncated:
        data = (out / "0.png").read_bytes()
        (out / "6.png").write_bytes(data[: len(data) // 2])
    return str(out)


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _latin1(folder: Path) -> str:
    path = folder / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    return str(path)


def _object_npy(folder: Path) -> str:
    path = folder / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return str(path)


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exit_2_with_message_and_nothing_written(tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)  # the default output folder runs/ would land here
    work = tmp_path / "w"
    work.mkdir()
    argv, message = CASES[case](work)
    before = _tree(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert _tree(tmp_path) == before, "bad input must not create files or folders"


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_jobs_must_be_positive(tmp_path, capsys, jobs):
    with pytest.raises(SystemExit) as exc:
        main(["run", write(tmp_path, GOOD), "--out", str(tmp_path / "out"), "--jobs", jobs])
    assert exc.value.code == 2
    assert "--jobs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unreadable_config_and_data_file(tmp_path, capsys, monkeypatch):
    """Permission errors (simulated: the suite may run as root, which reads every file)."""
    config_path = Path(write(tmp_path, GOOD))
    data_path = Path(npy(tmp_path, np.ones((80, 2))))
    real_read_bytes, real_open = Path.read_bytes, open

    def read_bytes(self: Path) -> bytes:
        if self == config_path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert main(["run", str(config_path), "--out", str(tmp_path / "out")]) == 2
    assert "cannot be read: Permission denied" in capsys.readouterr().err
    monkeypatch.setattr(Path, "read_bytes", real_read_bytes)

    def guarded_open(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if str(file) == str(data_path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    code = main(["run", write(tmp_path, _npy_cfg(tmp_path, str(data_path)), "npycfg.yaml"), "--out", str(tmp_path / "out")])
    monkeypatch.setattr("builtins.open", real_open)
    assert code == 2
    assert "cannot be read" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_read_only_output_folder(tmp_path, capsys):
    """A read-only file system (a read-only tmpfs; skipped where mounting is not allowed)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root); the os.access check is still exercised by 'out below a file'")
    try:
        assert main(["run", write(tmp_path, GOOD), "--out", str(ro / "exp")]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_read_only_outputs_of_convert_and_eval(tmp_path, capsys):
    """convert and eval --save-stats into a read-only file system: exit 2 before any work
    (a read-only tmpfs; skipped where mounting is not allowed)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        snap = write(tmp_path, "x", "snap.pkl")
        assert main(["convert", "edm-pkl", snap, str(ro / "net.safetensors")]) == 2
        assert "not writable" in capsys.readouterr().err
        a = npy(tmp_path, np.ones((10, 2)))
        assert main(["eval", a, a, "--features", "raw", "--save-stats", str(ro / "sub" / "s.npz")]) == 2
        err = capsys.readouterr().err
        assert "not writable" in err and err.count("\n") == 1, err
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_python_api_raises_library_errors() -> None:
    from genloop import run_loop
    from genloop.errors import ConfigError

    real = np.random.default_rng(0).standard_normal((20, 2))
    for kwargs, message in [({"n_eval": 2.5}, "n_eval"), ({"seed": -1}, "seed"), ({"seed": "0"}, "seed"),
                            ({"seed": True}, "seed"), ({"generations": True}, "generations")]:
        args = {"lam": 1, "generations": 1, "metrics": ["moments"], **kwargs}
        with pytest.raises(ConfigError, match=message):
            list(run_loop("gaussian", real, **args))


def test_resource_check_can_be_skipped(tmp_path, capsys):
    """The estimate refuses; --skip-resource-check lets a cluster user start anyway."""
    doc = cfg(loop__generations="1e9")
    assert main(["run", write(tmp_path, doc), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "--skip-resource-check" in err and "TiB" in err


def test_cli_subprocess_has_no_traceback(tmp_path):
    """The installed entry point, as a user runs it: exit 2 and one line."""
    proc = subprocess.run([sys.executable, "-m", "genloop.cli", "run", str(tmp_path / "missing.yaml")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("genloop: error: config file not found")
    assert "Traceback" not in proc.stderr


def test_batch_not_divisible_by_the_processes_is_refused_before_writing(tmp_path, monkeypatch):
    """Under torchrun (WORLD_SIZE set) every rank takes batch_size / WORLD_SIZE rows; the
    experiment's checks (run by every rank before rank 0 writes anything) refuse the split."""
    from genloop.config import parse_config
    from genloop.errors import ConfigError
    from genloop.sweep.runs import check_experiment

    monkeypatch.setenv("WORLD_SIZE", "3")
    doc = cfg(model={"name": "edm", "train": {"batch_size": 64, "device": "cpu"}})
    with pytest.raises(ConfigError, match="batch_size 64 is not divisible by the 3 processes"):
        check_experiment(parse_config(doc), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_gpu_memory_estimate_refuses_a_network_larger_than_the_device() -> None:
    from genloop.errors import ConfigError
    from genloop.models import make_model
    from genloop.sweep.preflight import TRAIN_BYTES_PER_PARAMETER, check_gpu_run

    model = make_model("edm", network={"hidden": 64, "depth": 2}, train={"device": "cpu"})
    params = sum(p.numel() for p in model.build_net((2,), None).parameters())
    need = params * TRAIN_BYTES_PER_PARAMETER
    check_gpu_run(model, (2,), device_memory=need)  # fits exactly
    with pytest.raises(ConfigError, match=f"{params / 1e6:.1f} M parameters"):
        check_gpu_run(model, (2,), device_memory=need - 1)
    check_gpu_run(make_model("gmm"), (2,), world_size=3)  # not a neural family: nothing to check
