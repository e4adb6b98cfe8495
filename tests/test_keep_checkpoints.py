"""``output.checkpoints`` (or ``keep_checkpoints``): all, last, {every: k}; and resume under each.

The guarantee (docs/runs.md): a run always keeps its newest completed generation's checkpoint,
so ``--resume`` continues from it; after damage it continues from the newest intact generation
whose checkpoint is kept (recomputing the rest), and the result is the uninterrupted run's,
byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from genloop.cli import main
from genloop.config import parse_config
from genloop.errors import ConfigError
from genloop.store import RunStore
from genloop.store.run import checkpoints_kept, keeps_checkpoint

DOC = {
    "data": {"name": "two_moons", "n": 100, "noise": 0.05},
    "model": {"name": "gmm", "n_components": 2, "max_iter": 20},
    "loop": {"generations": 5, "lambdas": [0.5], "seeds": [0]},
    "metrics": ["w2"],
}
POLICIES = {"all": ("all", [0, 1, 2, 3, 4, 5]), "last": ("last", [5]), "every-2": ({"every": 2}, [0, 2, 4, 5])}


def run(tmp_path: Path, policy: object, out: str, *extra: str) -> Path:
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump({**DOC, "output": {"keep_checkpoints": policy}}))
    assert main(["run", str(path), "--out", str(tmp_path / out), *extra]) == 0
    return tmp_path / out / "lam=0.5" / "seed=0"


def kept(run_dir: Path) -> list[int]:
    return sorted(int(p.name[4:]) for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("gen_"))


def test_policy_rule() -> None:
    assert [t for t in range(8) if keeps_checkpoint({"every": 3}, t, 7)] == [0, 3, 6, 7]
    assert [t for t in range(8) if keeps_checkpoint("last", t, 7)] == [7]
    assert [t for t in range(8) if keeps_checkpoint("all", t, 7)] == list(range(8))
    # at most this many at once (the newest, and the one being written)
    assert checkpoints_kept({"every": 3}, 7) == 4 and checkpoints_kept("last", 7) == 2 and checkpoints_kept("all", 7) == 8
    with pytest.raises(ConfigError, match="every: k"):
        parse_config({**DOC, "output": {"keep_checkpoints": {"every": 0}}})
    with pytest.raises(ConfigError, match="mixture"):
        parse_config({**DOC, "loop": {**DOC["loop"], "variant": {"kind": "mixture"}}, "output": {"checkpoints": {"every": 2}}})
    assert parse_config({**DOC, "output": {"keep_checkpoints": "last"}}).resolved()["output"]["checkpoints"] == "last"


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_resume_under_each_policy_equals_the_uninterrupted_run(tmp_path, capsys, name) -> None:
    policy, expected = POLICIES[name]
    full = run(tmp_path, policy, "full")
    assert kept(full) == expected
    assert RunStore(full).verify().ok  # the checkpoints the policy drops are not missed
    reference = (full / "metrics.jsonl").read_bytes()

    # extended: 3 generations, then --resume to 5
    part = run(tmp_path, policy, "part", "--set", "loop.generations=3")
    run(tmp_path, policy, "part", "--resume")
    assert (part / "metrics.jsonl").read_bytes() == reference and kept(part) == expected
    for t in (2, 5):
        np.testing.assert_array_equal(np.load(part / f"samples/gen_{t:04d}.npy"), np.load(full / f"samples/gen_{t:04d}.npy"))

    # damaged: generation 4's samples are altered, so generations 4 and 5 are redone from the newest
    # intact generation whose checkpoint is kept: 3 (all), 2 (every 2), none (last: from the start)
    samples = part / "samples" / "gen_0004.npy"
    samples.write_bytes(samples.read_bytes()[:-8] + b"\1" * 8)
    capsys.readouterr()
    run(tmp_path, policy, "part", "--resume")  # the command logs its warnings to stderr
    messages = capsys.readouterr().err.splitlines()
    assert any("rolling back from generation 5 to 3" in m for m in messages), messages
    start = {"all": None, "every-2": "generation 2", "last": "the start"}[name]
    assert any(f"continues from {start}" in m for m in messages) == (start is not None), messages
    assert (part / "metrics.jsonl").read_bytes() == reference and kept(part) == expected
    assert RunStore(part).verify().ok
