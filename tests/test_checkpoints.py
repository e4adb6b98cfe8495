"""Public checkpoints as generation 0: every format loads into the configured network and gives
the writer's outputs; pickles are read without running anything stored in them."""

from __future__ import annotations

import builtins
import io
import json
import pickle
import struct
import subprocess
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from genloop.cli import main
from genloop.errors import ConfigError, DataError
from genloop.models import make_model
from genloop.models.io import save_model
from genloop.models.neural.checkpoints import (
    PersistentRecord,
    convert_edm_pickle,
    edm_architecture,
    read_edm_pickle,
    read_torch_checkpoint,
)
from genloop.models.neural.networks import NetworkConfig, build_network

SMALL = {"channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4], "dropout": 0.0}
SHAPE = (3, 8, 8)


def _net(kind: str, preset: str | None = None, seed: int = 0) -> nn.Module:
    cfg = NetworkConfig(kind=kind, preset=preset, **SMALL)
    net = build_network(cfg, SHAPE, generator=torch.Generator().manual_seed(seed)).eval()
    with torch.no_grad():  # away from the near-zero init of the output layers, so outputs are informative
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed + 1)))
    return net


def _probe(net: nn.Module) -> torch.Tensor:
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return net(x, torch.tensor([0.3, -0.4]))


# ---- a fake EDM snapshot, written the way EDM's persistence module writes one --------------------
@pytest.fixture
def edm_modules(monkeypatch):
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # what unsafe loading would call (it execs module_src)
        raise AssertionError("EDM's persistence hook must never run")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict
    for name, mod in {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
                      "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}.items():
        monkeypatch.setitem(sys.modules, name, mod)

    class Persistent:
        """An object that pickles as EDM's persistent classes do: (hook, (meta,))."""

        def __init__(self, class_name, state, module_src="# the class source would be here\n"):
            self.class_name, self.state, self.module_src = class_name, state, module_src

        def __reduce__(self):
            meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
            return (persistence._reconstruct_persistent_obj, (meta,))

    def record(module: nn.Module, class_name=None, kwargs=None, module_src=None):
        children = OrderedDict()
        for name, child in module.named_children():
            if isinstance(child, nn.ModuleDict):  # EDM uses plain torch.nn.ModuleDict containers
                container = nn.ModuleDict()
                container.__dict__["_modules"] = OrderedDict((n, record(c)) for n, c in child.items())
                children[name] = container
            else:
                children[name] = record(child)
        state = {"training": False, "_parameters": OrderedDict(module._parameters),
                 "_buffers": OrderedDict(module._buffers), "_non_persistent_buffers_set": set(),
                 "_modules": children, "_init_args": (), "_init_kwargs": EasyDict(kwargs or {})}
        extra = {} if module_src is None else {"module_src": module_src}
        return Persistent(class_name or type(module).__name__, state, **extra)

    return types.SimpleNamespace(record=record, Persistent=Persistent, EasyDict=EasyDict)


def _write_snapshot(edm, net, path, module_src=None):
    kwargs = dict(img_resolution=8, img_channels=3, label_dim=0, use_fp16=False, sigma_data=0.5,
                  model_type="SongUNet", embedding_type="positional", model_channels=32, channel_mult=[1, 2])
    data = {"ema": edm.record(net, "EDMPrecond", kwargs, module_src=module_src),
            "loss_fn": edm.Persistent("EDMLoss", {"P_mean": -1.2, "P_std": 1.2, "sigma_data": 0.5}),
            "augment_pipe": None, "dataset_kwargs": edm.EasyDict(path="cifar10.zip", xflip=False)}
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=4)


@pytest.mark.parametrize("preset", ["edm-cifar10-uncond-vp", "edm-cifar10-uncond-ve"])
def test_edm_snapshot_converts_and_reproduces_the_network(tmp_path, edm_modules, preset) -> None:
    writer = _net("songunet", preset)
    _write_snapshot(edm_modules, writer, tmp_path / "snap.pkl")
    weights, sidecar = convert_edm_pickle(tmp_path / "snap.pkl", tmp_path / "net.safetensors")
    meta = json.loads(sidecar.read_text())
    assert meta["class_name"] == "EDMPrecond" and meta["event_shape"] == [3, 8, 8] and meta["precond"] == "edm"
    model = make_model("edm", network={"kind": "songunet", "preset": preset, **SMALL})
    model.load_init(weights)  # the image shape comes from the sidecar
    torch.testing.assert_close(_probe(model.net_), _probe(writer), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_probe(model.ema_), _probe(writer), rtol=1e-5, atol=1e-5)
    # the snapshot itself loads the same way (restricted unpickler, no conversion step)
    direct = make_model("edm", network={"kind": "songunet", "preset": preset, **SMALL}).load_init(tmp_path / "snap.pkl")
    torch.testing.assert_close(_probe(direct.net_), _probe(writer), rtol=1e-5, atol=1e-5)
    assert direct.sample(2, rng=np.random.default_rng(0)).shape == (2, *SHAPE)


