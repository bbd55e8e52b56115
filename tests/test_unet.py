"""Tests for ddpm_hub.models.unet: shapes, conditioning, input forms, save/load, validation, gradients, memory formats.

Everything runs on tiny models (8x8 images unless stated), so the whole file takes a few seconds on 2 CPU cores.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import ddpm_hub.models.unet as unet_module
from ddpm_hub.models.unet import UNET_PRESETS, DDPMHubUNet2DModel, DDPMHubUNet2DOutput

NUM_CLASSES = 10
SIZE = 8  # tiny preset has 3 levels: 8 -> 4 -> 2


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spinning threads make
    each forward 10-100x slower. Restored afterwards for the other test modules."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(**overrides) -> DDPMHubUNet2DModel:
    """The "tiny" preset at 8x8, class-conditional with NUM_CLASSES classes unless overridden, in eval mode."""
    torch.manual_seed(0)
    config = {"sample_size": SIZE, "num_class_embeds": NUM_CLASSES, **overrides}
    return DDPMHubUNet2DModel.from_preset("tiny", **config).eval()


def perturb_(model: torch.nn.Module, std: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Add Gaussian noise to every parameter: the zero-initialised output conv makes a fresh model output exactly 0,
    which would make most comparisons vacuous."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * std)
    return model


def noise(batch: int, size: int = SIZE, channels: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------------------
# Shapes and output types
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("conditional", [False, True], ids=["uncond", "cond"])
def test_output_shape(batch, conditional):
    model = make_model(num_class_embeds=NUM_CLASSES if conditional else None)
    labels = torch.arange(batch) % (NUM_CLASSES + 1) if conditional else None
    with torch.inference_mode():
        out = model(noise(batch), 10, class_labels=labels)
    assert isinstance(out, DDPMHubUNet2DOutput)
    assert out.sample.shape == (batch, 1, SIZE, SIZE)
    assert out.sample.dtype == torch.float32


def test_in_out_channels_can_differ():
    model = make_model(in_channels=3, out_channels=2, num_class_embeds=None)
    with torch.inference_mode():
        assert model(noise(2, channels=3), 0).sample.shape == (2, 2, SIZE, SIZE)


@pytest.mark.parametrize(
    "overrides",
    [
        {"block_out_channels": (8,), "attention_levels": (False,), "sample_size": 5},  # one level, odd size
        {"block_out_channels": (8, 16), "attention_levels": (True, False), "sample_size": 6},
        {"layers_per_block": 2, "time_embedding_injection": "add", "dropout": 0.1},
        {"attention_levels": (False, False, False), "mid_attention": False},
        {"block_out_channels": (4, 8, 12), "norm_num_groups": 4, "attention_head_dim": 4},
        {"block_out_channels": (3, 6, 6), "norm_num_groups": 3, "attention_head_dim": 3},  # odd embedding width
    ],
    ids=["one-level", "two-levels", "lpb2-add-dropout", "no-attention", "narrow", "odd-width"],
)
def test_config_variants_build_and_run(overrides):
    model = make_model(**overrides)
    size = model.config.sample_size
    with torch.inference_mode():
        assert model(noise(3, size=size), 7).sample.shape == (3, 1, size, size)


def test_tiny_preset_at_full_mnist_size():
    model = DDPMHubUNet2DModel.from_preset("tiny").eval()
    with torch.inference_mode():
        out = model(noise(2, size=28), 999, class_labels=torch.tensor([0, 10]))
    assert out.sample.shape == (2, 1, 28, 28)


def test_fresh_model_outputs_zero():
    # The output conv is zero-initialised (standard DDPM trick), so an untrained model predicts exactly 0.
    model = make_model()
    with torch.inference_mode():
        assert torch.count_nonzero(model(noise(2), 5).sample) == 0


def test_return_dict_false_gives_tuple():
    model = perturb_(make_model())
    x, labels = noise(2), torch.tensor([1, 2])
    with torch.inference_mode():
        out = model(x, 3, class_labels=labels, return_dict=False)
        ref = model(x, 3, class_labels=labels).sample
    assert isinstance(out, tuple) and len(out) == 1
    assert torch.equal(out[0], ref)


# ---------------------------------------------------------------------------------------------------------------------
# Conditioning and timesteps
# ---------------------------------------------------------------------------------------------------------------------


def test_null_class_and_real_classes_give_different_outputs():
    model = perturb_(make_model())
    x = noise(1).expand(3, -1, -1, -1)
    with torch.inference_mode():
        out = model(x, 50, class_labels=torch.tensor([3, 7, NUM_CLASSES])).sample
        no_labels = model(noise(1), 50).sample
    assert not torch.allclose(out[0], out[2], atol=1e-4), "real class 3 vs null class"
    assert not torch.allclose(out[0], out[1], atol=1e-4), "class 3 vs class 7"
    # No labels on a conditional model means "null class" for every sample.
    torch.testing.assert_close(no_labels[0], out[2], rtol=1e-5, atol=1e-6)


def test_class_labels_accept_int32_and_lists():
    model = perturb_(make_model())
    x = noise(2)
    with torch.inference_mode():
        ref = model(x, 5, class_labels=torch.tensor([4, NUM_CLASSES])).sample
        as_int32 = model(x, 5, class_labels=torch.tensor([4, NUM_CLASSES], dtype=torch.int32)).sample
        as_list = model(x, 5, class_labels=[4, NUM_CLASSES]).sample
    assert torch.equal(ref, as_int32) and torch.equal(ref, as_list)


def test_timestep_forms_agree():
    model = perturb_(make_model())
    x, labels = noise(4), torch.tensor([0, 1, 2, 10])
    forms = {
        "int": 123,
        "float": 123.0,
        "0-d long": torch.tensor(123),
        "0-d float": torch.tensor(123.0),
        "(1,)": torch.tensor([123]),
        "(B,)": torch.full((4,), 123),
    }
    with torch.inference_mode():
        outs = {name: model(x, t, class_labels=labels).sample for name, t in forms.items()}
        other = model(x, 124, class_labels=labels).sample
    for name, out in outs.items():
        assert torch.equal(out, outs["int"]), name
    assert not torch.allclose(other, outs["int"], atol=1e-4), "the timestep must matter"


def test_per_sample_timesteps_match_separate_calls():
    model = perturb_(make_model())
    x, t, labels = noise(3), torch.tensor([0, 500, 999]), torch.tensor([1, 2, 10])
    with torch.inference_mode():
        batched = model(x, t, class_labels=labels).sample
        single = torch.cat([model(x[i : i + 1], int(t[i]), class_labels=labels[i : i + 1]).sample for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)


def test_timestep_embedding_stays_float32_when_model_is_cast_to_bfloat16():
    model = make_model()
    t = torch.tensor([0, 1, 500, 999])
    ref = model.time_sinusoid(t)
    model.to(torch.bfloat16)
    assert model.time_sinusoid.freqs.dtype == torch.bfloat16  # the buffer was cast ...
    torch.testing.assert_close(model.time_sinusoid(t), ref)  # ... but the features are still exact float32
    assert "time_sinusoid.freqs" not in model.state_dict()  # constant, non-persistent: never saved


# ---------------------------------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------------------------------


def public_config(model) -> dict:
    """The init arguments in the config, with tuples as lists (JSON has no tuples)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if not k.startswith("_")}


