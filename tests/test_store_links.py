"""Folder safety: nothing outside an experiment changes, whatever links its folders hold.

Each case puts a symbolic link to a *victim* folder (or file) outside the experiment where
genloop keeps a folder, then resumes the experiment, complete and interrupted. The victim
tree must be byte for byte what it was (file contents, names, link targets), the resume must
refuse with a message naming the link (exit 2, one line), and ``genloop check`` must report it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
import yaml

from genloop.cli import main
from genloop.errors import DataError
from genloop.store.links import remove_inside, scan_run_folder

CFG = {
    "data": {"name": "two_moons", "n": 120, "noise": 0.05},
    "model": {"name": "gmm", "n_components": 2, "max_iter": 20},
    "loop": {"generations": 2, "lambdas": [1], "seeds": [0], "scheme": "accumulate"},
    "metrics": ["moments"],
}
RUN = Path("lam=1") / "seed=0"


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed): file bytes' SHA-256, link targets, folders."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def make_victim(path: Path) -> Path:
    """A folder of someone's files, with names genloop would delete if it looked inside."""
    path.mkdir(parents=True)
    for name in ("gen_0000", "gen_0001", "gen_0007", "gen_0009"):
        (path / name).mkdir()
        (path / name / "model.json").write_text(f"precious {name}")
    for name in ("gen_0005.npy", "gen_0003.csv", ".notes.tmp", "thesis.tex", "step-000000001.json"):
        (path / name).write_text(f"precious {name}")
    return path


@pytest.fixture(scope="module")
def experiments(tmp_path_factory) -> Path:
    """A complete experiment, an interrupted one (status 'running', fewer generations), and a grid."""
    base = tmp_path_factory.mktemp("links")
    (base / "cfg.yaml").write_text(yaml.safe_dump(CFG))
    assert main(["-q", "run", str(base / "cfg.yaml"), "--out", str(base / "complete")]) == 0
    assert main(["-q", "run", str(base / "cfg.yaml"), "--out", str(base / "interrupted"),
                 "--set", "loop.generations=1"]) == 0
    for status in (base / "interrupted").glob("lam=*/seed=*/status.json"):
        doc = json.loads(status.read_text())
        status.write_text(json.dumps({**doc, "state": "running"}))
    grid = dict(CFG, model=dict(CFG["model"], n_components={"sweep": [2, 3]}), loop=dict(CFG["loop"], generations=1))
    (base / "grid.yaml").write_text(yaml.safe_dump(grid))
    assert main(["-q", "run", str(base / "grid.yaml"), "--out", str(base / "grid")]) == 0
    return base


def _link_sub(sub: str) -> Callable[[Path, Path], None]:
    def damage(exp: Path, victim: Path) -> None:
        target = exp / RUN / sub
        if target.exists():
            shutil.rmtree(target)
        target.symlink_to(victim, target_is_directory=True)
    return damage


def _link_run(exp: Path, victim: Path) -> None:
    shutil.rmtree(victim)
    shutil.move(str(exp / RUN), str(victim))  # the run lives elsewhere, reached through a link
    make_victim(victim / "training")
    (exp / RUN).symlink_to(victim, target_is_directory=True)


def _link_lam(exp: Path, victim: Path) -> None:
    shutil.rmtree(victim)
    shutil.move(str(exp / "lam=1"), str(victim))
    (exp / "lam=1").symlink_to(victim, target_is_directory=True)


def _link_entry(exp: Path, victim: Path) -> None:
    (exp / RUN / "checkpoints" / "gen_0009").symlink_to(victim, target_is_directory=True)


def _link_file(name: str) -> Callable[[Path, Path], None]:
    def damage(exp: Path, victim: Path) -> None:
        (exp / RUN / name).unlink(missing_ok=True)
        (exp / RUN / name).symlink_to(victim / "thesis.tex")
    return damage


#: name -> how the link is made (experiment folder, victim folder)
LINKS: dict[str, Callable[[Path, Path], None]] = {
    **{f"{sub}/ is a link": _link_sub(sub) for sub in ("checkpoints", "samples", "synthetic", "grids", "losses", "training")},
    "run folder is a link": _link_run,
    "lam folder is a link": _link_lam,
    "an entry of checkpoints/ is a link": _link_entry,
    "metrics.jsonl is a link": _link_file("metrics.jsonl"),
    ".lock is a link": _link_file(".lock"),
}