def test_stored_source_is_never_executed(tmp_path, edm_modules) -> None:
    marker = tmp_path / "pwned"
    _write_snapshot(edm_modules, _net("songunet"), tmp_path / "snap.pkl",
                    module_src=f"open({str(marker)!r}, 'w').close()\nclass EDMPrecond: pass\n")
    data = read_edm_pickle(tmp_path / "snap.pkl")
    assert isinstance(data["ema"], PersistentRecord) and data["ema"].class_name == "EDMPrecond"
    convert_edm_pickle(tmp_path / "snap.pkl", tmp_path / "net.safetensors")
    assert not marker.exists()
    assert "pwned" not in (tmp_path / "net.json").read_text()


class _Evil:
    """Unpickling this (unsafely) creates a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path) -> None:
    marker, proof = tmp_path / "created-by-pickle", tmp_path / "proof"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"ema": _Evil(marker)}))
    pickle.loads(pickle.dumps(_Evil(proof))).close()  # loaded unsafely, such a pickle does create a file
    assert proof.exists()
    with pytest.raises(DataError, match=r"refused to load the global io\.open"):
        read_edm_pickle(evil)
    with pytest.raises(DataError, match="refused"):
        make_model("edm", network={"kind": "songunet", **SMALL}).load_init(evil, event_shape=SHAPE)
    assert not marker.exists()
    # a torch file is read with weights_only: the same object inside is refused too
    evil_pt = tmp_path / "evil.pt"
    torch.save({"ema_model": _Evil(marker)}, evil_pt)
    with pytest.raises(DataError, match="weights_only"):
        read_torch_checkpoint(evil_pt)
    assert not marker.exists()
    # and through the CLI: exit 2, one line, no traceback, no output written
    r = subprocess.run([sys.executable, "-m", "genloop.cli", "convert", "edm-pkl", str(evil), str(tmp_path / "o.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "refused" in r.stderr and "Traceback" not in r.stderr
    assert not marker.exists() and not (tmp_path / "o.safetensors").exists()


def test_convert_cli(tmp_path, edm_modules, capsys) -> None:
    _write_snapshot(edm_modules, _net("songunet"), tmp_path / "snap.pkl")
    out = tmp_path / "net.safetensors"
    assert main(["convert", "edm-pkl", str(tmp_path / "snap.pkl"), str(out)]) == 0
    assert out.is_file() and (tmp_path / "net.json").is_file()
    assert out.stat().st_mode & 0o777 == (tmp_path / "net.json").stat().st_mode & 0o777  # one file mode
    assert main(["convert", "edm-pkl", str(tmp_path / "snap.pkl"), str(out)]) == 2  # exists, no --force
    assert main(["convert", "edm-pkl", str(tmp_path / "snap.pkl"), str(out), "--key", "loss_fn", "--force"]) == 2
    assert main(["convert", "edm-pkl", str(tmp_path / "missing.pkl"), str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "not a network" in err and "not found" in err


def test_convert_module_imports_without_torch() -> None:
    code = "import sys, genloop.cli.convert, genloop.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sidecar_names_the_matching_preset() -> None:
    kw = dict(img_resolution=32, img_channels=3, label_dim=0, model_type="SongUNet", embedding_type="positional",
              encoder_type="standard", decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1],
              model_channels=128, channel_mult=[2, 2, 2], dropout=0.13, augment_dim=9)
    meta = edm_architecture(PersistentRecord("EDMPrecond", init_kwargs=kw))
    assert meta["network"] == {"kind": "songunet", "preset": "edm-cifar10-uncond-vp", "dropout": 0.13}
    ffhq = edm_architecture(PersistentRecord("EDMPrecond", init_kwargs={**kw, "img_resolution": 64, "channel_mult": [1, 2, 2, 2], "dropout": 0.05}))
    assert ffhq["network"]["preset"] == "edm-ffhq64-uncond-vp" and ffhq["event_shape"] == [3, 64, 64]


# ---- torch checkpoints ------------------------------------------------------------------------------
def test_otcfm_checkpoint_gives_its_ema_weights(tmp_path) -> None:
    net, ema = _net("adm", seed=0), _net("adm", seed=5)
    prefixed = lambda m: {f"module.{k}": v for k, v in m.state_dict().items()}  # noqa: E731 - DataParallel keys
    opt = torch.optim.Adam(net.parameters())
    torch.save({"net_model": prefixed(net), "ema_model": prefixed(ema), "optim": opt.state_dict(), "step": 400_000},
               tmp_path / "otcfm_cifar10_weights_step_400000.pt")
    model = make_model("otcfm", network={"kind": "adm", **SMALL}).load_init(
        tmp_path / "otcfm_cifar10_weights_step_400000.pt", event_shape=SHAPE)
    torch.testing.assert_close(_probe(model.net_), _probe(ema), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(_probe(model.net_), _probe(net))
    picked = make_model("otcfm", network={"kind": "adm", **SMALL}).load_init(
        tmp_path / "otcfm_cifar10_weights_step_400000.pt", event_shape=SHAPE, key="net_model")
    torch.testing.assert_close(_probe(picked.net_), _probe(net), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["state_dict", "ddim_list"])
def test_ddpm_checkpoint_loads(tmp_path, layout) -> None:
    net, ema = _net("ddpm", seed=0), _net("ddpm", seed=3)
    obj = net.state_dict() if layout == "state_dict" else [net.state_dict(), {}, 10, 1000, ema.state_dict()]
    torch.save(obj, tmp_path / "model-790000.ckpt")
    model = make_model("ddpm", network={"kind": "ddpm", **SMALL}).load_init(tmp_path / "model-790000.ckpt", event_shape=SHAPE)
    torch.testing.assert_close(_probe(model.net_), _probe(net if layout == "state_dict" else ema), rtol=1e-5, atol=1e-5)


def test_wrong_network_is_a_config_error(tmp_path) -> None:
    torch.save(_net("ddpm").state_dict(), tmp_path / "ddpm.ckpt")
    with pytest.raises(ConfigError, match="do not fit the configured network.*missing"):
        make_model("edm", network={"kind": "songunet", **SMALL}).load_init(tmp_path / "ddpm.ckpt", event_shape=SHAPE)
    with pytest.raises(ConfigError, match="image shape"):
        from safetensors.torch import save_file

        save_file(_net("ddpm").state_dict(), str(tmp_path / "bare.safetensors"))
        make_model("ddpm", network={"kind": "ddpm", **SMALL}).load_init(tmp_path / "bare.safetensors")
    with pytest.raises(DataError, match="not found"):
        make_model("ddpm").load_init(tmp_path / "nope.ckpt")
    with pytest.raises(DataError, match="unknown checkpoint type"):
        (tmp_path / "x.h5").write_bytes(b"")
        make_model("ddpm").load_init(tmp_path / "x.h5")


def test_genloop_generation_folder_restores_the_whole_state(tmp_path) -> None:
    X = np.tanh(np.random.default_rng(0).normal(size=(16, *SHAPE)))
    opts = dict(network={"kind": "ddpm", **SMALL}, train={"samples": 16, "batch_size": 8, "device": "cpu",
                                                          "ema_halflife_samples": 100.0}, sample_steps=2)
    fitted = make_model("ddpm", **opts).fit(X, rng=np.random.default_rng(1))
    save_model(fitted, tmp_path / "gen-003")
    loaded = make_model("ddpm", **opts).load_init(tmp_path / "gen-003")
    a, b = fitted.get_state()[0], loaded.get_state()[0]
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="holds a 'ddpm' model"):
        make_model("edm", network={"kind": "ddpm", **SMALL}).load_init(tmp_path / "gen-003")


# ---- generation 0 from a checkpoint, and the official fine-tuning -------------------------------------
def test_init_option_fine_tunes_generation_0_from_the_checkpoint(tmp_path) -> None:
    ckpt = _net("ddpm", seed=4)
    torch.save(ckpt.state_dict(), tmp_path / "ddpm.ckpt")
    X = np.tanh(np.random.default_rng(0).normal(size=(16, *SHAPE)))
    train = {"samples": 16, "batch_size": 8, "device": "cpu", "lr": 1e-9, "ema_halflife_samples": 1e6,
             "carry_over": ["ema_as_weights"]}
    model = make_model("ddpm", network={"kind": "ddpm", **SMALL}, train=train, sample_steps=2,
                       init=str(tmp_path / "ddpm.ckpt"))
    model.fit(X, rng=np.random.default_rng(1))  # generation 0: fine-tune the checkpoint on X
    torch.testing.assert_close(_probe(model.net_), _probe(ckpt), rtol=1e-4, atol=1e-4)
    scratch = make_model("ddpm", network={"kind": "ddpm", **SMALL}, train=train, sample_steps=2).fit(X, rng=np.random.default_rng(1))
    assert not torch.allclose(_probe(scratch.net_), _probe(ckpt), atol=1e-2)


def test_ema_as_weights_is_the_official_transfer(tmp_path) -> None:
    # EDM --transfer: the previous EMA goes into both the network and the EMA, and the EMA
    # half-life ramps from zero, so a generation ends with EMA close to the weights
    X = np.random.default_rng(0).normal(size=(64, 2))
    base = {"samples": 640, "batch_size": 32, "device": "cpu", "lr": 1e-2, "ema_halflife_samples": 5e5}
    prev = make_model("edm", network={"hidden": 16, "depth": 2}, train=base).fit(X, rng=np.random.default_rng(1))

    def gap(model) -> float:
        w = torch.cat([p.detach().flatten() for p in model.net_.parameters()])
        e = torch.cat([p.flatten() for p in model.ema_.parameters()])
        return float((w - e).norm() / w.norm())

    runs = {}
    for carry in (["weights", "ema"], ["ema_as_weights"]):
        m = make_model("edm", network={"hidden": 16, "depth": 2}, train={**base, "carry_over": carry})
        runs[carry[0]] = m.fit(X + 0.5, rng=np.random.default_rng(2), init=prev)
    assert gap(runs["ema_as_weights"]) < 0.05 * gap(runs["weights"])
    # the fine-tune started from the previous EMA, not from the previous raw weights
    first = make_model("edm", network={"hidden": 16, "depth": 2},
                       train={**base, "samples": 32, "lr": 1e-12, "carry_over": ["ema_as_weights"]})
    first.fit(X, rng=np.random.default_rng(3), init=prev)
    for p, q in zip(first.net_.parameters(), prev.ema_.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)


def test_check_data_catches_a_bad_init_or_image_size_before_a_run(tmp_path) -> None:
    model = make_model("edm", network={"kind": "songunet", "preset": "edm-cifar10-uncond-vp"})
    model.check_data((3, 32, 32), 10)
    with pytest.raises(ConfigError, match="not divisible"):
        model.check_data((3, 30, 30), 10)
    with pytest.raises(ConfigError, match="does not exist"):
        make_model("edm", init=str(tmp_path / "missing.pkl")).check_data((3, 32, 32), 10)
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a checkpoint genloop reads"):
        make_model("edm", init=str(tmp_path / "weights.h5")).check_data((3, 32, 32), 10)


def test_sidecar_preconditioning_must_match_the_model(tmp_path) -> None:
    from safetensors.torch import save_file

    net = _net("songunet", "baseline-cifar10-uncond-vp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "vp.safetensors"))
    (tmp_path / "vp.json").write_text(json.dumps({"event_shape": list(SHAPE), "precond": "vp"}))
    opts = {"kind": "songunet", "preset": "baseline-cifar10-uncond-vp", **SMALL}
    loaded = make_model("edm", network=opts, precond="vp").load_init(tmp_path / "vp.safetensors")
    torch.testing.assert_close(_probe(loaded.net_), _probe(net), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="set the model option precond: vp"):
        make_model("edm", network={**opts, "preset": "edm-cifar10-uncond-vp"}).load_init(tmp_path / "vp.safetensors")


def test_run_loop_can_take_the_checkpoint_as_generation_0(tmp_path) -> None:
    from genloop.loop.engine import run_loop

    ckpt = _net("ddpm", seed=4)
    torch.save(ckpt.state_dict(), tmp_path / "ddpm.ckpt")
    X = np.tanh(np.random.default_rng(0).normal(size=(16, *SHAPE)))
    opts = dict(network={"kind": "ddpm", **SMALL}, sample_steps=2, train={"samples": 16, "batch_size": 8, "device": "cpu"})
    model = make_model("ddpm", **opts, init=str(tmp_path / "ddpm.ckpt"))
    records = list(run_loop(model, X, lam=1, generations=1, train_generation_0=False))
    torch.testing.assert_close(_probe(records[0].model.net_), _probe(ckpt), rtol=0, atol=0)  # as it is
    assert not torch.allclose(_probe(records[1].model.net_), _probe(ckpt))  # generation 1 fine-tuned it
    with pytest.raises(ConfigError, match="init: PATH"):
        next(run_loop(make_model("ddpm", **opts), X, lam=1, generations=1, train_generation_0=False))


# ---- genuine EDM snapshots: numpy numbers in the recorded arguments (issue 26) --------------------
# EDM's constructors pass numpy values (SongUNet: init_weight=np.sqrt(0.2), skip_scale=np.sqrt(0.5));
# persistence records them in _init_kwargs and the module's __dict__, so the pickle names
# numpy._core.multiarray.scalar (numpy.core.multiarray.scalar in files written with numpy 1) and numpy.dtype.
NUMPY_KWARGS = {"sigma_min": np.float64(0.002), "sigma_max": np.float64(80.0), "skip_scale": np.float32(np.sqrt(0.5)),
                "init_attn": {"init_mode": "xavier_uniform", "init_weight": np.sqrt(0.2)}, "flag": np.bool_(True),
                "count": np.int64(-7), "small": np.uint8(200), "half": np.float16(0.25)}


def _with_numpy(persistent) -> None:
    """Add numpy numbers where EDM's networks have them: every child's kwargs and attributes."""
    persistent.state["_init_kwargs"].update(skip_scale=np.sqrt(0.5), init_weight=np.float32(1e-5))
    persistent.state["skip_scale"] = np.sqrt(0.5)
    for child in persistent.state["_modules"].values():
        if hasattr(child, "state"):
            _with_numpy(child)
        else:  # a torch.nn.ModuleDict holding records
            for c in child._modules.values():
                _with_numpy(c)


def _numpy_snapshot(edm, net, path, *, numpy1_names: bool) -> None:
    kwargs = dict(img_resolution=8, img_channels=3, label_dim=0, use_fp16=False, sigma_data=0.5,
                  model_type="SongUNet", embedding_type="positional", model_channels=32, channel_mult=[1, 2], **NUMPY_KWARGS)
    ema = edm.record(net, "EDMPrecond", kwargs)
    for child in ema.state["_modules"].values():
        _with_numpy(child)
    data = {"ema": ema, "loss_fn": edm.Persistent("EDMLoss", {"P_mean": np.float64(-1.2), "_init_kwargs": {}}),
            "augment_pipe": None, "dataset_kwargs": edm.EasyDict(path="cifar10.zip", xflip=False)}
    if not numpy1_names:
        blob = pickle.dumps(data, protocol=4)
        assert b"numpy._core.multiarray" in blob and b"scalar" in blob and b"dtype" in blob
    else:  # protocol 3 names globals in text lines, so the numpy 1 module name can be put in place
        blob = pickle.dumps(data, protocol=3)
        assert blob.count(b"cnumpy._core.multiarray\nscalar\n") == 1 and b"cnumpy\ndtype\n" in blob
        blob = blob.replace(b"cnumpy._core.multiarray\nscalar\n", b"cnumpy.core.multiarray\nscalar\n")
    path.write_bytes(blob)


@pytest.mark.parametrize("numpy1_names", [False, True], ids=["numpy2-names", "numpy1-names"])
def test_genuine_snapshot_with_numpy_numbers_converts_exactly(tmp_path, edm_modules, numpy1_names) -> None:
    from safetensors.torch import load_file

    writer = _net("songunet", "edm-cifar10-uncond-vp")
    _numpy_snapshot(edm_modules, writer, tmp_path / "snap.pkl", numpy1_names=numpy1_names)
    data = read_edm_pickle(tmp_path / "snap.pkl")
    kw = data["ema"].init_kwargs
    for name, value in NUMPY_KWARGS.items():  # rebuilt as the same numpy scalar: type and bits
        got = kw[name]["init_weight"] if name == "init_attn" else kw[name]
        want = value["init_weight"] if name == "init_attn" else value
        assert type(got) is type(want) and got.tobytes() == want.tobytes(), name
    block = data["ema"].state["_modules"]["model"].state["_modules"]["enc"].state["_modules"]
    first = next(iter(block.values()))
    assert type(first.state["skip_scale"]) is np.float64 and first.state["skip_scale"] == np.sqrt(0.5)
    weights, sidecar = convert_edm_pickle(tmp_path / "snap.pkl", tmp_path / "net.safetensors")
    stored = load_file(str(weights))
    assert stored.keys() == writer.state_dict().keys()
    for k, v in writer.state_dict().items():
        assert torch.equal(stored[k], v.float()), k
    meta = json.loads(sidecar.read_text())
    side = meta["init_kwargs"]
    assert side["sigma_min"] == 0.002 and side["sigma_max"] == 80.0 and side["flag"] is True
    assert side["count"] == -7 and side["small"] == 200 and side["half"] == 0.25
    assert side["skip_scale"] == float(np.float32(np.sqrt(0.5))) and side["init_attn"]["init_weight"] == float(np.sqrt(0.2))
    assert meta["class_name"] == "EDMPrecond" and meta["precond"] == "edm" and meta["event_shape"] == [3, 8, 8]


def _op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _op_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _op_bytes(b: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(b)) + b


def _payload(marker) -> bytes:
    """Opcodes that, unpickled unsafely, create ``marker`` (open(marker, 'w'))."""
    return _op_global("builtins", "open") + b"(" + _op_str(str(marker)) + _op_str("w") + b"tR"


F8 = _op_global("numpy", "dtype") + b"(" + _op_str("f8") + b"\x89\x88tR"  # numpy.dtype('f8', False, True)
PLAIN_STATE = b"(K\x03" + _op_str("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"  # its __setstate__ tuple
SCALAR2, SCALAR1 = _op_global("numpy._core.multiarray", "scalar"), _op_global("numpy.core.multiarray", "scalar")
NUMPY_ATTACKS = {  # one pickle per way of misusing the numpy globals; the payload follows each
    "dtype of objects": (_op_global("numpy", "dtype") + b"(" + _op_str("O") + b"\x89\x88tR", r"numpy.dtype of 'O'"),
    "dtype of a structure": (_op_global("numpy", "dtype") + b"(" + _op_str("f8,O") + b"\x89\x88tR", r"numpy.dtype of 'f8,O'"),
    "dtype of a non-string": (_op_global("numpy", "dtype") + b"(]\x89\x88tR", "numpy.dtype of list"),
    "dtype state with fields": (F8 + b"(K\x03" + _op_str("|") + b"N(" + _op_str("a") + b"t}NNK\x00tb",
                                "not a plain dtype"),
    "dtype result called": (F8 + PLAIN_STATE + b"b)R", "refused to call"),
    "dtype as a class": (_op_global("numpy", "dtype") + b")\x81", "refused to create an instance"),
    "state set on numpy.dtype": (_op_global("numpy", "dtype") + b"N}" + _op_str("__defaults__") + b"N" + b"s\x86b",
                                 "refused to set the state"),
    "scalar of an object dtype": (SCALAR2 + b"(" + _op_str("O") + _op_bytes(b"\0" * 8) + b"tR", "numpy scalar of 'O'"),
    "scalar of a wrong size": (SCALAR2 + b"(" + F8 + PLAIN_STATE + b"b" + _op_bytes(b"\0" * 3) + b"tR", "from 3 bytes"),
    "scalar from a non-bytes": (SCALAR1 + b"(" + F8 + PLAIN_STATE + b"b" + b"]tR", "from list, not bytes"),
    "numpy 1 scalar of an object dtype": (SCALAR1 + b"(" + _op_str("O") + _op_bytes(b"\0" * 8) + b"tR", "numpy scalar of 'O'"),
}


def test_numpy_attack_payload_is_armed(tmp_path) -> None:
    """The payload the attacks carry does create its file when unpickled unsafely."""
    pickle.loads(b"\x80\x03" + _payload(tmp_path / "proof") + b".").close()
    assert (tmp_path / "proof").exists()
    numbers = pickle.loads(b"\x80\x03(" + SCALAR2 + b"(" + F8 + PLAIN_STATE + b"b" + _op_bytes(np.float64(0.5).tobytes())
                           + b"tR" + SCALAR1 + b"(" + F8 + PLAIN_STATE + b"b" + _op_bytes(np.float64(2).tobytes()) + b"tRt.")
    assert numbers == (0.5, 2.0)  # the hand-written numpy opcodes are what numpy itself reads


@pytest.mark.parametrize("case", sorted(NUMPY_ATTACKS))
def test_numpy_globals_are_data_only(tmp_path, case) -> None:
    ops, message = NUMPY_ATTACKS[case]
    marker = tmp_path / "created-by-pickle"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"\x80\x03}" + _op_str("ema") + ops + b"s" + _op_str("x") + _payload(marker) + b"s.")
    with pytest.raises(DataError, match=message):
        read_edm_pickle(evil)
    assert not marker.exists()
    numbers = tmp_path / "numbers.pkl"  # and the legitimate use of the same globals reads
    numbers.write_bytes(b"\x80\x03}" + _op_str("x") + SCALAR2 + b"(" + F8 + PLAIN_STATE + b"b"
                        + _op_bytes(np.float64(0.5).tobytes()) + b"tRs.")
    assert read_edm_pickle(numbers) == {"x": 0.5}


# ---- hostile pickles (issue 20): each is a DataError, exit 2, one line, in seconds, nothing runs -----
def _top(ops: bytes, marker, payload: bool = True) -> bytes:
    """A protocol-4 pickle of {'ema': <ops>, 'z': <payload>}. Files refused only once read
    whole (nesting, object counts, non-tensor parameters) carry no payload: its global would
    be refused first."""
    tail = _op_str("z") + _payload(marker) + b"s" if payload else b""
    return b"\x80\x04}" + _op_str("ema") + ops + b"s" + tail + b"."


def _memo_bomb(folder, edm, marker):
    # the C unpickler sizes its memo array by the largest index: 4 billion entries asked for by 5 bytes
    blob = b"\x80\x04}\x94r\xff\xff\xff\xffN\x94r\xfe\xff\xff\xffNr\xfd\xff\xff\xff00."
    assert len(blob) == 25
    return blob


def _dag_in_init_kwargs(folder, edm, marker):
    leaf: list = [0]
    for _ in range(64):  # 2^64 leaves, 65 lists: pickle writes each once and refers to it by memo
        leaf = [leaf, leaf]
    rec = edm.Persistent("EDMPrecond", {"_parameters": {}, "_modules": {}, "_init_kwargs": {"img_resolution": 8,
                                                                                              "img_channels": 3, "x": leaf}})
    return pickle.dumps({"ema": rec}, protocol=4)


def _non_tensor_parameters(folder, edm, marker):
    rec = edm.Persistent("EDMPrecond", {"_parameters": {"weight": [1.0, 2.0, 3.0]}, "_buffers": {}, "_modules": {},
                                        "_init_kwargs": {"img_resolution": 8, "img_channels": 3}})
    return pickle.dumps({"ema": rec}, protocol=4)


class _Stride0:
    """A tensor pickled as a view of one float with 10^12 elements (stride 0)."""

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, (torch.zeros(1).storage(), 0, (10**12,), (0,), False, OrderedDict()))


def _stride0_tensor(folder, edm, marker):
    rec = edm.Persistent("EDMPrecond", {"_parameters": {"weight": _Stride0()}, "_modules": {},
                                        "_init_kwargs": {"img_resolution": 8, "img_channels": 3}})
    return pickle.dumps({"ema": rec, "z": _Evil(marker)}, protocol=4)


class _StorageFrom:
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.blob,))


def _storage_reused(folder, edm, marker):
    blob = torch.zeros(1000).storage().__reduce__()[1][0]
    return pickle.dumps({"ema": [_StorageFrom(blob) for _ in range(2000)], "z": _Evil(marker)}, protocol=4)


class _DeclaresStorage(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", 10**11, None) if obj == "THE STORAGE" else None


def _storage_declares_400_gb(folder, edm, marker):
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

    main = io.BytesIO()
    _DeclaresStorage(main, protocol=2).dump("THE STORAGE")
    blob = (pickle.dumps(MAGIC_NUMBER, protocol=2) + pickle.dumps(PROTOCOL_VERSION, protocol=2)
            + pickle.dumps({"protocol_version": PROTOCOL_VERSION, "little_endian": True}, protocol=2)
            + main.getvalue() + pickle.dumps(["0"], protocol=2) + (10**11).to_bytes(8, "little"))
    return pickle.dumps({"ema": _StorageFrom(blob), "z": _Evil(marker)}, protocol=4)


HOSTILE = {  # name: (writer of the file's bytes, what the one-line error says)
    "25-byte memo bomb": (_memo_bomb, "memo index"),
    "2^64-leaf DAG in init kwargs": (_dag_in_init_kwargs, "more than 1000000 objects"),
    "200,000-deep nested lists": (lambda f, e, m: _top(b"]" * 200_000 + b"a" * 199_999, m, False), "nested more than 100 deep"),
    "200,000-deep tuple as a dict key": (lambda f, e, m: _top(b"})" + b"\x85" * 200_000 + b"Ns", m),
                                         "tuples nested more than 100 deep"),
    "non-tensor parameters": (_non_tensor_parameters, "parameter weight is a list, not a tensor"),
    "10^12-element stride-0 tensor": (_stride0_tensor, "claims 1000000000000 elements"),
    "one stored storage rebuilt 2000 times": (_storage_reused, "more bytes"),
    "storage declaring 400 GB": (_storage_declares_400_gb, "declares 400000000000 bytes"),
    "state set on a function": (lambda f, e, m: _top(_op_global("torch._utils", "_rebuild_tensor_v2")
                                                      + b"N}" + _op_str("__defaults__") + b"Ns\x86b", m),
                                "refused to set the state"),
    "torch.Tensor called (10^18 elements)": (lambda f, e, m: _top(_op_global("torch", "Tensor")
                                                                 + b"(J\x00\xca\x9a;J\x00\xca\x9a;tR", m), "refused to call"),
    "persistent id": (lambda f, e, m: _top(_op_str("x") + b"Q", m), "persistent id"),
    "extension code": (lambda f, e, m: _top(b"\x82\x01", m), "extension code"),
    "dunder state on an EasyDict": (lambda f, e, m: _top(_op_global("dnnlib.util", "EasyDict") + b")\x81N}"
                                                          + _op_str("__class__") + b"Ns\x86b", m), "plain names"),
    "frame of 2^62 bytes": (lambda f, e, m: b"\x80\x04\x95" + (2**62).to_bytes(8, "little") + b"N.", "is a dict"),
    "builtins.open global": (lambda f, e, m: pickle.dumps({"ema": _Evil(m)}), "refused to load the global io.open"),
    "os.system global": (lambda f, e, m: _top(_op_global("os", "system") + b"(" + _op_str(f"touch {m}") + b"tR", m),
                         "refused to load the global os.system"),
}


@pytest.fixture(scope="module")
def startup_s() -> float:
    """Seconds a fresh interpreter takes to import torch and the CLI here (added to the 10 s the
    table allows each refusal, so that a loaded machine's start-up time is not counted)."""
    import time

    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "import torch, genloop.cli, genloop.models.neural.checkpoints"], check=True)
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_pickle_table(tmp_path, edm_modules, capsys, startup_s, case) -> None:
    """``genloop convert edm-pkl BAD OUT`` and ``model.init: BAD`` in ``genloop run``: exit 2, one
    line naming the problem, within 10 s (plus the interpreter's start-up), nothing written,
    the payload never run."""
    import time

    import yaml

    write, message = HOSTILE[case]
    marker, bad = tmp_path / "created-by-pickle", tmp_path / "bad.pkl"
    bad.write_bytes(write(tmp_path, edm_modules, marker))
    (tmp_path / "conv").mkdir()  # convert refuses a missing output folder first: give it one
    out = tmp_path / "conv" / "net.safetensors"
    r = subprocess.run([sys.executable, "-m", "genloop.cli", "convert", "edm-pkl", str(bad), str(out)],
                       check=False, capture_output=True, text=True, timeout=10 + 2 * startup_s)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert not any((tmp_path / "conv").iterdir()) and not marker.exists()  # nothing written
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"name": "digits_images", "n": 100}, "model": {"name": "edm", "init": str(bad)},
                                   "loop": {"generations": 1, "lambdas": [0], "seeds": [0]}, "metrics": []}))
    start = time.monotonic()
    assert main(["run", str(cfg), "--out", str(tmp_path / "exp")]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert "model.init:" in err and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "exp").exists() and not marker.exists()


