"""Pipeline tests: determinism, the step generators, and loading a saved pipeline all three ways (local and Hub)."""

import copy
import json
import textwrap

import numpy as np
import pytest
import torch
from olah_hub import hub_env, run_python

from ddpm_hub import (
    UNET_PRESETS,
    DDIMHubScheduler,
    DDPMHubPipeline,
    DDPMHubScheduler,
    DDPMHubUNet2DModel,
    DenoisingStep,
)
from ddpm_hub.hub import push_to_mirror

TRAIN_STEPS = 20


@pytest.fixture(scope="module")
def pipeline() -> DDPMHubPipeline:
    torch.manual_seed(0)
    unet = DDPMHubUNet2DModel(**{**UNET_PRESETS["tiny"], "sample_size": 8})
    with torch.no_grad():  # the output conv is zero-initialised: perturb so that predictions depend on the input
        for parameter in unet.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    pipe = DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler(num_train_timesteps=TRAIN_STEPS))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, seed=0, **kwargs) -> np.ndarray:
    kwargs = {"batch_size": 2, "class_labels": [3, 7], "num_inference_steps": TRAIN_STEPS, **kwargs}
    return pipe(generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs).images


# ----------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------


def test_same_seed_same_images_other_seed_other_images(pipeline):
    first, again, other = sample(pipeline, 0), sample(pipeline, 0), sample(pipeline, 1)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_output_types_and_tuple(pipeline):
    images_np = sample(pipeline)
    assert images_np.shape == (2, 8, 8, 1) and images_np.min() >= 0 and images_np.max() <= 1
    images_pt = pipeline(
        batch_size=2,
        class_labels=[3, 7],
        num_inference_steps=TRAIN_STEPS,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    ).images
    assert images_pt.shape == (2, 1, 8, 8)
    np.testing.assert_allclose(images_pt.permute(0, 2, 3, 1).numpy(), images_np, atol=1e-6)
    pil = pipeline(batch_size=1, class_labels=3, num_inference_steps=3, output_type="pil").images
    assert pil[0].size == (8, 8) and pil[0].mode == "L"
    as_tuple = pipeline(
        batch_size=2,
        class_labels=[3, 7],
        num_inference_steps=TRAIN_STEPS,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        return_dict=False,
    )
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
    np.testing.assert_array_equal(as_tuple[0], images_np)


