"""The adapter families: ``torch-module`` (a user's nn.Module) and ``diffusers`` (a local folder).

Their whole model contract (seeds, exact save → load → continue, resumed loops, warm starts)
is checked by tests/test_model_contract.py through ``check_model``; here: the diffusers
samples equal the ``diffusers`` pipeline's bit for bit, one generation of each family in the
loop on CPU, and the errors a user meets.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from genloop.data import make_data
from genloop.errors import ConfigError, DataError
from genloop.models import make_model
from genloop.models.neural.base import batch_seed
from genloop.rng import torch_seed

TRAIN = {"samples": 128, "batch_size": 32, "device": "cpu"}


# ---- torch-module --------------------------------------------------------------------------------
def _torch_module(**options: object):
    base = {"module": "own_nets:TinyMLP", "module_options": {"hidden": 16}, "objective": "edm",
            "objective_options": {"num_steps": 3}, "train": TRAIN}
    return make_model("torch-module", **{**base, **options})


def _moons(n: int = 128, seed: int = 0) -> np.ndarray:
    return make_data("two_moons", noise=0.05).sample(n, rng=np.random.default_rng(seed))


def test_torch_module_network_init_is_reproducible_and_leaves_global_rng_alone() -> None:
    model = _torch_module()
    before = torch.get_rng_state()
    a = model.build_net((2,), torch.Generator().manual_seed(3))
    b = model.build_net((2,), torch.Generator().manual_seed(3))
    c = model.build_net((2,), torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), before)
    for (ka, pa), (_, pb), (_, pc) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(pa, pb), ka
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_torch_module_custom_sampler_is_the_users_function() -> None:
    """With a module:function sampler, samples are that function of the EMA network and a torch
    generator seeded from rng (batch 0's stream: ``batch_seed(seed, 0)``), mapped back from model
    space (x = shift + scale · z)."""
    from own_nets import one_step_sampler


    model = _torch_module(objective="own_nets:denoising_loss", sampler="own_nets:one_step_sampler",
                          objective_options=None).fit(_moons(), rng=np.random.default_rng(1))
    rng_seed = np.random.default_rng(9)
    x = model.sample(50, rng=np.random.default_rng(9))
    with torch.no_grad():
        z = one_step_sampler(model.sampling_net.eval(), 50, (2,), torch.Generator().manual_seed(batch_seed(torch_seed(rng_seed), 0)))
    np.testing.assert_array_equal(x, model.shift_ + model.scale_ * z.to(torch.float64).numpy())


@pytest.mark.parametrize("objective", ["edm", "ddpm", "flow-matching"])
def test_torch_module_objective_is_the_builtin_familys_loss(objective: str) -> None:
    """The loss of objective X is family X's loss of the same network, noise and batch."""
    from genloop.models.torch_module import OBJECTIVES

    opts = {"edm": {"num_steps": 3}, "ddpm": {"T": 50, "sample_steps": 5}, "flow-matching": {"steps": 4, "solver": "euler"}}
    model = _torch_module(objective=objective, objective_options=opts[objective])
    family = make_model(OBJECTIVES[objective], **opts[objective])
    net = model.build_net((2,), torch.Generator().manual_seed(0))
    x = torch.as_tensor(_moons(16), dtype=torch.float32)
    ours = model.loss(net, x, torch.Generator().manual_seed(5))
    theirs = family.loss(net, x, torch.Generator().manual_seed(5))
    assert ours.shape == (16,)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize(("options", "message"), [
    ({"module_options": {"hiden": 8}}, "unknown option 'hiden' for torch-module module 'own_nets:TinyMLP' (known options: hidden)"),
    ({"module": "own_nets:NoNet"}, "module 'own_nets' has no attribute 'NoNet'"),
    ({"objective": "vae"}, "objective 'vae' is neither one of edm, ddpm, flow-matching"),
    ({"objective": "own_nets:denoising_loss", "objective_options": None}, "needs a sampler"),
    ({"objective_options": {"num_step": 3}}, "unknown option 'num_step' for model 'edm'"),
    ({"objective_options": {"train": {}}}, "options of torch-module itself"),
])
def test_torch_module_bad_options_name_the_problem(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _torch_module(**options)


def test_torch_module_refuses_a_module_that_is_not_a_network() -> None:
    model = _torch_module(module="own_nets:not_a_network", module_options=None)
    with pytest.raises(ConfigError, match="own_nets:not_a_network built a list, not a torch.nn.Module"):
        model.fit(_moons(), rng=np.random.default_rng(0))


def test_torch_module_one_generation_in_the_loop(tmp_path: Path) -> None:
    """genloop run with a torch-module family: the config names the user's network by import path."""
    import yaml

    from genloop.cli import main

    doc = {"data": {"name": "two_moons", "n": 128, "noise": 0.05},
           "model": {"name": "torch-module", "module": "own_nets:TinyMLP", "module_options": {"hidden": 16},
                     "objective": "ddpm", "objective_options": {"T": 50, "sample_steps": 5}, "train": TRAIN},
           "loop": {"generations": 1, "lambdas": [1], "seeds": [0]}, "metrics": ["moments"]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out"), "-q"]) == 0
    lines = next((tmp_path / "out").rglob("metrics.jsonl")).read_text().splitlines()
    assert len(lines) == 2
    assert (next((tmp_path / "out").rglob("model.json")).read_text()).count('"torch-module"') == 1


# ---- diffusers -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from own_diffusers import make_tiny_folder

    return make_tiny_folder(tmp_path_factory.mktemp("tiny-ddpm"))


def _pipeline(folder: Path):
    """diffusers' own DDPMPipeline of the folder's network and scheduler."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True, low_cpu_mem_usage=False)
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_pretrained(str(folder), local_files_only=True))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pipeline_images(folder: Path, n: int, seed: int, steps: int) -> np.ndarray:
    pipe = _pipeline(folder)
    generator = torch.Generator().manual_seed(seed)
    return pipe(batch_size=n, generator=generator, output_type="np", num_inference_steps=steps).images


def _as_pipeline_output(x: np.ndarray) -> np.ndarray:
    """genloop's images in [-1, 1] as DDPMPipeline returns them: (x / 2 + 0.5) in float32, NHWC."""
    return (torch.as_tensor(x, dtype=torch.float32) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("steps", [None, 7])
def test_diffusers_samples_equal_the_pipelines(tiny: Path, tmp_path: Path, steps: int | None) -> None:
    """Generation 0 (the folder as it is) samples exactly what diffusers' DDPMPipeline samples with
    the same torch generator: same latents, same network, same scheduler steps (by default all
    the scheduler's training steps, here 20)."""
    from own_diffusers import TRAIN_STEPS

    model = make_model("diffusers", path=str(tiny), num_inference_steps=steps).load_init()
    rng = np.random.default_rng(42)
    ours = model.sample(6, rng=np.random.default_rng(42))
    # one sampling batch (6 <= sample_batch_size): its stream is batch_seed(seed, 0)
    theirs = _pipeline_images(tiny, 6, batch_seed(torch_seed(rng), 0), steps or TRAIN_STEPS)
    assert ours.shape == (6, 1, 8, 8) and theirs.shape == (6, 8, 8, 1)
    np.testing.assert_array_equal(_as_pipeline_output(ours), theirs)
    # the same with a pipeline's folder layout (unet/ and scheduler/ subfolders)
    _pipeline(tiny).save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "unet" / "config.json").is_file()
    layout = make_model("diffusers", path=str(tmp_path / "pipe"), num_inference_steps=steps).load_init()
    np.testing.assert_array_equal(layout.sample(6, rng=np.random.default_rng(42)), ours)


@pytest.mark.slow
def test_diffusers_one_generation_in_the_loop(tiny: Path) -> None:
    """Generation 0 is the folder's network (not trained), generation 1 trains it on the mix;
    the run resumed after generation 0 gives generation 1 bit for bit."""
    from safetensors.torch import load_file

    from genloop.loop import LoopState, run_loop

    real = make_data("digits_images").sample(64, rng=np.random.default_rng(0))
    model = make_model("diffusers", path=str(tiny), num_inference_steps=5,
                       train={"samples": 64, "finetune_samples": 64, "batch_size": 16, "device": "cpu"})
    kwargs = dict(lam=1, generations=1, seed=0, n_eval=16, train_generation_0=False)
    full = list(run_loop(model, real, **kwargs))
    assert [r.generation for r in full] == [0, 1]
    folder_weights = load_file(str(tiny / "diffusion_pytorch_model.safetensors"))
    gen0 = full[0].model.net_.unet.state_dict()
    assert all(torch.equal(gen0[k], v) for k, v in folder_weights.items())
    gen1 = full[1].model.net_.unet.state_dict()
    assert any(not torch.equal(gen1[k], v) for k, v in folder_weights.items())
    assert full[1].model.samples_seen_ == 64
    assert full[1].synthetic.shape == (64, 1, 8, 8) and np.all(np.abs(full[1].synthetic) <= 1)
    resumed = list(run_loop(model.clone(), real, resume=LoopState(0, full[0].model), metrics=["moments"], **kwargs))
    again = list(run_loop(model.clone(), real, resume=LoopState(0, full[0].model), metrics=["moments"], **kwargs))
    np.testing.assert_array_equal(resumed[0].synthetic, full[1].synthetic)
    np.testing.assert_array_equal(resumed[0].samples, again[0].samples)
    assert resumed[0].metrics == again[0].metrics
    state = resumed[0].model.net_.unet.state_dict()
    assert all(torch.equal(state[k], v) for k, v in gen1.items())


@pytest.mark.slow
def test_diffusers_bad_folders_are_config_errors(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        make_model("diffusers", path=str(tmp_path / "missing")).check_data((1, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"makes images of shape \(1, 8, 8\); the data have shape \(2,\)"):
        make_model("diffusers", path=str(tiny)).check_data((2,), 10)
    pickled = tmp_path / "bin-only"
    pickled.mkdir()
    for name in ("config.json", "scheduler_config.json"):
        (pickled / name).write_bytes((tiny / name).read_bytes())
    (pickled / "diffusion_pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ConfigError, match="only safetensors weights are read"):
        make_model("diffusers", path=str(pickled)).check_data((1, 8, 8), 10)
    with pytest.raises(ConfigError, match="num_inference_steps=21 is more than the scheduler's 20 training steps"):
        make_model("diffusers", path=str(tiny), num_inference_steps=21).check_data((1, 8, 8), 10)
    with pytest.raises(DataError, match="makes images of shape"):
        make_model("diffusers", path=str(tiny)).load_init(event_shape=(3, 8, 8))
