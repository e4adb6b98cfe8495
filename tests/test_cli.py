"""The `genloop` command: runs, show, and one clear message with exit code 2 for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from genloop.cli import main

GOOD = {
    "data": {"name": "two_moons", "n": 200, "noise": 0.05},
    "model": {"name": "gmm", "n_components": 4},
    "loop": {"generations": 2, "lambdas": [0, 0.5, "inf"], "scheme": "replace", "retrain": "finetune", "seeds": [0, 1]},
    "metrics": ["w2", "mmd", "nll"],
}


def write(tmp_path, doc, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return path


def test_run_and_show(tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["run", str(write(tmp_path, GOOD)), "--out", str(out)]) == 0
    runs = sorted(p.relative_to(out).as_posix() for p in out.glob("lam=*/seed=*"))
    assert runs == sorted(f"lam={lam}/seed={s}" for lam in ("0", "0.5", "inf") for s in (0, 1))
    capsys.readouterr()
    assert main(["show", str(out / "lam=0.5" / "seed=1")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:5] == ["generation", "n_real", "n_synthetic", "w2", "mmd"] and "nll" in table[1]
    assert [line.split()[:3] for line in table[2:]] == [["0", "200", "0"], ["1", "200", "100"], ["2", "200", "100"]]
    assert main(["show", str(out)]) == 0
    assert "6 runs" in capsys.readouterr().out


def test_set_overrides_and_parallel_jobs(tmp_path, capsys):
    out = tmp_path / "exp"
    code = main(["run", str(write(tmp_path, GOOD)), "--out", str(out), "--set", "loop.generations=1",
                 "--set", "loop.lambdas=[1]", "--set", "loop.seeds=[0,1]", "--jobs", "2"])
    assert code == 0
    lines = (out / "lam=1" / "seed=1" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def bad(doc_changes):
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    for path, value in doc_changes.items():
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        if value is KeyError:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return doc


CASES = {
    "unknown top key": (bad({"optimizer": "adam"}), "unknown key 'optimizer'"),
    "unknown loop key": (bad({"loop.generation": 3}), "unknown key 'loop.generation'"),
    "unknown model option": (bad({"model.n_componets": 3}), "unknown option 'n_componets'"),
    "negative lambda": (bad({"loop.lambdas": [0.5, -1]}), "lambda must be >= 0"),
    "n zero": (bad({"data.n": 0}), "data.n"),
    "unknown model": (bad({"model.name": "vae"}), "unknown model 'vae'"),
    "unknown data": (bad({"data": {"name": "spirals", "n": 10}}), "unknown data set 'spirals'"),
    "unknown metric": (bad({"metrics": ["fidd"]}), "unknown metric 'fidd'"),
    "bad scheme": (bad({"loop.scheme": "keep"}), "loop.scheme"),
    "missing loop": (bad({"loop": KeyError}), "missing key 'loop'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_exit_2_nothing_written(tmp_path, capsys, case):
    doc, message = CASES[case]
    out = tmp_path / "out"
    assert main(["run", str(write(tmp_path, doc)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genloop: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_missing_data_file_and_nan_data(tmp_path, capsys):
    out = tmp_path / "out"
    doc = bad({"data": {"name": "npy", "path": str(tmp_path / "nope.npy"), "n": 10}})
    assert main(["run", str(write(tmp_path, doc)), "--out", str(out)]) == 2
    assert "nope.npy" in capsys.readouterr().err
    arr = np.random.default_rng(0).standard_normal((50, 2))
    arr[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", arr)
    doc = bad({"data": {"name": "npy", "path": str(tmp_path / "nan.npy"), "n": 10}})
    assert main(["run", str(write(tmp_path, doc)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "NaN" in err and "nan.npy" in err
    assert not out.exists()


def test_missing_config_and_bad_yaml(tmp_path, capsys):
    assert main(["run", str(tmp_path / "none.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["run", str(write(tmp_path, "data: [unclosed"))]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_show_missing_folder(tmp_path, capsys):
    assert main(["show", str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    import subprocess
    import sys

    doc, _ = CASES["negative lambda"]
    proc = subprocess.run([sys.executable, "-m", "genloop.cli", "run", str(write(tmp_path, doc))],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("genloop: error:") and "Traceback" not in proc.stderr


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("gaussian", "gmm", "kde", "two_moons", "digits", "w2", "mmd", "nll"):
        assert name in out


def test_eval_against_training_set_needs_no_heldout(tmp_path):
    doc = {
        "data": {"name": "digits", "n": 1797},
        "model": {"name": "gaussian", "reg_covar": 1e-3},
        "loop": {"generations": 1, "lambdas": [1], "eval_against": "train"},
        "metrics": ["moments"],
    }
    out = tmp_path / "exp"
    assert main(["run", str(write(tmp_path, doc)), "--out", str(out)]) == 0
    rows = [yaml.safe_load(x) for x in (out / "lam=1" / "seed=0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_real"] for r in rows] == [1797, 1797]
    assert rows[0]["mean_drift"] < 0.1  # generation 0 fits the very set it is compared with
    doc["loop"]["eval_against"] = "heldout"
    assert main(["run", str(write(tmp_path, doc)), "--out", str(tmp_path / "other")]) == 2


def test_theory_and_report_commands(tmp_path, capsys):
    doc = {
        "data": {"name": "gaussian", "n": 200, "mean": [0.0, 1.0]},
        "model": {"name": "gaussian"},
        "loop": {"generations": 2, "lambdas": [0.5, "inf"]},
        "metrics": ["moments"],
    }
    cfg = write(tmp_path, doc)
    assert main(["theory", str(cfg)]) == 0
    text = capsys.readouterr().out
    assert "Theorem 1" in text and "exact rate" in text
    # an exponential family: the exact local rate is lam/(1+lam) = 1/3 at lam = 0.5
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.strip().startswith("| gaussian")]
    assert [r[1] for r in rows] == ["0.5", "inf"]
    assert rows[0][3] == "0.3333" and rows[1][3] == "1"
    out = tmp_path / "exp"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--no-theory"]) == 0
    assert (out / "report.html").read_text().count("<img") >= 1
    assert str(out / "report.html") in capsys.readouterr().out
    kde = write(tmp_path, {**doc, "model": {"name": "kde"}}, "kde.yaml")
    assert main(["theory", str(kde)]) == 0  # no law: "no prediction" per λ and the command that measures it
    out = capsys.readouterr().out
    assert out.count("no prediction: model 'kde'") == 2 and f"genloop probe {kde}" in out
