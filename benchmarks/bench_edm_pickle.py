"""Benchmark: seconds to read an EDM snapshot of a paper network with genloop's bounded
unpickler, against an unbounded C unpickler with the same allow-list (the reader before the
bounds were added).

The snapshot is written the way EDM's ``torch_utils.persistence`` writes one (each module a
``_reconstruct_persistent_obj(meta)`` call with its state and recorded constructor arguments,
numpy numbers among them), for the network of a genloop preset at full size (stub modules
stand in for EDM's ``torch_utils`` and ``dnnlib``; nothing is downloaded).

    .venv/bin/python benchmarks/bench_edm_pickle.py                  # edm-cifar10-uncond-vp (about 56 M parameters)
    .venv/bin/python benchmarks/bench_edm_pickle.py --quick          # a small network
    .venv/bin/python benchmarks/bench_edm_pickle.py --preset edm-ffhq64-uncond-vp --repeat 3
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import tempfile
import time
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genloop.models.neural import checkpoints as ck
from genloop.models.neural.networks import NetworkConfig, build_network


def _stub_modules() -> tuple[Any, type]:
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta: dict) -> None:  # never called: the file is only written
        raise AssertionError

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = EasyDict  # type: ignore[attr-defined]
    sys.modules.update({"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
                        "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util})
    return persistence, EasyDict


class _Persistent:
    hook: Any = None

    def __init__(self, class_name: str, state: dict) -> None:
        self.class_name, self.state = class_name, state

    def __reduce__(self) -> tuple:
        meta = {"type": "class", "version": 6, "module_src": "# source\n", "class_name": self.class_name,
                "state": self.state}
        return (type(self).hook, (meta,))


def _record(module: torch.nn.Module, easydict: type, kwargs: dict | None = None) -> _Persistent:
    children = OrderedDict((name, _record(c, easydict)) for name, c in module.named_children())
    state = {"training": False, "_parameters": OrderedDict(module._parameters), "_buffers": OrderedDict(module._buffers),
             "_non_persistent_buffers_set": set(), "_modules": children, "_init_args": (),
             "_init_kwargs": easydict(kwargs or {"skip_scale": np.sqrt(0.5), "init_weight": np.float32(1e-5)})}
    return _Persistent(type(module).__name__, state)


class _CUnpickler(pickle.Unpickler):
    """The C unpickler with the same allow-list and no bounds (the reader before them)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return lambda b: torch.load(io.BytesIO(b), weights_only=True)
        obj = ck._allowed(module, name)
        if obj is None:
            raise pickle.UnpicklingError(f"refused {module}.{name}")
        return obj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="edm-cifar10-uncond-vp")
    ap.add_argument("--quick", action="store_true", help="a small network instead of the preset")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    hook, easydict = _stub_modules()
    _Persistent.hook = hook._reconstruct_persistent_obj
    if args.quick:
        cfg, shape = NetworkConfig(kind="songunet", channels=32, channel_mult=[1, 2], num_res_blocks=1,
                                   attn_resolutions=[4]), (3, 8, 8)
    else:
        cfg, shape = NetworkConfig(kind="songunet", preset=args.preset), None
        from genloop.models.neural.paper_networks import PRESETS

        res = PRESETS[args.preset].resolution
        shape = (3, res, res)
    net = build_network(cfg, shape, generator=torch.Generator().manual_seed(0))
    n_params = sum(p.numel() for p in net.parameters())
    kwargs = {"img_resolution": shape[1], "img_channels": 3, "sigma_min": np.float64(0.002), "sigma_data": 0.5}
    data = {"ema": _record(net, easydict, kwargs), "augment_pipe": None}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network-snapshot.pkl"
        path.write_bytes(pickle.dumps(data, protocol=4))
        size = path.stat().st_size
        del data
        times: dict[str, list[float]] = {"bounded (genloop)": [], "C unpickler, unbounded": []}
        for _ in range(args.repeat):
            t = time.perf_counter()
            ck.record_state_dict(ck.read_edm_pickle(path)["ema"])
            times["bounded (genloop)"].append(time.perf_counter() - t)
            t = time.perf_counter()
            with open(path, "rb") as fh:
                ck.record_state_dict(_CUnpickler(fh).load()["ema"])
            times["C unpickler, unbounded"].append(time.perf_counter() - t)
    print(f"{'preset' if not args.quick else 'network'}: {args.preset if not args.quick else 'small songunet'}, "
          f"{n_params / 1e6:.1f} M parameters, file {size / 2**20:.1f} MiB, best of {args.repeat}")
    for name, ts in times.items():
        print(f"  {name:24s} {min(ts):7.3f} s   ({size / 2**20 / min(ts):.0f} MiB/s)")


if __name__ == "__main__":
    main()
