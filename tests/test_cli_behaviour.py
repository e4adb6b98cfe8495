"""How the command behaves around a run: interruption, pipes, flags, resume semantics, show."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genloop.cli import main
from genloop.config import parse_config
from genloop.store import RunStore
from genloop.sweep import run_experiment

GOOD = {
    "data": {"name": "two_moons", "n": 100, "noise": 0.05},
    "model": {"name": "gmm", "n_components": 2, "max_iter": 20},
    "loop": {"generations": 3, "lambdas": [0.5, "inf"], "seeds": [0, 1]},
    "metrics": ["w2"],
}


def write(folder: Path, doc: dict) -> str:
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


def test_interrupt_marks_run_stopped_and_resume_continues(tmp_path, capsys):
    cfg = parse_config(GOOD)

    def interrupt(spec, record):  # noqa: ANN001
        if record.generation == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, tmp_path / "exp", progress=interrupt)
    run = tmp_path / "exp" / "lam=0.5" / "seed=0"
    st = status(run)
    assert st["state"] == "stopped" and st["last_generation"] == 1 and "Ctrl-C" in st["reason"]
    assert main(["show", str(run)]) == 0
    assert "state=stopped" in capsys.readouterr().out
    run_experiment(cfg, tmp_path / "exp", resume=True)
    assert status(run)["state"] == "completed"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4


def test_killed_writer_shows_as_interrupted_not_running(tmp_path, capsys):
    run_experiment(parse_config(GOOD), tmp_path / "exp")
    run = tmp_path / "exp" / "lam=0.5" / "seed=0"
    store = RunStore(run)
    store.write_status("running", 2)  # what a kill -9 leaves: "running", and no process holds the lock
    main(["show", str(tmp_path / "exp")])
    assert "interrupted" in capsys.readouterr().out
    with store:  # a live writer holds the lock: another process sees "running"
        code = subprocess.run([sys.executable, "-m", "genloop.cli", "show", str(run)], capture_output=True, text=True)
        assert "state=running" in code.stdout


def test_show_of_a_lambda_folder_lists_its_seeds(tmp_path, capsys):
    run_experiment(parse_config(GOOD), tmp_path / "exp")
    assert main(["show", str(tmp_path / "exp" / "lam=0.5")]) == 0
    out = capsys.readouterr().out
    assert "2 runs" in out


def test_broken_pipe_is_quiet(tmp_path):
    run_experiment(parse_config({**GOOD, "loop": {**GOOD["loop"], "generations": 40, "lambdas": [1], "seeds": [0]}}),
                   tmp_path / "exp")
    run = tmp_path / "exp" / "lam=1" / "seed=0"
    proc = subprocess.run(f"{sys.executable} -m genloop.cli show {run} | head -1", shell=True,
                          capture_output=True, text=True)
    assert proc.stdout.count("\n") == 1
    assert proc.stderr == "", proc.stderr


def test_flags_version_verbose_anywhere_quiet(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("genloop ")
    path = write(tmp_path, GOOD)
    assert main(["run", path, "--out", str(tmp_path / "a"), "-v", "--set", "loop.generations=0"]) == 0
    assert "generation 0/0 done" in capsys.readouterr().err
    assert main(["-q", "run", path, "--out", str(tmp_path / "b"), "--set", "loop.generations=0"]) == 0
    assert capsys.readouterr().err == ""  # quiet: no bar, no log lines


def test_non_terminal_output_gets_one_line_per_generation(tmp_path, capsys):
    assert main(["run", write(tmp_path, GOOD), "--out", str(tmp_path / "exp")]) == 0
    err = capsys.readouterr().err
    assert err.count("generation 3/3 done") == 4  # every run's last generation


def test_resume_semantics_for_generations(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    out = str(tmp_path / "exp")
    assert main(["run", path, "--out", out]) == 0
    capsys.readouterr()
    assert main(["run", path, "--out", out, "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    # shortening is refused, and nothing changes
    before = (tmp_path / "exp" / "config.yaml").read_text()
    assert main(["run", path, "--out", out, "--resume", "--set", "loop.generations=2"]) == 2
    assert "shortening" in capsys.readouterr().err
    assert (tmp_path / "exp" / "config.yaml").read_text() == before
    # extending is allowed: the stored configs (experiment and runs) say what the runs hold
    assert main(["run", path, "--out", out, "--resume", "--set", "loop.generations=5"]) == 0
    assert yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())["loop"]["generations"] == 5
    run = tmp_path / "exp" / "lam=inf" / "seed=1"
    assert yaml.safe_load((run / "config.yaml").read_text())["loop"]["generations"] == 5
    assert status(run)["last_generation"] == 5


def test_locked_experiment_is_refused_before_any_change(tmp_path, capsys):
    from genloop.sweep.runs import experiment_lock

    path = write(tmp_path, GOOD)
    out = tmp_path / "exp"
    assert main(["run", path, "--out", str(out)]) == 0
    before = (out / "config.yaml").read_text()
    script = ("import sys, time; from pathlib import Path; from genloop.sweep.runs import experiment_lock\n"
              f"lock = experiment_lock(Path({str(out)!r})); lock.acquire(); print('held', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert main(["run", path, "--out", str(out), "--resume", "--set", "loop.generations=5"]) == 2
        err = capsys.readouterr().err
        assert "being written by another process (pid" in err
        assert (out / "config.yaml").read_text() == before
    finally:
        holder.kill()
        holder.wait()
    with experiment_lock(out):  # released by the kernel when the holder died
        pass


def test_check_reports_intact_and_damaged_runs(tmp_path, capsys):
    run_experiment(parse_config(GOOD), tmp_path / "exp")
    assert main(["check", str(tmp_path / "exp")]) == 0
    assert "4 run(s), 4 intact" in capsys.readouterr().out
    ckpt = tmp_path / "exp" / "lam=inf" / "seed=0" / "checkpoints" / "gen_0002" / "model.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    before = {p: p.read_bytes() for p in (tmp_path / "exp").rglob("*") if p.is_file()}
    assert main(["check", str(tmp_path / "exp")]) == 1
    out = capsys.readouterr().out
    assert "resume rolls back to 1" in out and "gen_0002/model.safetensors is damaged" in out
    assert {p: p.read_bytes() for p in (tmp_path / "exp").rglob("*") if p.is_file()} == before  # changes nothing


def test_file_modes_are_uniform(tmp_path):
    run_experiment(parse_config(GOOD), tmp_path / "exp")
    modes = {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "exp").rglob("*") if p.is_file()}
    assert len(modes) == 1, modes