@pytest.mark.parametrize("kind", ["complete", "interrupted"])
@pytest.mark.parametrize("case", sorted(LINKS))
def test_resume_never_changes_a_linked_victim(experiments, tmp_path, capsys, case, kind):
    exp = tmp_path / "exp"
    shutil.copytree(experiments / kind, exp, symlinks=True)
    victim = make_victim(tmp_path / "victim")
    LINKS[case](exp, victim)
    before = tree_digest(victim)
    capsys.readouterr()
    assert main(["check", str(exp)]) == 1
    out = capsys.readouterr().out
    assert "symbolic link" in out, out
    code = main(["run", str(experiments / "cfg.yaml"), "--out", str(exp), "--resume"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "symbolic link" in err and "Traceback" not in err and err.count("\n") == 1, err
    assert tree_digest(victim) == before


def test_linked_grid_cell_is_refused_and_victim_unchanged(experiments, tmp_path, capsys):
    exp = tmp_path / "grid"
    shutil.copytree(experiments / "grid", exp, symlinks=True)
    cell = sorted(p for p in exp.iterdir() if p.is_dir())[0]
    victim = tmp_path / "victim"
    shutil.move(str(cell), str(victim))
    make_victim(victim / "lam=1" / "seed=0" / "training" / "mine")
    cell.symlink_to(victim, target_is_directory=True)
    before = tree_digest(victim)
    capsys.readouterr()
    assert main(["check", str(exp)]) == 1
    assert "symbolic link" in capsys.readouterr().out
    code = main(["run", str(experiments / "grid.yaml"), "--out", str(exp), "--resume", "--set", "loop.generations=2"])
    err = capsys.readouterr().err
    assert code == 2 and "symbolic link" in err and "Traceback" not in err, err
    assert tree_digest(victim) == before


def test_foreign_entries_are_kept_and_reported(experiments, tmp_path, capsys):
    """Names genloop does not write survive a resume that rolls back, and check notes them."""
    exp = tmp_path / "exp"
    shutil.copytree(experiments / "complete", exp, symlinks=True)
    run = exp / RUN
    (run / "notes.txt").write_text("mine")
    (run / "training").mkdir()
    (run / "training" / "my-backup").mkdir()
    (run / "training" / "my-backup" / "w.bin").write_text("mine")
    (run / "checkpoints" / "README").write_text("mine")
    shutil.rmtree(run / "checkpoints" / "gen_0002")  # damage: resume rolls back to generation 1
    capsys.readouterr()
    assert main(["check", str(exp)]) == 1
    out = capsys.readouterr().out
    for name in ("notes.txt", "training/my-backup/", "checkpoints/README"):
        assert f"{name} is not written by genloop" in out, out
    assert main(["-q", "run", str(experiments / "cfg.yaml"), "--out", str(exp), "--resume"]) == 0
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "training" / "my-backup" / "w.bin").read_text() == "mine"
    assert (run / "checkpoints" / "README").read_text() == "mine"
    assert (run / "checkpoints" / "gen_0002" / "model.json").is_file()


def test_remove_inside_removes_links_not_targets(tmp_path):
    root = tmp_path / "run"
    (root / "sub").mkdir(parents=True)
    victim = make_victim(tmp_path / "victim")
    before = tree_digest(victim)
    (root / "sub" / "gen_0001").symlink_to(victim, target_is_directory=True)
    remove_inside(root, root / "sub" / "gen_0001")
    assert not (root / "sub" / "gen_0001").is_symlink()
    assert tree_digest(victim) == before
    (root / "via").symlink_to(victim, target_is_directory=True)
    with pytest.raises(DataError, match="symbolic link"):
        remove_inside(root, root / "via" / "gen_0001")
    with pytest.raises(DataError, match="not inside"):
        remove_inside(root, root / ".." / "victim")
    assert tree_digest(victim) == before
    scan = scan_run_folder(root)
    assert scan.links == [f"via -> {victim}"] and scan.foreign == ["sub/"]
