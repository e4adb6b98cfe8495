"""A full disk in ``genloop convert`` and ``genloop eval --save-stats`` is handled as in
``genloop run``: exit 2, one line saying the disk is full, and nothing half-written (an output
that existed before is left byte for byte as it was; no temporary file stays behind).

The full disk is simulated: the writer writes part of its file, then the operating system's
ENOSPC is raised, as a real full disk does mid-write.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from genloop.cli import main


def _enospc(path: object) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("existing", [False, True])
def test_eval_save_stats_on_a_full_disk(tmp_path, capsys, monkeypatch, existing):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.normal(size=(40, 3)))
    np.save(tmp_path / "b.npy", rng.normal(size=(40, 3)))
    out = tmp_path / "stats"
    out.mkdir()
    if existing:
        (out / "s.npz").write_bytes(b"the previous statistics")
    before = _listing(out)
    real_savez = np.savez

    def full_disk_savez(file, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        Path(file).write_bytes(b"PK\x03\x04 half a zip")  # part of the file reached the disk
        raise _enospc(file)

    monkeypatch.setattr(np, "savez", full_disk_savez)
    code = main(["eval", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--features", "raw",
                 "--save-stats", str(out / "s.npz")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "is full" in err and "Traceback" not in err and err.count("\n") == 1, err
    assert _listing(out) == before  # nothing half-written, no temporary file left
    monkeypatch.setattr(np, "savez", real_savez)
    assert main(["eval", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--features", "raw",
                 "--save-stats", str(out / "s.npz")]) == 0
    with np.load(out / "s.npz") as f:
        assert f["mu"].shape == (3,) and f["sigma"].shape == (3, 3)


@pytest.mark.parametrize("existing", [False, True])
def test_convert_on_a_full_disk(tmp_path, capsys, monkeypatch, existing):
    """The converter writes the weights, then the disk fills while the sidecar is written."""
    import genloop.models.neural.checkpoints as checkpoints

    snap = tmp_path / "snap.pkl"
    snap.write_bytes(b"a snapshot")
    out = tmp_path / "models"
    out.mkdir()
    if existing:
        (out / "net.safetensors").write_bytes(b"old weights")
        (out / "net.json").write_text('{"old": true}')
    before = _listing(out)

    def convert_until_full(src, dst, *, key="ema"):  # noqa: ANN001, ANN202
        dst = Path(dst)
        dst.write_bytes(b"new weights")
        dst.with_suffix(".json").write_text('{"class_na')
        raise _enospc(dst.with_suffix(".json"))

    monkeypatch.setattr(checkpoints, "convert_edm_pickle", convert_until_full)
    argv = ["convert", "edm-pkl", str(snap), str(out / "net.safetensors"), *(["--force"] if existing else [])]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "is full" in err and "nothing was written" in err and "Traceback" not in err and err.count("\n") == 1, err
    assert _listing(out) == before
    assert [p.name for p in out.iterdir()] == sorted(before)  # no temporary folder left behind

    def convert_ok(src, dst, *, key="ema"):  # noqa: ANN001, ANN202
        dst = Path(dst)
        dst.write_bytes(b"new weights")
        dst.with_suffix(".json").write_text(json.dumps({"class_name": "EDMPrecond", "event_shape": [3, 8, 8],
                                                        "network": {"kind": "songunet"}}))
        return dst, dst.with_suffix(".json")

    monkeypatch.setattr(checkpoints, "convert_edm_pickle", convert_ok)
    assert main(["convert", "edm-pkl", str(snap), str(out / "net.safetensors"), "--force"]) == 0
    assert (out / "net.safetensors").read_bytes() == b"new weights"
    assert sorted(p.name for p in out.iterdir()) == ["net.json", "net.safetensors"]
