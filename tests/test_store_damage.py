"""Run folders that survive damage, races, full disks and dead processes.

Every damage either ends in exit 2 with a message naming it, or in an explicit rollback (a
warning naming each problem) after which ``--resume`` gives results identical to an undamaged
run: never a silent exit 0 with missing or different data.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from genloop.cli import main

CFG = {
    "data": {"name": "two_moons", "n": 150, "noise": 0.05},
    "model": {"name": "gmm", "n_components": 3, "max_iter": 30},
    "loop": {"generations": 4, "lambdas": [1], "seeds": [0], "scheme": "accumulate"},
    "metrics": ["moments", {"name": "w2", "max_exact": 150}],
}
RUN = Path("lam=1") / "seed=0"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An undamaged experiment, and its config file next to it."""
    folder = tmp_path_factory.mktemp("ref")
    (folder / "cfg.yaml").write_text(yaml.safe_dump(CFG))
    assert main(["-q", "run", str(folder / "cfg.yaml"), "--out", str(folder / "exp")]) == 0
    return folder


def results(exp: Path) -> dict[str, str]:
    """What a user reads: every metrics line, and the bytes of every checkpoint and pool file."""
    run = exp / RUN
    out = {"metrics": (run / "metrics.jsonl").read_text()}
    for sub in ("checkpoints", "synthetic"):
        for p in sorted((run / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(run))] = p.read_bytes().hex()
    return out


def _torn_last_metrics_line(run: Path) -> None:
    p = run / "metrics.jsonl"
    p.write_bytes(p.read_bytes()[:-25])


