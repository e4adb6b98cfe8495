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
    # -- sizes -----------------------------------------------------------------------------------------
    "data.n 1e9": lambda f: (_run(f, cfg(data__n="1e9", data__n_heldout=10)), "of memory"),
    "n_eval 1e9": lambda f: (_run(f, cfg(loop__n_eval=10**9)), "of memory"),
    "generations 1e9": lambda f: (_run(f, cfg(loop__generations="1e9")), "of disk"),
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
