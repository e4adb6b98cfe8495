"""The paper's networks: the public checkpoints' layout (keys, shapes, parameter counts) and
outputs equal to the official implementations' (recorded by tests/fixtures/make_paper_network_reference.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genloop.errors import ConfigError
from genloop.models import make_model
from genloop.models.neural.edm_unet import EDMPrecond, VPPrecond
from genloop.models.neural.networks import NetworkConfig, build_network
from genloop.models.neural.paper_networks import PRESETS

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = json.loads((FIXTURES / "paper_networks_reference.json").read_text())
OUTPUTS = load_file(str(FIXTURES / "paper_networks_reference.safetensors"))


def fill_weights(net: torch.nn.Module, seed: int) -> None:
    """As the fixture script: every entry but ``resample_filter`` ← 0.3 N(0, 1), sorted key order."""
    g = torch.Generator().manual_seed(seed)
    state = net.state_dict()
    with torch.no_grad():
        for k in sorted(state):
            if not k.endswith("resample_filter"):
                state[k].copy_(torch.randn(state[k].shape, generator=g) * 0.3)


def inputs(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _full(name: str) -> torch.nn.Module:
    p = PRESETS[name]
    return build_network(NetworkConfig(kind=p.kind, preset=name), (p.channels, p.resolution, p.resolution))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_matches_the_official_checkpoint_layout(name: str) -> None:
    net = _full(name)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    official = OFFICIAL[name]["state"]
    assert sorted(set(official) - set(ours)) == [] and sorted(set(ours) - set(official)) == []
    wrong = {k: (ours[k], official[k]) for k in official if ours[k] != official[k]}
    assert not wrong
    assert sum(p.numel() for p in net.parameters()) == OFFICIAL[name]["parameters"]


def test_parameter_counts_of_the_paper() -> None:
    # EDM paper, Table 7 / the official code: DDPM++ CIFAR-10 55.73 M; OT-CFM / DDPM U-Net 35.7 M
    assert OFFICIAL["edm-cifar10-uncond-vp"]["parameters"] == 55_733_891
    assert OFFICIAL["otcfm-cifar10"]["parameters"] == OFFICIAL["ddpm-cifar10"]["parameters"] == 35_746_307


SMALL = dict(channels=32, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)


@pytest.mark.parametrize("preset, arch", [("edm-cifar10-uncond-vp", "ddpmpp"), ("edm-cifar10-uncond-ve", "ncsnpp")])
def test_songunet_and_preconditioners_reproduce_the_official_outputs(preset: str, arch: str) -> None:
    raw = build_network(NetworkConfig(kind="songunet", preset=preset, **SMALL), (3, 16, 16)).eval()
    fill_weights(raw, 1)
    x = inputs(2)
    with torch.no_grad():
        torch.testing.assert_close(raw(x, torch.tensor([-0.7, 0.9])), OUTPUTS[f"songunet-{arch}.F"], rtol=1e-5, atol=1e-5)
        for precond, cls in (("edm", EDMPrecond), ("vp", VPPrecond)):
            D = cls(raw.model)(x, torch.tensor([0.3, 5.0]))
            torch.testing.assert_close(D, OUTPUTS[f"songunet-{arch}-{precond}.D"], rtol=1e-5, atol=1e-5)


def test_adm_unet_reproduces_the_official_outputs() -> None:
    net = build_network(NetworkConfig(kind="adm", head_channels=16, **SMALL), (3, 16, 16)).eval()
    fill_weights(net, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(inputs(2), torch.tensor([0.25, 0.8])), OUTPUTS["adm.out"], rtol=1e-5, atol=1e-5)


def test_ddpm_unet_reproduces_the_official_outputs_from_the_family_time_input() -> None:
    net = build_network(NetworkConfig(kind="ddpm", **SMALL), (3, 16, 16)).eval()
    fill_weights(net, 1)
    t = torch.tensor([10, 900]).double() / 1000  # genloop's ddpm family passes t / T
    with torch.no_grad():
        torch.testing.assert_close(net(inputs(2), t), OUTPUTS["ddpm.out"], rtol=1e-5, atol=1e-5)


def test_edm_precond_is_table1_and_vp_sigma_inverse() -> None:
    # D = c_skip x + c_out F(c_in x; ln(σ)/4) with a probe F that returns its inputs' statistics
    class Probe(torch.nn.Module):
        def forward(self, x, c_noise, class_labels=None, augment_labels=None):
            return x * 0 + c_noise.reshape(-1, 1, 1, 1)

    x = torch.ones(2, 1, 2, 2)
    sigma = torch.tensor([0.5, 2.0])
    D = EDMPrecond(Probe())(x, sigma)
    sd = 0.5
    for i, s in enumerate(sigma.tolist()):
        expect = sd**2 / (s**2 + sd**2) + s * sd / math.sqrt(s**2 + sd**2) * math.log(s) / 4
        assert D[i].mean().item() == pytest.approx(expect, rel=1e-6)
    vp = VPPrecond(Probe())
    t = torch.tensor([1e-3, 0.3, 1.0], dtype=torch.float64)
    torch.testing.assert_close(vp.sigma_inv(vp.sigma(t)), t)
    assert vp.sigma_max == pytest.approx(math.sqrt(math.exp(0.5 * 19.9 + 0.1) - 1), rel=1e-6)


def test_paper_network_config_validation() -> None:
    with pytest.raises(ConfigError, match="unknown network preset"):
        make_model("edm", network={"kind": "songunet", "preset": "edm-cifar100"})
    with pytest.raises(ConfigError, match="is a 'adm' network"):
        make_model("edm", network={"kind": "songunet", "preset": "otcfm-cifar10"})
    with pytest.raises(ConfigError, match="preset"):
        make_model("edm", network={"kind": "unet", "preset": "otcfm-cifar10"})
    with pytest.raises(ConfigError, match="square image"):
        build_network(NetworkConfig(kind="songunet"), (2,))


@pytest.mark.parametrize("family, kind", [("edm", "songunet"), ("otcfm", "adm"), ("ddpm", "ddpm")])
def test_families_train_and_sample_with_the_paper_networks(family: str, kind: str) -> None:
    import numpy as np

    X = np.tanh(np.random.default_rng(0).normal(size=(16, 3, 8, 8)))
    net = {"kind": kind, "channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [4]}
    extra = {"num_steps": 2} if family == "edm" else {"sample_steps": 2} if family == "ddpm" else {"solver": "euler", "steps": 2}
    model = make_model(family, network=net, train={"samples": 16, "batch_size": 8, "device": "cpu"}, **extra)
    model.fit(X, rng=np.random.default_rng(1))
    assert model.sample(3, rng=np.random.default_rng(2)).shape == (3, 3, 8, 8)