def test_sidecar_writer_bounds_its_walk() -> None:
    """A DAG of 2^64 leaves (65 shared lists) is refused after a bounded number of steps, not
    walked path by path; nesting beyond the depth bound is refused too."""
    import time

    from genloop.models.neural.checkpoints import MAX_JSON_NODES, _jsonable

    leaf: list = [0]
    for _ in range(64):
        leaf = [leaf, leaf]
    start = time.monotonic()
    with pytest.raises(DataError, match=f"more than {MAX_JSON_NODES} values"):
        _jsonable({"x": leaf})
    assert time.monotonic() - start < 5
    deep: list = []
    for _ in range(500):
        deep = [deep]
    with pytest.raises(DataError, match="nested more than 100 deep"):
        _jsonable(deep)
    small = [[1, 2], [1, 2]]
    assert _jsonable({"a": [small, small], "n": np.float32(0.5)}) == {"a": [[[1, 2], [1, 2]]] * 2, "n": 0.5}


def test_legitimate_tensors_read_as_pickle_writes_them(tmp_path) -> None:
    """Views, offsets, transposes, empty and 0-d tensors, several dtypes and parameters pass
    the storage checks and read back equal (values, shape, strides) to what was pickled."""
    base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
    tensors = {"view": base[1:, ::2], "t": base.T, "row": base[2], "empty": torch.zeros(0, 3), "scalar": torch.tensor(3.5),
               "int": torch.arange(5), "bool": torch.tensor([True, False]), "half": torch.ones(3, dtype=torch.float16),
               "param": nn.Parameter(torch.randn(2, 3, generator=torch.Generator().manual_seed(0))), "base": base}
    (tmp_path / "t.pkl").write_bytes(pickle.dumps(tensors, protocol=4))
    back = read_edm_pickle(tmp_path / "t.pkl")
    for name, t in tensors.items():
        got = back[name]
        assert type(got) is type(t) and got.dtype == t.dtype and got.shape == t.shape, name
        assert got.stride() == t.stride() and torch.equal(got, t), name
