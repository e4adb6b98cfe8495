"""Reading a folder runs no code: ``check``, ``show``, ``report`` and ``eval`` on an experiment
whose stored configs name ``module:function`` callables never import those modules.

The reward module here writes a marker file when it is imported; the experiment is made with
it (a run starts: it is imported then), the marker and the imported module are removed, and
every reading command is run. The marker must not come back; starting a run (``--resume``)
imports it again, as documented.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from genloop.cli import main
from genloop.config import parse_config
from genloop.errors import ConfigError

MODULE = "genloop_test_marker_reward"
SOURCE = '''
import os
import numpy as np
open(os.environ["GENLOOP_TEST_MARKER"], "a").write("imported\\n")

def score(X):
    return -np.sum(np.asarray(X) ** 2, axis=1)

def to_origin(X, real):
    return np.zeros_like(X)
'''


@pytest.fixture
def marker_module(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / f"{MODULE}.py").write_text(SOURCE)
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("GENLOOP_TEST_MARKER", str(marker))
    monkeypatch.syspath_prepend(str(lib))
    yield marker
    sys.modules.pop(MODULE, None)


def _forget(marker: Path) -> None:
    marker.unlink(missing_ok=True)
    sys.modules.pop(MODULE, None)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [
    {"kind": "curated", "K": 2, "reward": f"{MODULE}:score"},
    {"kind": "corrected", "gamma": 0.5, "correction": f"{MODULE}:to_origin"},
])
def test_reading_commands_never_import_named_code(tmp_path, marker_module, capsys, variant):
    doc = {"data": {"name": "two_moons", "n": 80, "noise": 0.05},
           "model": {"name": "gaussian"},
           "loop": {"generations": 1, "lambdas": [1], "seeds": [0], "variant": variant},
           "metrics": ["moments"]}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    exp = tmp_path / "exp"
    assert main(["-q", "run", str(cfg), "--out", str(exp)]) == 0
    assert marker_module.is_file()  # starting a run imports it
    _forget(marker_module)
    run = exp / "lam=1" / "seed=0"
    for argv in (["check", str(exp)], ["check", str(run)], ["show", str(exp)], ["show", str(run), "--all"],
                 ["report", str(exp), "--out", str(tmp_path / "r.html")],
                 ["report", str(run), "--out", str(tmp_path / "r2.html"), "--no-theory"],
                 ["eval", str(run), str(run), "--metrics", "fid", "--features", "raw", "--no-cache"]):
        assert main(argv) == 0, (argv, capsys.readouterr())
        assert not marker_module.exists(), f"{argv[0]} imported the module a stored config names"
        assert MODULE not in sys.modules
    parse_config(yaml.safe_load((run / "config.yaml").read_text()))  # validation alone: no import
    assert not marker_module.exists()
    capsys.readouterr()
    assert main(["-q", "run", str(cfg), "--out", str(exp), "--resume", "--set", "loop.generations=2"]) == 0
    assert marker_module.is_file()  # a run started: the documented import


def test_a_missing_module_is_refused_when_the_run_starts_not_when_read(tmp_path, capsys):
    variant = {"kind": "curated", "reward": "genloop_no_such_module_xyz:f"}
    doc = {"data": {"name": "two_moons", "n": 80}, "model": {"name": "gaussian"},
           "loop": {"generations": 1, "lambdas": [1], "variant": variant}}
    parse_config(doc)  # well-formed: validation does not import
    with pytest.raises(ConfigError, match="neither a built-in"):
        parse_config({**doc, "loop": {**doc["loop"], "variant": {"kind": "curated", "reward": "os.system('x')"}}})
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "cannot import module 'genloop_no_such_module_xyz'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()