# ---------------------------------------------------------------------------------------------------------------------


def test_save_pretrained_from_pretrained_roundtrip(tmp_path):
    model = perturb_(make_model(layers_per_block=2))
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "config.json" in files and "diffusion_pytorch_model.safetensors" in files
    assert not any(name.endswith(".bin") for name in files), files

    loaded = DDPMHubUNet2DModel.from_pretrained(tmp_path).eval()
    assert public_config(loaded) == public_config(model)
    x, t, labels = noise(3), torch.tensor([1, 400, 999]), torch.tensor([0, 9, 10])
    with torch.inference_mode():
        assert torch.equal(loaded(x, t, class_labels=labels).sample, model(x, t, class_labels=labels).sample)


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"block_out_channels": (8, 10, 16)}, r"block_out_channels=\(8, 10, 16\).*norm_num_groups=4"),
        ({"block_out_channels": ()}, r"block_out_channels=\(\).*non-empty"),
        ({"block_out_channels": (8, -16, 16)}, r"block_out_channels=.*positive"),
        ({"sample_size": 10}, r"sample_size=10.*divisible by .* = 4"),
        ({"sample_size": 0}, r"sample_size=0.*positive"),
        ({"attention_levels": (False, True)}, r"attention_levels=\(False, True\).*len\(block_out_channels\)=3"),
        ({"attention_head_dim": 6}, r"attention_head_dim=6.*\[16, 16\]"),
        ({"layers_per_block": 0}, r"layers_per_block=0.*positive"),
        ({"in_channels": 0}, r"in_channels=0"),
        ({"out_channels": 1.5}, r"out_channels=1.5"),
        ({"norm_num_groups": 0}, r"norm_num_groups=0"),
        ({"dropout": 1.0}, r"dropout=1.0.*\[0, 1\)"),
        ({"time_embedding_injection": "film"}, r"time_embedding_injection='film'.*'scale_shift'.*'add'"),
        ({"num_class_embeds": 0}, r"num_class_embeds=0.*None"),
    ],
)
def test_invalid_config_raises(overrides, match):
    with pytest.raises(ValueError, match=match):
        make_model(**overrides)


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match=r"'huge'.*\['base', 'small', 'tiny'\]"):
        DDPMHubUNet2DModel.from_preset("huge")