def test_call_is_the_denoising_generator_run_to_the_end(pipeline):
    steps = list(
        pipeline.denoising_steps(
            batch_size=2,
            class_labels=[3, 7],
            num_inference_steps=TRAIN_STEPS,
            generator=torch.Generator().manual_seed(0),
        )
    )
    assert len(steps) == TRAIN_STEPS and all(isinstance(s, DenoisingStep) for s in steps)
    last = (steps[-1].prev_sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(last, sample(pipeline), atol=1e-6)


def test_denoising_steps_are_a_consistent_chain(pipeline):
    steps = list(pipeline.denoising_steps(batch_size=3, class_labels=1, num_inference_steps=5))
    assert [s.step_index for s in steps] == list(range(5)) and {s.num_steps for s in steps} == {5}
    own = DDPMHubScheduler.from_config(pipeline.scheduler.config)
    own.set_timesteps(5)
    assert [s.timestep for s in steps] == own.timesteps.tolist()
    assert [s.prev_timestep for s in steps] == [s.timestep for s in steps[1:]] + [-1]
    for current, following in zip(steps, steps[1:], strict=False):
        assert torch.equal(current.prev_sample, following.sample)
    for step in steps:
        assert step.sample.shape == step.noise_pred.shape == step.pred_original_sample.shape == (3, 1, 8, 8)
        assert step.pred_original_sample.abs().max() <= 1  # clipped x_0
        assert torch.all(step.std >= 0)
    assert torch.all(steps[-1].std == 0) and torch.equal(steps[-1].prev_sample, steps[-1].mean)  # no noise at the end
    # the mean is the posterior mean at the predicted x_0, computed by the scheduler
    step = steps[1]
    expected = pipeline.scheduler.q_posterior_mean(
        step.pred_original_sample, step.sample, step.timestep, step.prev_timestep
    )
    torch.testing.assert_close(step.mean, expected)


def test_guidance_scale_one_is_the_conditional_model_and_zero_the_unconditional(pipeline):
    x = torch.randn(2, 1, 8, 8)
    labels = torch.tensor([3, 7])
    conditional = pipeline.unet(x, 5, class_labels=labels).sample
    unconditional = pipeline.unet(x, 5, class_labels=torch.full_like(labels, 10)).sample
    torch.testing.assert_close(pipeline.predict(x, 5, labels, 1.0), conditional)
    torch.testing.assert_close(pipeline.predict(x, 5, labels, 0.0), unconditional)
    torch.testing.assert_close(pipeline.predict(x, 5, labels, 3.0), unconditional + 3 * (conditional - unconditional))


def test_ddim_scheduler_swap_is_deterministic_at_eta_zero(pipeline):
    ddim = DDPMHubPipeline(unet=pipeline.unet, scheduler=DDIMHubScheduler.from_config(pipeline.scheduler.config))
    ddim.set_progress_bar_config(disable=True)
    x_T = torch.randn(2, 1, 8, 8)
    a = sample(ddim, 0, num_inference_steps=5, latents=x_T)
    b = sample(ddim, 1, num_inference_steps=5, latents=x_T)
    c = sample(ddim, 1, num_inference_steps=5, latents=x_T, eta=1.0)
    np.testing.assert_array_equal(a, b)  # eta = 0: the seed only matters through x_T
    assert np.abs(a - c).max() > 1e-4


def test_ddim_takes_eps_from_the_clipped_x0_by_default_and_matches_diffusers_without(pipeline):
    """Default: the eps of Eq. 12's direction term is recomputed from the clipped x_0 (improved-diffusion's DDIM).
    With use_clipped_model_output=False the chain is diffusers' DDIMPipeline loop, step for step."""
    from diffusers import DDIMScheduler

    config = pipeline.scheduler.config
    ddim = DDPMHubPipeline(unet=pipeline.unet, scheduler=DDIMHubScheduler.from_config(config))
    ddim.set_progress_bar_config(disable=True)
    labels, x_T = torch.tensor([3, 7]), torch.randn(2, 1, 8, 8) * 3  # large x_T: x_0 predictions get clipped
    clipped_any = False
    for step in ddim.denoising_steps(2, labels, guidance_scale=3.0, num_inference_steps=5, latents=x_T):
        eps_from_x0 = ddim.scheduler.predict_noise_from_x0(step.sample, step.timestep, step.pred_original_sample)
        torch.testing.assert_close(step.noise_pred, eps_from_x0)
        clipped_any |= bool((step.pred_original_sample.abs() == 1).any())
    assert clipped_any, "the test must exercise clipping"

    theirs = DDIMScheduler.from_config(config)
    theirs.set_timesteps(5)
    sample = x_T
    ours = ddim.denoising_steps(
        2, labels, guidance_scale=3.0, num_inference_steps=5, latents=x_T, use_clipped_model_output=False
    )
    for t, step in zip(theirs.timesteps, ours, strict=True):
        eps = ddim.predict(sample, t, labels, 3.0)
        sample = theirs.step(eps, t, sample, eta=0.0).prev_sample
        torch.testing.assert_close(step.prev_sample, sample, rtol=1e-4, atol=1e-5)

    # __call__ and noise_then_denoise_steps pass the choice through
    def images(**kwargs):
        return ddim(2, labels, 3.0, 5, latents=x_T, output_type="pt", **kwargs).images

    torch.testing.assert_close(images(use_clipped_model_output=False), (sample / 2 + 0.5).clamp(0, 1))
    assert (images() - images(use_clipped_model_output=False)).abs().max() > 1e-3
    x_0 = torch.rand(2, 1, 8, 8) * 2 - 1

    def last(**kwargs):
        chain = ddim.noise_then_denoise_steps(
            x_0, 15, labels, 3.0, 5, generator=torch.Generator().manual_seed(0), **kwargs
        )
        return list(chain)[-1].prev_sample

    assert (last() - last(use_clipped_model_output=False)).abs().max() > 1e-4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"class_labels": [1, 2, 3]}, "class_labels"),
        ({"class_labels": 10}, r"\[0, 9\]"),
        ({"class_labels": "3"}, r"class_labels.*'3'.*integers in \[0, 9\]"),
        ({"class_labels": ["3", "7"]}, r"class_labels.*integers in \[0, 9\]"),
        ({"class_labels": 3.7}, r"class_labels.*3\.7.*integers in \[0, 9\]"),
        ({"class_labels": torch.tensor([1.5, 2.0])}, r"class_labels.*integers in \[0, 9\]"),
        ({"class_labels": True}, r"class_labels.*integers in \[0, 9\]"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_inference_steps": TRAIN_STEPS + 1}, "num_inference_steps"),
        ({"output_type": "jpeg"}, "output_type"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"guidance_scale": float("nan")}, r"`guidance_scale` must be a finite number >= 0, got nan"),
        ({"guidance_scale": "2"}, r"`guidance_scale` must be a finite number"),
        ({"eta": float("nan")}, r"`eta` must be a finite number >= 0, got nan"),
        ({"latents": torch.zeros(2, 1, 4, 4)}, "latents"),
    ],
)
def test_bad_arguments_raise_clear_errors(pipeline, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipeline(**{"batch_size": 2, "num_inference_steps": 2, **kwargs})


def test_a_prepared_chain_takes_no_chain_options_beside_it(pipeline):
    """`prepare_chain` is the one place a chain's options are read: given with `chain=`, they would be ignored."""
    chain = pipeline.prepare_chain(2, [3, 7], 2.0, 3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"`chain` was given together with batch_size, guidance_scale"):
        next(pipeline.denoising_steps(batch_size=2, guidance_scale=3.0, chain=chain))
    assert chain.step_index == 0  # nothing ran
    steps = list(pipeline.denoising_steps(chain=chain, eta=0, noise_scale=1))  # the defaults, spelled out: fine
    assert len(steps) == 3 and chain.done


def test_class_labels_integer_valued_floats_are_accepted_and_unconditional_models_take_none(pipeline):
    as_ints = sample(pipeline, class_labels=[3, 7])
    np.testing.assert_array_equal(sample(pipeline, class_labels=[3.0, 7.0]), as_ints)
    np.testing.assert_array_equal(sample(pipeline, class_labels=np.array([3, 7])), as_ints)
    unconditional = DDPMHubUNet2DModel(**{**UNET_PRESETS["tiny"], "sample_size": 8, "num_class_embeds": None})
    pipe = with_scheduler(DDPMHubPipeline(unet=unconditional, scheduler=pipeline.scheduler), pipeline.scheduler)
    with pytest.raises(ValueError, match="unconditional.*allowed value is None"):
        pipe(batch_size=1, class_labels=3, num_inference_steps=2)
    assert pipe(batch_size=1, num_inference_steps=2, output_type="pt").images.shape == (1, 1, 8, 8)


def test_noising_steps_report_the_chain_and_the_closed_form(pipeline):
    x_0 = torch.zeros(4000, 1, 2, 2) + 0.5  # many copies: the statistics of the two routes must agree
    steps = list(pipeline.noising_steps(x_0, timesteps=[0, 9, 19], generator=torch.Generator().manual_seed(0)))
    assert [s.timestep for s in steps] == [0, 9, 19]
    for step in steps:
        numbers = pipeline.scheduler.coefficients(step.timestep)
        assert step.coefficients == numbers
        for x_t in (step.sample, step.closed_form_sample):
            assert abs(x_t.mean().item() - numbers["sqrt_alpha_bar_t"] * 0.5) < 0.02
            assert abs(x_t.std().item() - numbers["sqrt_one_minus_alpha_bar_t"]) < 0.02
    with pytest.raises(ValueError, match="timesteps"):
        list(pipeline.noising_steps(x_0[:1], timesteps=[TRAIN_STEPS]))


def test_noise_then_denoise_starts_from_the_noised_image(pipeline):
    x_0 = torch.zeros(1, 1, 8, 8)
    steps = list(
        pipeline.noise_then_denoise_steps(
            x_0,
            start_timestep=9,
            class_labels=2,
            num_inference_steps=TRAIN_STEPS,
            generator=torch.Generator().manual_seed(0),
        )
    )
    assert [s.timestep for s in steps] == list(range(9, -1, -1))
    noise = torch.randn(x_0.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(steps[0].sample, pipeline.scheduler.add_noise(x_0, noise, torch.tensor([9])))
    with pytest.raises(ValueError, match="start_timestep"):
        next(pipeline.noise_then_denoise_steps(x_0, start_timestep=TRAIN_STEPS))


# ----------------------------------------------------------------------------------------------------------------
# Stock diffusers schedulers, and the chain the sampling engine drives
# ----------------------------------------------------------------------------------------------------------------

STOCK_SCHEDULERS = (
    "DDIMScheduler",
    "DPMSolverMultistepScheduler",
    "EulerDiscreteScheduler",
    "UniPCMultistepScheduler",
)


def with_scheduler(pipeline, scheduler) -> DDPMHubPipeline:
    pipe = DDPMHubPipeline(unet=pipeline.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_loop(pipe, x_T, labels, guidance_scale, steps):
    """The sampling loop of diffusers' own pipelines, written out: init_noise_sigma, scale_model_input, guidance
    (conditional half first here), scheduler.step. The reference a drop-in pipeline must match."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    sample = x_T * scheduler.init_noise_sigma
    null = torch.full_like(labels, pipe.num_classes)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(torch.cat([sample, sample]), t)
        conditional, unconditional = pipe.unet(model_input, t, class_labels=torch.cat([labels, null])).sample.chunk(2)
        guided = unconditional + guidance_scale * (conditional - unconditional)
        sample = scheduler.step(guided, t, sample).prev_sample
    return sample


@pytest.mark.parametrize("name", STOCK_SCHEDULERS)
def test_stock_diffusers_schedulers_drive_the_pipeline_as_in_diffusers(pipeline, name):
    import diffusers

    pipe = with_scheduler(pipeline, getattr(diffusers, name).from_config(pipeline.scheduler.config))
    labels, x_T = torch.tensor([3, 7]), torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    as_diffusers = {"use_clipped_model_output": False}  # diffusers' DDIM default (ours is True); others ignore it
    steps = list(pipe.denoising_steps(2, labels, 2.0, 5, latents=x_T, **as_diffusers))
    assert len(steps) == 5 and [s.step_index for s in steps] == list(range(5))
    expected = diffusers_loop(pipe, x_T, labels, 2.0, 5)
    torch.testing.assert_close(steps[-1].prev_sample, expected, rtol=1e-4, atol=1e-5)
    images = pipe(2, labels, 2.0, 5, latents=x_T, output_type="pt", **as_diffusers).images
    torch.testing.assert_close(images, (expected / 2 + 0.5).clamp(0, 1), rtol=1e-4, atol=1e-5)
    # the step view shows what the scheduler returns; what it does not return is None
    returns_x0 = name in ("DDIMScheduler", "EulerDiscreteScheduler")
    for step in steps:
        assert step.mean is None and step.std is None
        assert (step.pred_original_sample is not None) == returns_x0
        assert step.noise_pred.shape == step.model_output.shape == (2, 1, 8, 8)  # an eps model: the guided output
    assert pipe.scheduler.timesteps is None or len(pipe.scheduler.timesteps) != 5  # the chain stepped its own copy


def test_every_evaluation_scheduler_choice_drives_the_pipeline(pipeline):
    """`python -m ddpm_hub.evaluation --scheduler S`: each choice builds with from_config and samples (Heun and PNDM
    visit some timesteps twice: the chain takes every entry of their `timesteps`)."""
    import diffusers

    from ddpm_hub.evaluation import STOCK_SCHEDULERS

    for name, (class_name, overrides) in STOCK_SCHEDULERS.items():
        scheduler = getattr(diffusers, class_name).from_config(pipeline.scheduler.config, **overrides)
        pipe = with_scheduler(pipeline, scheduler)
        steps = list(pipe.denoising_steps(2, [3, 7], 2.0, 4, torch.Generator().manual_seed(0)))
        own = copy.deepcopy(scheduler)
        own.set_timesteps(4)
        assert [step.timestep for step in steps] == [pytest.approx(t) for t in own.timesteps.tolist()], name
        assert torch.isfinite(steps[-1].prev_sample).all(), name


def test_stock_schedulers_without_a_clip_step_with_the_clipped_x0(pipeline):
    """DPM-Solver, UniPC and Euler ignore the config's clip_sample; the chain hands them the eps of the clipped x_0
    (use_clipped_model_output, the default), as DDIM's own option does. Without it x_0 leaves the data range."""
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 3  # x_0 predictions get clipped
    euler = with_scheduler(pipeline, EulerDiscreteScheduler.from_config(pipeline.scheduler.config))
    clipped = list(euler.denoising_steps(2, [3, 7], 3.0, 5, latents=x_T))
    raw = list(euler.denoising_steps(2, [3, 7], 3.0, 5, latents=x_T, use_clipped_model_output=False))
    assert max(step.pred_original_sample.abs().max() for step in clipped) <= 1 + 1e-5
    assert max(step.pred_original_sample.abs().max() for step in raw) > 1.1
    solver = with_scheduler(pipeline, DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config))
    chain = solver.prepare_chain(2, [3, 7], 3.0, 5, latents=x_T)
    while not chain.done:
        chain.step(solver.unet_forward(*chain.model_input()))
        assert chain.scheduler.model_outputs[-1].abs().max() <= 1 + 1e-5  # the x_0 DPM-Solver++ steps with


def test_the_pipeline_is_the_place_of_guidance(pipeline):
    """A stock scheduler has no guidance of its own: the pipeline guides before the scheduler steps."""
    from diffusers import DDIMScheduler

    stock = with_scheduler(pipeline, DDIMScheduler.from_config(pipeline.scheduler.config))
    x, labels = torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    torch.testing.assert_close(stock.predict(x, 5, labels, 3.0), pipeline.predict(x, 5, labels, 3.0))
    chain = stock.prepare_chain(2, labels, guidance_scale=3.0, num_inference_steps=4)
    model_input = chain.model_input()
    assert model_input.sample.shape == (4, 1, 8, 8) and model_input.class_labels.tolist() == [3, 7, 10, 10]
    assert model_input.timestep.dtype == torch.long and model_input.timestep.tolist() == [chain.timesteps[0]] * 4
    step = chain.step(stock.unet_forward(*model_input))
    conditional = pipeline.unet(model_input.sample[:2], model_input.timestep[:2], class_labels=labels).sample
    unconditional = pipeline.unet(model_input.sample[2:], model_input.timestep[2:], class_labels=labels * 0 + 10)
    torch.testing.assert_close(step.model_output, unconditional.sample + 3 * (conditional - unconditional.sample))


def test_guidance_with_a_learned_variance_model_guides_only_the_prediction():
    torch.manual_seed(1)
    unet = DDPMHubUNet2DModel(**{**UNET_PRESETS["tiny"], "sample_size": 8, "out_channels": 2})
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    scheduler = DDPMHubScheduler(num_train_timesteps=TRAIN_STEPS, variance_type="learned_range")
    pipe = with_scheduler(DDPMHubPipeline(unet=unet, scheduler=scheduler), scheduler)
    x, labels = torch.randn(2, 1, 8, 8), torch.tensor([3, 7])
    conditional = unet(x, 5, class_labels=labels).sample
    unconditional = unet(x, 5, class_labels=torch.full_like(labels, 10)).sample
    guided = pipe.predict(x, 5, labels, 3.0)
    assert guided.shape == (2, 2, 8, 8)
    torch.testing.assert_close(guided[:, :1], unconditional[:, :1] + 3 * (conditional[:, :1] - unconditional[:, :1]))
    torch.testing.assert_close(guided[:, 1:], conditional[:, 1:])  # the variance is the conditional model's
    steps = list(pipe.denoising_steps(2, labels, guidance_scale=3.0, num_inference_steps=4))
    for step in steps[:-1]:
        assert step.std.shape == (2, 1, 8, 8) and torch.isfinite(step.prev_sample).all()
        expected_std = scheduler.step_std(step.timestep, step.prev_timestep, step.model_output[:, 1:])
        torch.testing.assert_close(step.std, expected_std)


def test_chains_with_different_samplers_share_one_unet_call_per_tick(pipeline):
    """What the sampling engine does: concatenate the chains' model inputs, one U-Net call, a slice per chain."""
    from diffusers import DPMSolverMultistepScheduler

    def make_chains():
        ddpm = pipeline.prepare_chain(2, [3, 7], 2.0, TRAIN_STEPS, torch.Generator().manual_seed(0))
        solver = pipeline.prepare_chain(
            3,
            4,
            3.0,
            6,
            torch.Generator().manual_seed(1),
            scheduler=DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config),
        )
        plain = pipeline.prepare_chain(1, 5, 1.0, 7, torch.Generator().manual_seed(2))  # N = B: no guidance
        return ddpm, solver, plain

    alone = []
    for chain in make_chains():
        steps = list(pipeline.denoising_steps(chain=chain))
        assert len(steps) == chain.num_steps and chain.done
        alone.append(chain.sample)

    chains = make_chains()
    tick = 0
    while not all(chain.done for chain in chains):
        # the solver joins late and the plain chain skips every third tick: rows mix differently at every tick
        running = [c for i, c in enumerate(chains) if not c.done and not (i == 1 and tick < 3 or i == 2 and tick % 3)]
        inputs = [chain.model_input() for chain in running]
        output = pipeline.unet_forward(
            torch.cat([i.sample for i in inputs]),
            torch.cat([i.timestep for i in inputs]),
            torch.cat([i.class_labels for i in inputs]),
        )
        for chain, rows in zip(running, output.split([len(i.sample) for i in inputs]), strict=True):
            chain.step(rows)
        tick += 1
    for chain, expected in zip(chains, alone, strict=True):
        torch.testing.assert_close(chain.sample, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="done"):
        chains[0].model_input()
    unguided = pipeline.prepare_chain(2, None, 2.0, 5).model_input()  # rows concatenate: labels, never None
    assert unguided.class_labels.tolist() == [10, 10] and unguided.sample.shape == (2, 1, 8, 8)
    fresh = pipeline.prepare_chain(2, [3, 7], 2.0, 5)
    with pytest.raises(ValueError, match="4 rows"):
        fresh.step(torch.zeros(2, 1, 8, 8))


# ----------------------------------------------------------------------------------------------------------------
# Teaching options: noise_scale, model_timestep
# ----------------------------------------------------------------------------------------------------------------


def test_noise_scale_multiplies_the_noise_each_step_adds(pipeline):
    ddim = with_scheduler(pipeline, DDIMHubScheduler.from_config(pipeline.scheduler.config))

    def first_step(pipe, noise_scale, **kwargs):
        generator = torch.Generator().manual_seed(0)
        return next(pipe.denoising_steps(2, [3, 7], 2.0, 5, generator, noise_scale=noise_scale, **kwargs))

    for pipe, kwargs in ((pipeline, {}), (ddim, {"eta": 1.0})):
        full, half, none = first_step(pipe, 1.0, **kwargs), first_step(pipe, 0.5, **kwargs), first_step(pipe, 0.0)
        torch.testing.assert_close(half.mean, full.mean)
        assert (full.prev_sample - full.mean).abs().max() > 1e-3
        torch.testing.assert_close(half.prev_sample - half.mean, 0.5 * (full.prev_sample - full.mean))
        assert torch.equal(none.prev_sample, none.mean)  # 0: the mean only
    steps = list(pipeline.denoising_steps(2, [3, 7], 2.0, 5, noise_scale=0.0))  # a whole chain of means
    assert all(torch.equal(step.prev_sample, step.mean) for step in steps)
    with pytest.raises(ValueError, match="noise_scale"):
        pipeline(batch_size=1, num_inference_steps=2, noise_scale=-1.0)
    from diffusers import DDPMScheduler, EulerDiscreteScheduler

    for stock in (DDPMScheduler, EulerDiscreteScheduler):  # their `step` draws its own noise: refuse, do not ignore
        pipe = with_scheduler(pipeline, stock.from_config(pipeline.scheduler.config))
        with pytest.raises(ValueError, match="variance_noise"):
            pipe(batch_size=1, num_inference_steps=2, noise_scale=0.0)


def test_model_timestep_changes_only_the_t_told_to_the_unet(pipeline):
    told = []
    forward = pipeline.unet.forward

    def spy(sample, timestep, **kwargs):
        told.append(timestep.tolist())
        return forward(sample, timestep, **kwargs)

    def run(**kwargs):
        told.clear()
        steps = list(pipeline.denoising_steps(2, [3, 7], 2.0, 5, torch.Generator().manual_seed(0), **kwargs))
        return steps, list(told)

    pipeline.unet.forward = spy
    try:
        default, told_default = run()
        same, told_same = run(model_timestep=lambda t: t)
        frozen, told_frozen = run(model_timestep=lambda t: 0)
    finally:
        del pipeline.unet.forward
    true_t = [step.timestep for step in default]
    assert told_default == told_same == [[t] * 4 for t in true_t]  # (2B,) with guidance
    assert told_frozen == [[0] * 4] * 5
    assert [step.timestep for step in frozen] == true_t  # the scheduler still steps with the true t
    torch.testing.assert_close(same[-1].prev_sample, default[-1].prev_sample)
    assert (frozen[0].noise_pred - default[0].noise_pred).abs().max() > 1e-4
    with pytest.raises(ValueError, match="model_timestep"):
        pipeline(batch_size=1, num_inference_steps=2, model_timestep=5)


# ----------------------------------------------------------------------------------------------------------------
# callback_on_step_end, as diffusers' pipelines take it
# ----------------------------------------------------------------------------------------------------------------


def test_callback_on_step_end_sees_each_step_and_its_latents_replace_x_t(pipeline):
    seen = []

    def callback(pipe, step_index, timestep, callback_kwargs):
        assert pipe is pipeline and pipe.num_timesteps == 5 and pipe.guidance_scale == 2.0
        seen.append((step_index, int(timestep), sorted(callback_kwargs)))
        return {"latents": callback_kwargs["latents"] * 0.5}  # shrink x_{t-1} every step

    generator = torch.Generator().manual_seed(0)
    images = pipeline(2, [3, 7], 2.0, 5, generator, output_type="pt", callback_on_step_end=callback).images
    timesteps = pipeline.prepare_chain(num_inference_steps=5).timesteps
    assert seen == [(i, t, ["latents"]) for i, t in enumerate(timesteps)]

    chain = pipeline.prepare_chain(2, [3, 7], 2.0, 5, torch.Generator().manual_seed(0))  # the same by hand
    while not chain.done:
        chain.step(pipeline.unet_forward(*chain.model_input()))
        chain.sample = chain.sample * 0.5
    torch.testing.assert_close(images, (chain.sample / 2 + 0.5).clamp(0, 1))
    plain = pipeline(2, [3, 7], 2.0, 5, torch.Generator().manual_seed(0), output_type="pt").images
    assert (images - plain).abs().max() > 1e-3

    steps = list(pipeline.denoising_steps(2, [3, 7], 2.0, 5, callback_on_step_end=callback))
    for current, following in zip(steps, steps[1:], strict=False):
        assert torch.equal(current.prev_sample, following.sample)  # the yielded chain stays consistent


def test_callback_tensor_inputs_are_validated_and_pipeline_callbacks_accepted(pipeline):
    from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

    with pytest.raises(ValueError, match=r"callback_on_step_end_tensor_inputs.*prompt_embeds"):
        pipeline(
            batch_size=1,
            num_inference_steps=2,
            callback_on_step_end=lambda *args: {},
            callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"],
        )

    class GuidanceCutoff(PipelineCallback):  # diffusers' SDCFGCutoffCallback, for our pipeline
        tensor_inputs = ["model_output", "pred_original_sample"]

        def callback_fn(self, pipe, step_index, timestep, callback_kwargs):
            assert callback_kwargs["model_output"].shape == (2, 1, 8, 8)
            assert callback_kwargs["pred_original_sample"].abs().max() <= 1
            if step_index == self.config.cutoff_step_index:
                pipe._guidance_scale = 1.0
            return callback_kwargs

    calls = []

    class Count(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipe, step_index, timestep, callback_kwargs):
            calls.append(step_index)
            return callback_kwargs

    cutoff = MultiPipelineCallbacks([GuidanceCutoff(cutoff_step_ratio=None, cutoff_step_index=1), Count()])
    images = pipeline(
        2, [3, 7], 3.0, 5, torch.Generator().manual_seed(0), output_type="pt", callback_on_step_end=cutoff
    ).images
    assert calls == [0, 1, 2, 3, 4]
    chain = pipeline.prepare_chain(2, [3, 7], 3.0, 5, torch.Generator().manual_seed(0))
    while not chain.done:
        if chain.step_index == 2:
            chain.guidance_scale = 1.0  # from the step after the cutoff step: conditional only
        chain.step(pipeline.unet_forward(*chain.model_input()))
    torch.testing.assert_close(images, (chain.sample / 2 + 0.5).clamp(0, 1))


def test_interrupt_stops_the_chain(pipeline):
    def stop_after_two(pipe, step_index, timestep, callback_kwargs):
        if step_index == 1:
            pipe._interrupt = True
        return callback_kwargs

    steps = list(pipeline.denoising_steps(2, [3, 7], 2.0, 5, callback_on_step_end=stop_after_two))
    assert [s.step_index for s in steps] == [0, 1] and pipeline.interrupt
    generator = torch.Generator().manual_seed(0)
    images = pipeline(2, [3, 7], 2.0, 5, generator, output_type="pt", callback_on_step_end=stop_after_two).images
    chain = pipeline.prepare_chain(2, [3, 7], 2.0, 5, torch.Generator().manual_seed(0))
    for _ in range(2):
        chain.step(pipeline.unet_forward(*chain.model_input()))
    torch.testing.assert_close(images, (chain.sample / 2 + 0.5).clamp(0, 1))  # x_t where it stopped
    assert len(list(pipeline.denoising_steps(1, 3, 2.0, 3))) == 3 and not pipeline.interrupt  # reset per chain


# ----------------------------------------------------------------------------------------------------------------
# Saving and loading: three ways, from a folder and through a Hub server
# ----------------------------------------------------------------------------------------------------------------

# Run in a fresh interpreter in which `ddpm_hub` cannot be imported: what a stock diffusers user has.
WITHOUT_DDPM_HUB = """
import sys

class _BlockDdpmHub:
    def find_spec(self, name, path=None, target=None):
        if name == "ddpm_hub" or name.startswith("ddpm_hub."):
            raise ImportError("ddpm_hub is not installed in this interpreter")

sys.meta_path.insert(0, _BlockDdpmHub())
"""

SAMPLE_AND_SAVE = """
import numpy as np, torch
pipe.set_progress_bar_config(disable=True)
images = pipe(batch_size=2, class_labels=[3, 7], num_inference_steps={steps},
              generator=torch.Generator().manual_seed(0), output_type="np").images
np.save({out!r}, images)
"""


@pytest.fixture(scope="module")
def saved(pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "pipeline"
    pipeline.save_pretrained(folder)
    return folder


def test_saved_folder_layout(saved):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_ddpm_hub", "DDPMHubPipeline"]
    assert index["unet"] == ["unet_ddpm_hub", "DDPMHubUNet2DModel"]
    assert index["scheduler"] == ["scheduling_ddpm_hub", "DDPMHubScheduler"]
    for path in (
        "pipeline_ddpm_hub.py",
        "unet/unet_ddpm_hub.py",
        "scheduler/scheduling_ddpm_hub.py",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    ):
        assert (saved / path).is_file(), path
    assert not list(saved.rglob("*.bin"))
    # the code that travels with the weights must not need ddpm_hub
    for code in saved.rglob("*.py"):
        assert "ddpm_hub import" not in code.read_text() and "import ddpm_hub" not in code.read_text()


def test_load_with_our_class_gives_the_same_images(pipeline, saved):
    loaded = DDPMHubPipeline.from_pretrained(saved)
    assert type(loaded.unet) is DDPMHubUNet2DModel and type(loaded.scheduler) is DDPMHubScheduler
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(sample(loaded), sample(pipeline))


def test_the_recorded_guidance_scale_is_the_default_and_travels_with_the_folder(pipeline, tmp_path):
    """`pipe(...)` without `guidance_scale` samples at the model's recorded w (model_index.json), as diffusers
    pipelines keep their own settings; the other chain entry points default to it too."""
    pipe = DDPMHubPipeline(unet=pipeline.unet, scheduler=pipeline.scheduler, guidance_scale=1.25)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.guidance_scale == 1.25
    np.testing.assert_array_equal(sample(pipe), sample(pipe, guidance_scale=1.25))
    assert np.abs(sample(pipe) - sample(pipe, guidance_scale=2.0)).max() > 1e-3
    steps = list(pipe.denoising_steps(batch_size=1, class_labels=3, num_inference_steps=2))
    assert pipe.guidance_scale == 1.25 and len(steps) == 2
    pipe.save_pretrained(tmp_path / "w")
    assert json.loads((tmp_path / "w" / "model_index.json").read_text())["guidance_scale"] == 1.25
    loaded = DDPMHubPipeline.from_pretrained(tmp_path / "w")
    assert loaded.config.guidance_scale == 1.25
    # a folder saved before the key existed loads with the documented default
    index = json.loads((tmp_path / "w" / "model_index.json").read_text())
    del index["guidance_scale"]
    (tmp_path / "w" / "model_index.json").write_text(json.dumps(index))
    from ddpm_hub.pipelines.pipeline_ddpm import DEFAULT_GUIDANCE_SCALE

    assert DDPMHubPipeline.from_pretrained(tmp_path / "w").config.guidance_scale == DEFAULT_GUIDANCE_SCALE
    with pytest.raises(ValueError, match=r"`guidance_scale`=-1.*>= 0"):
        DDPMHubPipeline(unet=pipeline.unet, scheduler=pipeline.scheduler, guidance_scale=-1)


def _three_ways_code(source: str, revision: str | None, out_dir) -> str:
    rev = f", revision={revision!r}" if revision else ""
    way_1 = (
        f"from ddpm_hub import DDPMHubPipeline\npipe = DDPMHubPipeline.from_pretrained({source!r}{rev})\n"
        + SAMPLE_AND_SAVE.format(steps=TRAIN_STEPS, out=str(out_dir / "way1.npy"))
    )
    way_2 = (
        WITHOUT_DDPM_HUB + f"from diffusers import DiffusionPipeline\n"
        f"pipe = DiffusionPipeline.from_pretrained({source!r}{rev}, trust_remote_code=True)\n"
        "assert type(pipe).__name__ == 'DDPMHubPipeline' and not any(m.startswith('ddpm_hub') for m in sys.modules)\n"
        + SAMPLE_AND_SAVE.format(steps=TRAIN_STEPS, out=str(out_dir / "way2.npy"))
    )
    way_3 = (
        f"import diffusers\nfrom ddpm_hub import DDPMHubPipeline, DDPMHubUNet2DModel\n"
        f"unet = DDPMHubUNet2DModel.from_pretrained({source!r}, subfolder='unet'{rev})\n"
        f"stock = diffusers.DDPMScheduler.from_pretrained({source!r}, subfolder='scheduler'{rev})\n"
        "assert type(stock) is diffusers.DDPMScheduler\n"
        "from ddpm_hub import DDPMHubScheduler\n"
        "pipe = DDPMHubPipeline(unet=unet, scheduler=DDPMHubScheduler.from_config(stock.config))\n"
        + SAMPLE_AND_SAVE.format(steps=TRAIN_STEPS, out=str(out_dir / "way3.npy"))
    )
    return way_1, way_2, way_3


def _check_three_ways(pipeline, source, revision, tmp_path, env=None):
    expected = sample(pipeline)
    for index, code in enumerate(_three_ways_code(source, revision, tmp_path), start=1):
        run_python(textwrap.dedent(code), env, timeout=180)
        np.testing.assert_array_equal(np.load(tmp_path / f"way{index}.npy"), expected, err_msg=f"way {index}")


def test_load_three_ways_from_a_folder(pipeline, saved, tmp_path):
    _check_three_ways(pipeline, str(saved), None, tmp_path, {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})


def test_load_three_ways_through_a_hub_server(pipeline, saved, olah_hub, tmp_path):
    sha = push_to_mirror(saved, olah_hub.mirror_dir, "ddpm-hub-tests/pipeline")
    env = hub_env(olah_hub.endpoint, tmp_path / "hf_home")
    _check_three_ways(pipeline, "ddpm-hub-tests/pipeline", sha, tmp_path, env)


def test_our_loader_needs_no_revision_on_a_mirror(pipeline, saved, olah_hub, tmp_path):
    """olah (offline) answers the un-revisioned metadata route with 401, which breaks stock diffusers' loading without
    `revision` (README, "Whose bug the missing revision is"); `DDPMHubPipeline.from_pretrained` never asks it."""
    push_to_mirror(saved, olah_hub.mirror_dir, "ddpm-hub-tests/no-revision")
    code = (
        "from ddpm_hub import DDPMHubPipeline\npipe = DDPMHubPipeline.from_pretrained('ddpm-hub-tests/no-revision')\n"
        + SAMPLE_AND_SAVE.format(steps=TRAIN_STEPS, out=str(tmp_path / "loaded.npy"))
    )
    run_python(code, hub_env(olah_hub.endpoint, tmp_path / "hf_home"), timeout=180)
    np.testing.assert_array_equal(np.load(tmp_path / "loaded.npy"), sample(pipeline))


# ----------------------------------------------------------------------------------------------------------------
# from_pretrained: diffusers' arguments pass through, bad keywords and bad folders get a clear error
# ----------------------------------------------------------------------------------------------------------------


def test_from_pretrained_rejects_misspelled_keywords(saved):
    with pytest.raises(ValueError, match=r"'revison'.*allowed values are .*revision"):
        DDPMHubPipeline.from_pretrained(saved, revison="main")


def test_from_pretrained_says_what_is_wrong_with_the_folder(saved, tmp_path, monkeypatch):
    import shutil

    not_a_pipeline = tmp_path / "copy"
    shutil.copytree(saved, not_a_pipeline)
    (not_a_pipeline / "model_index.json").unlink()
    with pytest.raises(ValueError, match=r"not a saved pipeline: it has no model_index.json.*'scheduler', 'unet'"):
        DDPMHubPipeline.from_pretrained(not_a_pipeline)
    with pytest.raises(ValueError, match=r"single model's folder.*DDPMHubUNet2DModel"):
        DDPMHubPipeline.from_pretrained(saved / "unet")
    with pytest.raises(ValueError, match=r"no folder .*pipline.*nearest existing folder is .*holds.*pipeline"):
        DDPMHubPipeline.from_pretrained(saved.parent / "pipline")  # a mistyped absolute path
    monkeypatch.chdir(saved.parent.parent)  # a mistyped relative path: "saved0/pipline" has a repo id's shape
    with pytest.raises(ValueError, match=r"no folder .*pipline.*not a Hub repo id"):
        DDPMHubPipeline.from_pretrained(f"{saved.parent.name}/pipline")
    no_unet = tmp_path / "no_unet"
    shutil.copytree(saved, no_unet)
    shutil.rmtree(no_unet / "unet")
    with pytest.raises(ValueError, match="no unet/ subfolder"):
        DDPMHubPipeline.from_pretrained(no_unet)


def test_from_pretrained_passes_diffusers_loading_arguments_on(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path / "fp16", variant="fp16")
    assert (tmp_path / "fp16/unet/diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = DDPMHubPipeline.from_pretrained(tmp_path / "fp16", variant="fp16")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(sample(loaded), sample(pipeline))

    pipeline.save_pretrained(tmp_path / "bin", safe_serialization=False)
    with pytest.raises(OSError, match="safetensors"):
        DDPMHubPipeline.from_pretrained(tmp_path / "bin", use_safetensors=True)
    assert DDPMHubPipeline.from_pretrained(tmp_path / "bin", use_safetensors=False).unet.dtype == torch.float32

    for kwargs in (
        {"torch_dtype": torch.bfloat16},
        {"dtype": torch.bfloat16},
        {"torch_dtype": {"unet": torch.bfloat16}},
    ):
        assert DDPMHubPipeline.from_pretrained(tmp_path / "bin", **kwargs).unet.dtype == torch.bfloat16, kwargs
    with pytest.raises(ValueError, match="low_cpu_mem_usage=True"):  # diffusers' own check: both reached the U-Net
        DDPMHubPipeline.from_pretrained(tmp_path / "bin", low_cpu_mem_usage=False, device_map="cpu")
    on_cpu = DDPMHubPipeline.from_pretrained(tmp_path / "bin", low_cpu_mem_usage=True, device_map="cpu")
    assert on_cpu.unet.hf_device_map == {"": torch.device("cpu")}


def test_from_pretrained_loads_the_scheduler_class_the_folder_names(pipeline, tmp_path):
    from diffusers import DPMSolverMultistepScheduler

    for scheduler in (
        DDIMHubScheduler.from_config(pipeline.scheduler.config),
        DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config),
    ):
        folder = tmp_path / type(scheduler).__name__
        with_scheduler(pipeline, scheduler).save_pretrained(folder)
        assert type(DDPMHubPipeline.from_pretrained(folder).scheduler) is type(scheduler)


# ----------------------------------------------------------------------------------------------------------------
# Every scheduler of ours travels with its code: stock diffusers alone loads the folder
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler_class", [DDPMHubScheduler, DDIMHubScheduler])
def test_saved_folder_loads_with_stock_diffusers_alone_for_every_scheduler(pipeline, scheduler_class, tmp_path):
    pipe = with_scheduler(pipeline, scheduler_class.from_config(pipeline.scheduler.config))
    folder = tmp_path / "pipeline"
    pipe.save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    module_file = index["scheduler"][0]
    assert index["scheduler"][1] == scheduler_class.__name__ and (folder / "scheduler" / f"{module_file}.py").is_file()
    for code in folder.rglob("*.py"):
        assert "ddpm_hub import" not in code.read_text() and "import ddpm_hub" not in code.read_text()
    code = (
        WITHOUT_DDPM_HUB + "from diffusers import DiffusionPipeline\n"
        f"pipe = DiffusionPipeline.from_pretrained({str(folder)!r}, trust_remote_code=True)\n"
        f"assert type(pipe.scheduler).__name__ == {scheduler_class.__name__!r}\n"
        "assert not any(m.startswith('ddpm_hub') for m in sys.modules)\n"
        + SAMPLE_AND_SAVE.format(steps=5, out=str(tmp_path / "stock.npy"))
    )
    run_python(textwrap.dedent(code), {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, timeout=180)
    np.testing.assert_array_equal(np.load(tmp_path / "stock.npy"), sample(pipe, num_inference_steps=5))


def test_ddim_pipeline_loads_with_stock_diffusers_alone_through_a_hub_server(pipeline, olah_hub, tmp_path):
    """From a repo id diffusers fetches the files a component's code imports one by one: they must be in the repo."""
    pipe = with_scheduler(pipeline, DDIMHubScheduler.from_config(pipeline.scheduler.config))
    pipe.save_pretrained(tmp_path / "ddim")
    sha = push_to_mirror(tmp_path / "ddim", olah_hub.mirror_dir, "ddpm-hub-tests/ddim-pipeline")
    code = (
        WITHOUT_DDPM_HUB + "from diffusers import DiffusionPipeline\n"
        f"pipe = DiffusionPipeline.from_pretrained('ddpm-hub-tests/ddim-pipeline', revision={sha!r}, "
        "trust_remote_code=True)\n"
        "assert type(pipe.scheduler).__name__ == 'DDIMHubScheduler'\n"
        + SAMPLE_AND_SAVE.format(steps=5, out=str(tmp_path / "hub.npy"))
    )
    run_python(textwrap.dedent(code), hub_env(olah_hub.endpoint, tmp_path / "hf_home"), timeout=180)
    np.testing.assert_array_equal(np.load(tmp_path / "hub.npy"), sample(pipe, num_inference_steps=5))


# ----------------------------------------------------------------------------------------------------------------
# Guidance on pictures, and beta vs beta-tilde from the same draws
# ----------------------------------------------------------------------------------------------------------------


def run_to_end(pipe, chain) -> list[DenoisingStep]:
    return list(pipe.denoising_steps(chain=chain))


def test_each_guided_step_carries_eps_c_and_eps_u(pipeline):
    chain = pipeline.prepare_chain(
        2, [3, 7], guidance_scale=2.5, num_inference_steps=5, generator=torch.manual_seed(0)
    )
    for step in run_to_end(pipeline, chain):
        parts = step.guidance
        labels = torch.tensor([3, 7, 10, 10])  # the conditional rows, then the null class (num_class_embeds = 10)
        output = pipeline.unet_forward(torch.cat([step.sample, step.sample]), step.timestep, labels)
        torch.testing.assert_close(parts.conditional, output[:2], rtol=0, atol=0)
        torch.testing.assert_close(parts.unconditional, output[2:], rtol=0, atol=0)
        torch.testing.assert_close(parts.difference, output[:2] - output[2:], rtol=0, atol=0)
        torch.testing.assert_close(parts.guided, output[2:] + 2.5 * (output[:2] - output[2:]), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(step.model_output, parts.guided, rtol=0, atol=0)
        assert parts.guidance_scale == 2.5
    # no guidance to show: one U-Net call per step (w = 1, or no digit)
    for kwargs in ({"class_labels": [3, 7], "guidance_scale": 1.0}, {"class_labels": None}):
        chain = pipeline.prepare_chain(2, num_inference_steps=3, **kwargs)
        assert all(step.guidance is None for step in run_to_end(pipeline, chain))


@pytest.mark.parametrize("noise_at_last_step", [False, True])
def test_beta_and_beta_tilde_chains_share_x_T_and_z_and_differ_only_in_sigma(pipeline, noise_at_last_step):
    beta, beta_tilde = pipeline.prepare_variance_pair(
        2, [3, 7], guidance_scale=2.0, num_inference_steps=5, generator=torch.manual_seed(4),
        noise_at_last_step=noise_at_last_step,
    )  # fmt: skip
    assert torch.equal(beta.sample, beta_tilde.sample)  # the same x_T
    assert beta.scheduler.config.variance_type == "fixed_large"
    assert beta_tilde.scheduler.config.variance_type == "fixed_small"
    steps = list(zip(run_to_end(pipeline, beta), run_to_end(pipeline, beta_tilde), strict=True))
    assert len(steps) == 5
    for k, (a, b) in enumerate(steps):
        t, prev_t = a.timestep, a.prev_timestep
        last = prev_t < 0
        # each chain's sigma_t is its own variance choice (0 on the last step unless noise_at_last_step)
        sigma_beta = float(pipeline.scheduler.fixed_variance(t, "beta", prev_t)) ** 0.5
        sigma_beta_tilde = float(pipeline.scheduler.fixed_variance(t, "beta_tilde", prev_t)) ** 0.5
        if last and not noise_at_last_step:
            sigma_beta = sigma_beta_tilde = 0.0
        assert float(a.std.max()) == pytest.approx(sigma_beta, rel=1e-5, abs=1e-9), k
        assert float(b.std.max()) == pytest.approx(sigma_beta_tilde, rel=1e-5, abs=1e-9), k
        if float(a.std.max()) > 0 and float(b.std.max()) > 1e-6:  # the same z in both: (x_{t-1} - mean) / sigma
            z_a, z_b = (a.prev_sample - a.mean) / a.std, (b.prev_sample - b.mean) / b.std
            torch.testing.assert_close(z_a, z_b, rtol=1e-4, atol=1e-4)
        if k == 0:  # the same x_T, so the same first prediction and mean: only sigma_t differs
            torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
            assert not torch.equal(a.prev_sample, b.prev_sample)
    if noise_at_last_step:  # the beta chain's last step adds sigma z; beta-tilde of the step to x_0 is 0
        last_beta, last_tilde = steps[-1]
        assert float(last_beta.std.max()) > 0.009 and float(last_tilde.std.max()) < 1e-6  # sqrt(beta_0) = 0.01


def test_variance_pair_needs_the_ddpm_scheduler(pipeline):
    ddim = copy.deepcopy(pipeline)
    ddim.scheduler = DDIMHubScheduler.from_config(pipeline.scheduler.config)
    with pytest.raises(ValueError, match="needs a DDPMHubScheduler.*DDIMHubScheduler"):
        ddim.prepare_variance_pair(1, 3, num_inference_steps=3)