def _flip_byte(path: Path, where: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[where] ^= 0x01
    path.write_bytes(bytes(data))


def _delete_metrics_line(run: Path, index: int) -> None:
    p = run / "metrics.jsonl"
    lines = p.read_text().splitlines(keepends=True)
    del lines[index]
    p.write_text("".join(lines))


def _status_ahead(run: Path) -> None:
    p = run / "status.json"
    doc = json.loads(p.read_text())
    doc["last_generation"] = 6
    p.write_text(json.dumps(doc))


def _replace_checkpoint_with_other_generation(run: Path) -> None:
    shutil.rmtree(run / "checkpoints" / "gen_0003")
    shutil.copytree(run / "checkpoints" / "gen_0002", run / "checkpoints" / "gen_0003")


#: name -> (damage, expected rollback target or None for "exit 2", message in stderr)
DAMAGES: dict[str, tuple[Callable[[Path], None], int | None, str]] = {
    "torn last metrics line": (_torn_last_metrics_line, 3, "metrics.jsonl is missing"),
    "missing checkpoint": (lambda r: shutil.rmtree(r / "checkpoints" / "gen_0002"), 1, "gen_0002/model.json is missing"),
    "overwritten checkpoint bytes": (lambda r: _flip_byte(r / "checkpoints" / "gen_0003" / "model.safetensors", 200), 2,
                                     "model.safetensors is damaged"),
    "checkpoint of another generation": (_replace_checkpoint_with_other_generation, 2, "is damaged"),
    "corrupt model.json": (lambda r: (r / "checkpoints" / "gen_0004" / "model.json").write_text("{not json"), 3,
                           "model.json is damaged"),
    "missing synthetic pool file": (lambda r: (r / "synthetic" / "gen_0002.npy").unlink(), 1, "synthetic/gen_0002.npy is missing"),
    "missing samples file": (lambda r: (r / "samples" / "gen_0003.npy").unlink(), 2, "samples/gen_0003.npy is missing"),
    "deleted metrics line": (lambda r: _delete_metrics_line(r, 2), 1, "differs from what was written"),
    "deleted metrics file": (lambda r: (r / "metrics.jsonl").unlink(), -1, "metrics.jsonl is missing"),
    "edited metrics value": (lambda r: (r / "metrics.jsonl").write_text((r / "metrics.jsonl").read_text().replace('"w2": 0.', '"w2": 1.', 1)),
                             -1, "differs from what was written"),
    "torn manifest": (lambda r: (r / "manifest.jsonl").write_text((r / "manifest.jsonl").read_text()[:-40]), 3,
                      "manifest.jsonl is missing"),
    "status ahead of the checkpoints": (_status_ahead, 4, "manifest.jsonl is missing"),
    "corrupt status.json": (lambda r: (r / "status.json").write_text('{"state": "runn'), None, "status.json is damaged"),
    "lock is a directory": (lambda r: ((r / ".lock").unlink(missing_ok=True), (r / ".lock").mkdir()), None,
                            "is a folder, not a lock file"),
    "edited run config": (lambda r: (r / "config.yaml").write_text((r / "config.yaml").read_text().replace("n_components: 3", "n_components: 4")),
                          None, "config.yaml differs"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_damage_is_named_and_rolled_back_or_refused(reference, tmp_path, capsys, case):
    damage, target, message = DAMAGES[case]
    exp = tmp_path / "exp"
    shutil.copytree(reference / "exp", exp)
    cfg = str(reference / "cfg.yaml")
    damage(exp / RUN)
    # show, check and report never end in a traceback on a damaged folder
    for argv in (["show", str(exp)], ["show", str(exp / RUN)], ["check", str(exp)],
                 ["report", str(exp), "--no-theory", "--out", str(tmp_path / "r.html")]):
        assert main(argv) in (0, 1, 2), argv
    capsys.readouterr()
    assert main(["check", str(exp)]) in (1, 2)  # the damage is reported
    capsys.readouterr()
    code = main(["run", cfg, "--out", str(exp), "--resume"])
    err = capsys.readouterr().err
    assert message in err, err
    if target is None:
        assert code == 2, err
        return
    assert code == 0, err
    expected = f"rolling back from generation 4 to {target if target >= 0 else 'the start'}"
    if case == "status ahead of the checkpoints":
        expected = "rolling back from generation 6 to 4"
    assert expected in err, err
    assert results(exp) == results(reference / "exp")
    assert main(["check", str(exp)]) == 0


def _rerun_in_subprocess(argv: list[str], go: Path) -> subprocess.Popen:
    """A `genloop` process that imports everything, then waits for ``go`` (a barrier)."""
    script = ("import sys, time, pathlib, genloop.cli, genloop.sweep, genloop.models, genloop.metrics\n"
              "genloop.models.available_models(); genloop.metrics.available_metrics()\n"
              f"go = pathlib.Path({str(go)!r})\n"
              "while not go.exists(): time.sleep(0.001)\n"
              f"sys.exit(genloop.cli.main({argv!r}))")
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_writers_released_together(tmp_path):
    """Same --out, same or different λ lists: never a traceback, never a folder whose config
    disagrees with its runs."""
    base = dict(CFG, loop=dict(CFG["loop"], generations=2, scheme="replace"))
    other = dict(base, loop=dict(base["loop"], lambdas=[0.5, 2]))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(other))
    outcomes = []
    for trial in range(4):
        out = tmp_path / f"exp{trial}"
        go = tmp_path / f"go{trial}"
        second = "b.yaml" if trial % 2 else "a.yaml"
        procs = [_rerun_in_subprocess(["-q", "run", str(tmp_path / name), "--out", str(out)], go)
                 for name in ("a.yaml", second)]
        time.sleep(3.0)  # both imported and waiting
        go.touch()
        codes = []
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert "Traceback" not in err, err
            assert proc.returncode in (0, 2), err
            if proc.returncode == 2:
                assert "being written by another process" in err or "already holds an experiment" in err, err
            codes.append(proc.returncode)
        assert sorted(codes) == [0, 2], codes  # exactly one writer wins
        listed = yaml.safe_load((out / "config.yaml").read_text())["loop"]["lambdas"]
        on_disk = sorted(p.parent.name for p in out.glob("lam=*/seed=*"))
        assert on_disk == sorted(f"lam={lam}" for lam in listed), (listed, on_disk)
        for run in out.glob("lam=*/seed=*"):
            assert json.loads((run / "status.json").read_text())["state"] == "completed"
        outcomes.append(codes)
    assert len(outcomes) == 4


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root): the disk-full path is not exercised")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_disk_full_stops_cleanly_and_resumes_exactly(reference, tmp_path, small_disk, capsys):
    # a KDE's checkpoint holds its training set: ~40 KiB a generation here, 13 of them > 400 KiB
    doc = dict(CFG, data=dict(CFG["data"], n=1500), model={"name": "kde", "bandwidth": 0.1},
               loop=dict(CFG["loop"], generations=12, scheme="replace"))
    cfg = tmp_path / "kde.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    ref = tmp_path / "ref"
    assert main(["-q", "run", str(cfg), "--out", str(ref)]) == 0
    # without the override, the estimate made after generation 0 refuses to fill the disk
    assert main(["-q", "run", str(cfg), "--out", str(small_disk / "a")]) == 2
    assert "remaining checkpoints need about" in capsys.readouterr().err
    shutil.rmtree(small_disk / "a")
    # with it, the disk fills up: a message, a stopped run, nothing torn
    assert main(["-q", "run", str(cfg), "--out", str(small_disk / "b"), "--skip-resource-check"]) == 2
    err = capsys.readouterr().err
    assert "is full" in err and "--resume" in err and "Traceback" not in err, err
    st = json.loads((small_disk / "b" / RUN / "status.json").read_text())
    assert st["state"] == "stopped" and 0 <= st["last_generation"] < 12
    # more space (the folder moved to a bigger disk): the resume is exact
    shutil.copytree(small_disk / "b", tmp_path / "b")
    assert main(["check", str(tmp_path / "b")]) == 0
    assert main(["-q", "run", str(cfg), "--out", str(tmp_path / "b"), "--resume"]) == 0
    assert (tmp_path / "b" / RUN / "metrics.jsonl").read_text() == (ref / RUN / "metrics.jsonl").read_text()


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_workers_exit_when_parent_is_killed_and_dead_worker_is_reported(tmp_path):
    doc = dict(CFG, data=dict(CFG["data"], n=1500), loop=dict(CFG["loop"], generations=60, lambdas=[0.5, 1], seeds=[0, 1],
                                                               scheme="replace"))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    out = tmp_path / "exp"
    parent = subprocess.Popen([sys.executable, "-m", "genloop.cli", "-q", "run", str(cfg), "--out", str(out), "--jobs", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("lam=*/seed=*/metrics.jsonl")):
        time.sleep(0.05)
    workers = [k for k in _children(parent.pid) if "spawn_main" in (Path("/proc") / str(k) / "cmdline").read_text()]
    assert workers, "no worker processes found"
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "workers outlived their killed parent"
    for status in out.glob("lam=*/seed=*/status.json"):  # each worker marked its run stopped on the way out
        assert json.loads(status.read_text())["state"] in ("stopped", "completed")

    # a killed worker: the parent says which runs to resume, without a traceback
    parent = subprocess.Popen([sys.executable, "-m", "genloop.cli", "-q", "run", str(cfg), "--out", str(out), "--jobs", "2",
                               "--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    deadline = time.time() + 120
    workers = []
    while time.time() < deadline and not workers:
        workers = [k for k in _children(parent.pid) if "spawn_main" in (Path("/proc") / str(k) / "cmdline").read_text()]
        time.sleep(0.05)
    time.sleep(2.0)
    os.kill(workers[0], signal.SIGKILL)
    _, err = parent.communicate(timeout=120)
    assert parent.returncode == 2, err
    assert "worker process died" in err and "--resume" in err and "Traceback" not in err, err
    assert main(["-q", "run", str(cfg), "--out", str(out), "--resume", "--jobs", "2"]) == 0
    assert main(["check", str(out)]) == 0


# ---- grid-level damage ------------------------------------------------------------------------------
GRID = dict(CFG, model=dict(CFG["model"], n_components={"sweep": [2, 3]}), loop=dict(CFG["loop"], generations=1))


@pytest.fixture(scope="module")
def grid_reference(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gridref")
    (folder / "grid.yaml").write_text(yaml.safe_dump(GRID))
    assert main(["-q", "run", str(folder / "grid.yaml"), "--out", str(folder / "exp")]) == 0
    return folder


def _cells(exp: Path) -> list[Path]:
    return sorted(p for p in exp.iterdir() if p.is_dir())


def _rename_cell(exp: Path) -> None:
    cell = _cells(exp)[0]
    cell.rename(exp / ("renamed-" + cell.name))


#: name -> (damage of the grid folder, message `check` prints, whether `show` and `--resume` refuse
#: (exit 2 with the message) or carry on (exit 0))
GRID_DAMAGES: dict[str, tuple[Callable[[Path], None], str, bool]] = {
    "cells.csv truncated": (lambda e: (e / "cells.csv").write_bytes((e / "cells.csv").read_bytes()[:-7]),
                            "cells.csv is damaged", True),
    "cells.csv wrong columns": (lambda e: (e / "cells.csv").write_text("a,b\n1,2\n"), "columns cell, label, in_grid are missing",
                                True),
    "cells.csv binary": (lambda e: (e / "cells.csv").write_bytes(bytes(range(256)) * 4), "cells.csv is damaged", True),
    "cells.csv names a folder outside": (lambda e: (e / "cells.csv").write_text("cell,label,in_grid\n../../etc,x,yes\n"),
                                         "not a cell folder name", True),
    "grid config.yaml not YAML": (lambda e: (e / "config.yaml").write_text("data: [unclosed"), "not valid YAML", False),
    "grid config.yaml binary": (lambda e: (e / "config.yaml").write_bytes(b"\xff\xfe\x00garbage"), "not UTF-8", False),
    "renamed cell folder": (_rename_cell, "not listed in cells.csv", False),
    "deleted cell folder": (lambda e: shutil.rmtree(_cells(e)[0]), "listed in cells.csv but missing", False),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(GRID_DAMAGES))
def test_grid_damage_is_named_never_a_traceback(grid_reference, tmp_path, capsys, case):
    damage, message, refused = GRID_DAMAGES[case]
    exp = tmp_path / "exp"
    shutil.copytree(grid_reference / "exp", exp)
    listed = [row.split(",")[0] for row in (exp / "cells.csv").read_text().splitlines()[1:]]
    damage(exp)
    capsys.readouterr()
    assert main(["check", str(exp)]) == 1
    out = capsys.readouterr().out
    assert message in out, out
    code = main(["show", str(exp)])
    captured = capsys.readouterr()
    assert code == (2 if refused else 0), captured
    if refused:
        assert message in captured.err and captured.err.count("\n") == 1, captured.err
    code = main(["report", str(exp), "--no-theory", "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == (2 if refused else 0), err
    code = main(["-q", "run", str(grid_reference / "grid.yaml"), "--out", str(exp), "--resume"])
    err = capsys.readouterr().err
    assert code == (2 if refused else 0), err
    if refused:
        assert message in err and err.count("\n") == 1, err
        return
    # results come only from the cells cells.csv lists, never from a stray folder
    import pandas as pd

    cells = set(pd.read_csv(exp / "results.csv")["cell"])
    assert cells == set(listed), cells
    assert main(["check", str(exp)]) == (1 if case == "renamed cell folder" else 0)