@pytest.mark.parametrize(
    "make_inputs, match",
    [
        (lambda: (torch.randn(1, SIZE, SIZE), 0, None), r"4-D tensor.*\(1, 8, 8\)"),
        (lambda: (noise(2, channels=3), 0, None), r"3 channels.*in_channels=1"),
        (lambda: (noise(2, size=SIZE * 2), 0, None), r"16x16.*sample_size=8"),
        (lambda: (noise(2), torch.tensor([1, 2, 3]), None), r"timestep.*\(2,\).*\(3,\)"),
        (lambda: (noise(2), 0, torch.tensor([1, NUM_CLASSES + 1])), r"\[0, num_class_embeds=10\].*max 11"),
        (lambda: (noise(2), 0, torch.tensor([-1, 3])), r"\[0, num_class_embeds=10\].*min -1"),
        (lambda: (noise(2), 0, torch.tensor([1, 2, 3])), r"class_labels must have shape \(2,\).*\(3,\)"),
        (lambda: (noise(2), 0, torch.tensor([[1, 2]])), r"class_labels must have shape \(2,\).*\(1, 2\)"),
        (lambda: (noise(2), 0, torch.tensor([1.0, 2.0])), r"integer.*float32"),
    ],
    ids=[
        "ndim",
        "channels",
        "size",
        "timestep-shape",
        "label-too-big",
        "label-negative",
        "label-batch",
        "label-2d",
        "float-labels",
    ],
)
def test_invalid_inputs_raise(make_inputs, match):
    model = make_model()
    sample, timestep, labels = make_inputs()
    with pytest.raises(ValueError, match=match), torch.inference_mode():
        model(sample, timestep, class_labels=labels)


def test_labels_on_unconditional_model_raise():
    model = make_model(num_class_embeds=None)
    with pytest.raises(ValueError, match=r"unconditional \(num_class_embeds=None\)"):
        model(noise(2), 0, class_labels=torch.tensor([0, 1]))


# ---------------------------------------------------------------------------------------------------------------------
# Training and numerics
# ---------------------------------------------------------------------------------------------------------------------


def test_gradients_reach_every_parameter():
    num_classes = 3
    model = make_model(num_class_embeds=num_classes).train()

    def backward():
        model.zero_grad(set_to_none=True)
        labels = torch.arange(num_classes + 1)  # every real class and the null class, so every embedding row is used
        out = model(noise(num_classes + 1), torch.tensor([0, 10, 500, 999]), class_labels=labels).sample
        target = noise(num_classes + 1, seed=2)  # an MSE to noise, as in DDPM training (nonzero at a zero output)
        (out - target).square().mean().backward()
        return {name: p.grad for name, p in model.named_parameters()}

    # At initialisation the zero-initialised convs block the gradient to everything upstream, except the output conv.
    grads = backward()
    assert all(g is not None for g in grads.values())
    assert torch.count_nonzero(grads["conv_out.weight"]) > 0 or torch.count_nonzero(grads["conv_out.bias"]) > 0

    perturb_(model)
    grads = backward()
    missing = [name for name, g in grads.items() if g is None or not torch.isfinite(g).all() or g.abs().sum() == 0]
    assert not missing, f"no (finite, nonzero) gradient for {missing}"


def test_channels_last_matches_contiguous():
    model = perturb_(make_model())
    x, labels = noise(3), torch.tensor([0, 5, 10])
    with torch.inference_mode():
        ref = model(x, 321, class_labels=labels).sample
        out_input = model(x.to(memory_format=torch.channels_last), 321, class_labels=labels).sample
        model.to(memory_format=torch.channels_last)
        out_both = model(x.to(memory_format=torch.channels_last), 321, class_labels=labels).sample
    torch.testing.assert_close(out_input, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(out_both, ref, rtol=0, atol=1e-5)


def test_bfloat16_autocast_runs_and_is_close():
    model = perturb_(make_model())
    x, labels = noise(2), torch.tensor([3, 10])
    with torch.inference_mode():
        ref = model(x, 250, class_labels=labels).sample
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, 250, class_labels=labels).sample
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() <= 0.05 * ref.abs().max()


# ---------------------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(UNET_PRESETS))
def test_presets_build_the_architecture_they_name(name):
    """The modules built, not the config echoed back: levels, widths, depth, attention, norms, dropout, classes."""
    preset = UNET_PRESETS[name]
    model = DDPMHubUNet2DModel.from_preset(name)
    widths = list(preset["block_out_channels"])
    assert [block.resnets[-1].conv2.out_channels for block in model.down_blocks] == widths
    assert all(len(block.resnets) == preset["layers_per_block"] for block in model.down_blocks)
    for block, attends in zip(model.down_blocks, preset["attention_levels"], strict=True):
        heads = [a.num_heads for a in block.attentions if isinstance(a, unet_module.SelfAttention)]
        width = block.resnets[-1].conv2.out_channels
        assert heads == ([width // preset["attention_head_dim"]] * preset["layers_per_block"] if attends else [])
    norms = {m.num_groups for m in model.modules() if isinstance(m, torch.nn.GroupNorm)}
    assert norms == {preset["norm_num_groups"]}
    dropouts = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert dropouts == {preset.get("dropout", 0.0)}
    assert model.class_embedding.num_embeddings == preset["num_class_embeds"] + 1  # + the null class
    # an override wins over the preset
    assert DDPMHubUNet2DModel.from_preset(name, num_class_embeds=None).class_embedding is None


def test_small_preset_size_and_compute():
    # The Space samples 8 digits x 1000 steps on 2 CPU cores in < 30 s: the per-image forward must stay cheap.
    model = DDPMHubUNet2DModel.from_preset("small").eval()
    num_params = sum(p.numel() for p in model.parameters())
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        out = model(noise(1, size=28), 999, class_labels=torch.tensor([7])).sample
    flops = counter.get_total_flops()
    print(f"small preset: {num_params:,} parameters, {flops / 1e6:.0f} MFLOP per 28x28 forward")
    assert out.shape == (1, 1, 28, 28)
    assert num_params == 717_633  # the README's "0.72 M parameters"
    assert round(flops / 1e6) == 144  # the README's "144 MFLOP per 28x28 image"


# ---------------------------------------------------------------------------------------------------------------------
# Remote code
# ---------------------------------------------------------------------------------------------------------------------


def test_module_is_self_contained(monkeypatch, tmp_path):
    """unet.py is copied into saved pipelines and loaded as remote code: it must import without ddpm_hub."""
    monkeypatch.setitem(sys.modules, "ddpm_hub", None)  # any `import ddpm_hub...` now raises ImportError
    for name in [m for m in sys.modules if m.startswith("ddpm_hub.")]:
        monkeypatch.setitem(sys.modules, name, None)
    copy = tmp_path / "unet.py"
    copy.write_text(open(unet_module.__file__, encoding="utf-8").read(), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("standalone_unet", copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    model = module.DDPMHubUNet2DModel.from_preset("tiny", sample_size=SIZE, num_class_embeds=None)
    with torch.inference_mode():
        assert model(noise(1), 0).sample.shape == (1, 1, SIZE, SIZE)


# ---------------------------------------------------------------------------------------------------------------------
# The null class: label dropout in training, eps_uncond in guidance
# ---------------------------------------------------------------------------------------------------------------------


def test_drop_class_labels_replaces_the_asked_share_by_the_null_class():
    model = make_model()
    labels = torch.arange(4000) % NUM_CLASSES
    dropped = model.drop_class_labels(labels, 0.25, torch.Generator().manual_seed(0))
    null = dropped == NUM_CLASSES
    assert dropped.dtype == torch.long and abs(null.float().mean().item() - 0.25) < 0.03
    assert torch.equal(dropped[~null], labels[~null])
    assert torch.equal(model.drop_class_labels(labels, 0.0), labels)
    assert (model.drop_class_labels(labels, 1.0) == NUM_CLASSES).all()
    assert torch.equal(model.null_class_labels(labels), torch.full_like(labels, NUM_CLASSES))
    with pytest.raises(ValueError, match="probability"):
        model.drop_class_labels(labels, 1.5)
    with pytest.raises(ValueError, match="unconditional"):
        make_model(num_class_embeds=None).null_class_labels(labels)


def test_no_labels_is_the_null_class():
    model = perturb_(make_model()).eval()
    x = noise(3)
    with torch.inference_mode():
        unconditional = model(x, 10).sample
        null = model(x, 10, class_labels=model.null_class_labels(x)).sample
    torch.testing.assert_close(unconditional, null, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# The pipeline's speed options, on which the README's speed claims rest: close to eager float32
# ---------------------------------------------------------------------------------------------------------------------


def tiny_pipeline():
    from ddpm_hub import DDPMHubPipeline, DDPMHubScheduler

    pipe = DDPMHubPipeline(unet=perturb_(make_model()).eval(), scheduler=DDPMHubScheduler(num_train_timesteps=50))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return pipe(batch_size=2, class_labels=[1, 2], num_inference_steps=4, generator=generator, output_type="pt").images


def test_bf16_autocast_is_close_to_float32_and_off_again():
    pipe = tiny_pipeline()
    calls = []
    pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(torch.is_autocast_enabled("cpu")))
    reference = sample(pipe)
    pipe.enable_bf16_autocast()
    with_bf16 = sample(pipe)
    assert calls[0] is False and calls[-1] is True and not torch.is_autocast_enabled("cpu")
    assert with_bf16.dtype == torch.float32 and torch.isfinite(with_bf16).all()
    assert not torch.equal(with_bf16, reference)  # it did run in bfloat16
    torch.testing.assert_close(with_bf16, reference, rtol=0, atol=0.05)
    pipe.enable_bf16_autocast(False)
    assert torch.equal(sample(pipe), reference)


@pytest.mark.slow  # inductor compiles the U-Net: ~3 min on 2 busy cores, even for the tiny model
def test_compile_matches_eager_float32():
    pipe = tiny_pipeline()
    reference = sample(pipe)
    pipe.enable_compile()
    compiled = sample(pipe)
    assert pipe.unet._compiled_call_impl is not None  # nn.Module.compile: forward now goes through inductor
    torch.testing.assert_close(compiled, reference, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------------
# The bundled model (space/default_model): what the Space and the README ship
# ---------------------------------------------------------------------------------------------------------------------

BUNDLED = Path(__file__).resolve().parents[1] / "space" / "default_model"


def test_bundled_model_loads_and_samples_as_the_readme_states():
    from ddpm_hub import DDIMHubScheduler, DDPMHubPipeline

    pipe = DDPMHubPipeline.from_pretrained(BUNDLED)
    pipe.set_progress_bar_config(disable=True)
    unet, scheduler = pipe.unet.config, pipe.scheduler.config
    # README "The bundled model": UNET_PRESETS["small"], 0.72 M parameters, class-conditional on the 10 digits
    assert sum(p.numel() for p in pipe.unet.parameters()) == 717_633
    for key, value in UNET_PRESETS["small"].items():
        assert unet[key] == (list(value) if isinstance(value, tuple) else value), key
    assert (unet["sample_size"], unet["in_channels"], unet["out_channels"]) == (28, 1, 1)
    assert (scheduler["num_train_timesteps"], scheduler["beta_schedule"]) == (1000, "linear")
    assert scheduler["prediction_type"] == "epsilon"
    pipe.scheduler = DDIMHubScheduler.from_config(pipe.scheduler.config)
    images = pipe(batch_size=2, class_labels=[3, 7], num_inference_steps=5, guidance_scale=2.0,
                  generator=torch.Generator().manual_seed(0), output_type="np").images  # fmt: skip
    assert images.shape == (2, 28, 28, 1) and np.isfinite(images).all()
    assert images.std() > 0.1  # an image, not a constant


def test_every_bundled_folders_code_copies_are_what_save_pretrained_writes_today(tmp_path):
    """The .py files in every bundled model folder (space/*/model_index.json) are copies of the library's; a stale
    copy runs old code on the Hub. Regenerate them with
    `python -m ddpm_hub.pipelines --refresh-code space/default_model space/x0_model` when this fails."""
    from ddpm_hub import DDPMHubPipeline

    folders = sorted(path.parent for path in BUNDLED.parent.glob("*/model_index.json"))
    assert BUNDLED in folders and len(folders) >= 2
    for folder in folders:
        saved = tmp_path / folder.name
        DDPMHubPipeline.from_pretrained(folder).save_pretrained(saved)
        written = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*.py"))
        bundled = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.py"))
        assert written == bundled, f"{folder.name} code files: save_pretrained writes {written}, it has {bundled}"
        stale = [name for name in written if (saved / name).read_bytes() != (folder / name).read_bytes()]
        assert not stale, f"space/{folder.name}/{', '.join(stale)} differ from what save_pretrained writes today"
