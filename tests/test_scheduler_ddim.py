"""Tests of `DDIMHubScheduler`: parity with `diffusers.DDIMScheduler`, the DDIM paper's claims (eta = 1 is DDPM's
ancestral step with sigma^2 = beta_tilde, eta = 0 is deterministic), the step's fields against float64 formulas,
configs, and validation.

The helpers shared with the DDPM tests (the pairwise grid, the float32 conditioning of a step) are imported from
`test_scheduler_ddpm`, which pytest puts on the path (tests/ has no __init__.py, as for `olah_hub` in conftest).
"""

import ast
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from test_scheduler_ddpm import ATOL, F64_ATOL, TRAINED_BETAS, float64_twin, pairwise_cases, schedule_perturbation

from ddpm_hub.schedulers import DDIMHubScheduler, DDPMHubScheduler, DDPMHubSchedulerOutput


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is much faster on a loaded 2-core machine (see test_scheduler_ddpm)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


T = 100
SHAPE = (2, 3, 4, 4)

# name -> (extra config, num_inference_steps). diffusers' DDIM goes from t to t - T // num_inference_steps, not to
# the next entry of `timesteps`: the two agree only when the spacing is even (see `test_previous_timestep_...`).
SPACINGS = {
    "leading": ({"timestep_spacing": "leading"}, 10),
    "leading_offset1": ({"timestep_spacing": "leading", "steps_offset": 1}, 10),
    "leading_all_steps": ({"timestep_spacing": "leading"}, T),
    "trailing": ({"timestep_spacing": "trailing"}, 10),
}

FACTORS = {
    "beta_schedule": ["linear", "scaled_linear", "squaredcos_cap_v2", "trained_betas"],  # diffusers' DDIM: no sigmoid
    "spacing": list(SPACINGS),
    "prediction_type": ["epsilon", "sample", "v_prediction"],
    "eta": [0.0, 1.0, 0.5],
    "clip_sample": [True, False],
    "thresholding": [False, True],
    "set_alpha_to_one": [True, False],
    "use_clipped_model_output": [False, True],
}
PARITY_CASES = pairwise_cases(FACTORS)
# x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar), unclipped, at the cosine schedule's tail (alpha_bar ~ 2e-7)
AMPLIFIED_CASES = [
    {
        "beta_schedule": "squaredcos_cap_v2",
        "spacing": "trailing",
        "prediction_type": "epsilon",
        "eta": eta,
        "clip_sample": False,
        "thresholding": False,
        "set_alpha_to_one": True,
        "use_clipped_model_output": False,
    }
    for eta in (0.0, 1.0)
]


def make_config(case: dict) -> tuple[dict, int]:
    config = {
        "num_train_timesteps": T,
        "prediction_type": case["prediction_type"],
        "clip_sample": case["clip_sample"],
        "thresholding": case["thresholding"],
        "set_alpha_to_one": case["set_alpha_to_one"],
    }
    if case["thresholding"]:  # with the default sample_max_value=1 dynamic thresholding is plain clipping
        config.update(sample_max_value=2.0, dynamic_thresholding_ratio=0.9)
    if case["beta_schedule"] == "trained_betas":
        config["trained_betas"] = TRAINED_BETAS
    else:
        config["beta_schedule"] = case["beta_schedule"]
    extra, num_inference_steps = SPACINGS[case["spacing"]]
    return {**config, **extra}, num_inference_steps


def compare_ddim_chains(ours, theirs, num_steps: int, tolerance: float, dtype=torch.float32, **step_kwargs) -> float:
    """Both chains with the same model outputs and generator; errors relative to max(1, magnitude) of the step's
    tensors, within `tolerance`, plus for float32 chains the accumulated `schedule_perturbation` (each
    implementation's own float32 arithmetic and schedule: see test_scheduler_ddpm). Returns the largest error.

    On the chain's last step (to x_0) ours adds no noise; diffusers adds sigma_t z there, which is not 0 when
    set_alpha_to_one=False. That step is compared with diffusers' eta = 0 step (sigma_t = 0)."""
    generator = torch.Generator().manual_seed(0)
    outputs = [torch.randn(SHAPE, generator=generator).to(dtype) for _ in range(num_steps)]
    sample = torch.randn(SHAPE, generator=generator).to(dtype)
    ours_sample, theirs_sample = sample.clone(), sample.clone()
    ours_generator, theirs_generator = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    budget = worst = 0.0
    for t, out in zip(ours.timesteps, outputs, strict=True):
        prev_t = ours.previous_timestep(int(t))
        ours_step = ours.step(out, t, ours_sample, generator=ours_generator, **step_kwargs)
        theirs_step = theirs.step(out, t, theirs_sample, generator=theirs_generator, **step_kwargs)
        assert isinstance(ours_step, DDPMHubSchedulerOutput)
        assert ours_step.prev_sample.dtype == dtype
        expected_prev = theirs_step.prev_sample
        if prev_t < 0:
            assert ours_step.std.abs().max() == 0 and ours_step.prev_sample.equal(ours_step.mean)
            expected_prev = theirs.step(out, t, theirs_sample, **{**step_kwargs, "eta": 0.0}).prev_sample
        magnitude = max(
            1.0,
            theirs_sample.abs().max().item(),
            theirs_step.pred_original_sample.abs().max().item(),
            theirs_step.prev_sample.abs().max().item(),
        )
        if dtype == torch.float32:
            budget += schedule_perturbation(ours, theirs, int(t), prev_t)
        for field, got, expected in [
            ("pred_original_sample", ours_step.pred_original_sample, theirs_step.pred_original_sample),
            ("prev_sample", ours_step.prev_sample, expected_prev),
        ]:
            assert torch.isfinite(got).all() and torch.isfinite(expected).all()
            error = (got - expected).abs().max().item() / magnitude
            assert error <= tolerance + budget, f"t={int(t)}: {field} differs by {error:.2e} relative"
            worst = max(worst, error)
        ours_sample, theirs_sample = ours_step.prev_sample, theirs_step.prev_sample
    assert torch.equal(torch.randn(3, generator=ours_generator), torch.randn(3, generator=theirs_generator))
    assert budget < 5e-2
    return worst


def test_parity_grid_covers_every_value():
    for name, values in FACTORS.items():
        assert {case[name] for case in PARITY_CASES} == set(values)


@pytest.mark.parametrize("case", PARITY_CASES + AMPLIFIED_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_parity_with_diffusers_ddim(case):
    config, num_steps = make_config(case)
    ours, theirs = DDIMHubScheduler(**config), DDIMScheduler(**config)
    ours.set_timesteps(num_steps)
    theirs.set_timesteps(num_steps)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    assert theirs.final_alpha_cumprod.item() == ours.alphas_cumprod_padded[0].item()  # alpha_bar after the last step

    step_kwargs = {"eta": case["eta"], "use_clipped_model_output": case["use_clipped_model_output"]}
    # (1) in float64, diffusers on our float64 schedule: only the step formulas differ
    shared = float64_twin(ours, DDIMScheduler, config, {"num_inference_steps": num_steps})
    compare_ddim_chains(ours, shared, num_steps, F64_ATOL, dtype=torch.float64, **step_kwargs)
    # (2) in float32, each with its own schedule
    compare_ddim_chains(ours, theirs, num_steps, ATOL, **step_kwargs)


def test_previous_timestep_follows_the_timesteps_where_diffusers_does_not():
    """diffusers' DDIM steps from t to t - T // num_inference_steps; with uneven spacing (100 / 7 trailing, or
    linspace) that is not the next timestep, so its chain visits alpha_bar values it never gave the model. Ours goes
    to the next entry of `timesteps`, like diffusers' DDPMScheduler."""
    ours = DDIMHubScheduler(num_train_timesteps=T, timestep_spacing="trailing")
    ours.set_timesteps(7)
    timesteps = ours.timesteps.tolist()
    assert timesteps == [99, 85, 70, 56, 42, 28, 13]
    assert [ours.previous_timestep(t) for t in timesteps] == timesteps[1:] + [-1]
    theirs_previous = [t - T // 7 for t in timesteps]  # diffusers.DDIMScheduler.step's prev_timestep
    assert theirs_previous[1] == 71 and 71 not in timesteps


# ----------------------------------------------------------------------------------------------------------------
# The DDIM paper's claims
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_eta_one_is_ddpm_with_posterior_variance(prediction_type, spacing):
    """Song et al. 2021, Eq. 16: with sigma_t = sqrt(beta_tilde_t) (eta = 1) the DDIM step is DDPM's ancestral step
    with sigma_t^2 = beta_tilde_t: sqrt(alpha_bar_prev) x_0 + sqrt(1 - alpha_bar_prev - beta_tilde) eps equals
    mu_tilde(x_0, x_t) once x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, i.e. without clipping."""
    config = {"num_train_timesteps": T, "prediction_type": prediction_type, "clip_sample": False}
    ddim = DDIMHubScheduler(timestep_spacing=spacing, **config)
    ddpm = DDPMHubScheduler(timestep_spacing=spacing, variance_type="fixed_small", **config)
    ddim.set_timesteps(10)
    ddpm.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    ddim_sample = ddpm_sample = torch.randn(SHAPE, generator=generator)
    for t in ddim.timesteps:
        out, z = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
        ddim_step = ddim.step(out, t, ddim_sample, eta=1.0, variance_noise=z)
        ddpm_step = ddpm.step(out, t, ddpm_sample, variance_noise=z)
        torch.testing.assert_close(ddim_step.pred_original_sample, ddpm_step.pred_original_sample)
        torch.testing.assert_close(ddim_step.mean, ddpm_step.mean, atol=1e-5, rtol=1e-5)
        # trailing's last step goes to alpha_bar = 1 from t = 9: beta_tilde = 0, which DDPM clamps to 1e-20
        torch.testing.assert_close(ddim_step.std.reshape(()), ddpm_step.std.reshape(()), atol=1e-9, rtol=1e-5)
        torch.testing.assert_close(ddim_step.prev_sample, ddpm_step.prev_sample, atol=1e-5, rtol=1e-5)
        ddim_sample, ddpm_sample = ddim_step.prev_sample, ddpm_step.prev_sample


def test_eta_zero_is_deterministic():
    scheduler = DDIMHubScheduler(num_train_timesteps=T, clip_sample=False)
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    outputs = [torch.randn(SHAPE, generator=generator) for _ in range(10)]
    start = torch.randn(SHAPE, generator=generator)
    results = []
    for seed in (1, 2):
        sample, generator = start, torch.Generator().manual_seed(seed)
        for t, out in zip(scheduler.timesteps, outputs, strict=True):
            step = scheduler.step(out, t, sample, eta=0.0, generator=generator)
            assert step.std.abs().max() == 0
            assert step.prev_sample.equal(step.mean)
            sample = step.prev_sample
        results.append(sample)
    assert results[0].equal(results[1])
    # while eta = 1 draws from the generator
    first = scheduler.step(outputs[0], 90, start, eta=1.0, generator=torch.Generator().manual_seed(1)).prev_sample
    second = scheduler.step(outputs[0], 90, start, eta=1.0, generator=torch.Generator().manual_seed(2)).prev_sample
    assert not first.equal(second)


# ----------------------------------------------------------------------------------------------------------------
# The step's fields against float64 formulas
# ----------------------------------------------------------------------------------------------------------------

T_TEACH = 1000
ALPHA_BAR = np.cumprod(1 - np.linspace(1e-4, 0.02, T_TEACH))  # float64


@pytest.mark.parametrize("set_alpha_to_one", [True, False])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_step_fields(eta, set_alpha_to_one):
    scheduler = DDIMHubScheduler(num_train_timesteps=T_TEACH, clip_sample=False, set_alpha_to_one=set_alpha_to_one)
    scheduler.set_timesteps(10)  # leading: 900, 800, ..., 0
    final_alpha_bar = 1.0 if set_alpha_to_one else ALPHA_BAR[0]
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(SHAPE, generator=generator)
    for t in scheduler.timesteps.tolist():
        eps, z = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
        out = scheduler.step(eps, t, sample, eta=eta, variance_noise=z)

        prev_t = t - 100
        alpha_bar_t = ALPHA_BAR[t]
        alpha_bar_prev = ALPHA_BAR[prev_t] if prev_t >= 0 else final_alpha_bar
        x_0 = (sample.double() - math.sqrt(1 - alpha_bar_t) * eps.double()) / math.sqrt(alpha_bar_t)
        beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)  # Eq. 16
        std = eta * math.sqrt(beta_tilde)
        mean = math.sqrt(alpha_bar_prev) * x_0 + math.sqrt(1 - alpha_bar_prev - std**2) * eps.double()  # Eq. 12

        # the float32 schedule's rounding, divided by the differences the step is built from (test_scheduler_ddpm)
        rtol = 4 * schedule_perturbation(scheduler, scheduler, t, scheduler.previous_timestep(t))
        magnitude = max(1.0, x_0.abs().max().item())
        torch.testing.assert_close(out.pred_original_sample.double(), x_0, atol=rtol * magnitude, rtol=0)
        assert out.pred_epsilon.equal(eps)
        torch.testing.assert_close(out.mean.double(), mean, atol=rtol * magnitude, rtol=0)
        assert out.std.shape == (1, 1, 1, 1)
        assert out.std.item() == pytest.approx(std, rel=rtol, abs=1e-12)
        assert out.prev_sample.equal(out.mean + out.std * z if eta > 0 else out.mean)
        sample = out.prev_sample
    # the last step lands on sqrt(alpha_bar_after_last) x_0 + sqrt(1 - alpha_bar_after_last - sigma^2) eps: x_0 itself
    # when set_alpha_to_one, else a sample that still carries alpha_bar_0's noise (diffusers' convention)
    if set_alpha_to_one:
        torch.testing.assert_close(out.prev_sample, out.pred_original_sample, atol=0, rtol=0)
    else:
        assert not out.prev_sample.equal(out.pred_original_sample)


def test_use_clipped_model_output_recomputes_eps():
    scheduler = DDIMHubScheduler(num_train_timesteps=T, clip_sample=True)
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    sample, eps = torch.randn(SHAPE, generator=generator) * 3, torch.randn(SHAPE, generator=generator)
    plain = scheduler.step(eps, 50, sample)
    corrected = scheduler.step(eps, 50, sample, use_clipped_model_output=True)
    assert plain.pred_original_sample.abs().max() <= 1
    assert plain.pred_epsilon.equal(eps)
    # eps consistent with the clipped x_0: x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps holds again
    alpha_bar = scheduler.alphas_cumprod[50]
    reconstructed = alpha_bar.sqrt() * corrected.pred_original_sample + (1 - alpha_bar).sqrt() * corrected.pred_epsilon
    torch.testing.assert_close(reconstructed, sample, atol=1e-5, rtol=1e-5)
    assert not corrected.prev_sample.equal(plain.prev_sample)


@pytest.mark.parametrize("thresholding", [False, True])
def test_step_in_float64(thresholding):
    scheduler = DDIMHubScheduler(
        num_train_timesteps=T, clip_sample=False, thresholding=thresholding, sample_max_value=2.0
    )
    scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    for t in scheduler.timesteps:
        eps = 3 * torch.randn(SHAPE, generator=generator, dtype=torch.float64)
        out = scheduler.step(eps, t, sample, eta=1.0, generator=generator)
        for field in ("prev_sample", "pred_original_sample", "pred_epsilon", "mean", "std"):
            assert getattr(out, field).dtype == torch.float64, field
        # x_0 in float64 from the float64 definition of the schedule, thresholding included
        alpha_bar = torch.from_numpy(np.cumprod(1 - np.linspace(1e-4, 0.02, T)))[int(t)]
        x_0 = (sample - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
        if thresholding:
            s = torch.quantile(x_0.reshape(SHAPE[0], -1).abs(), 0.995, dim=1).clamp(1, 2).reshape(-1, 1, 1, 1)
            x_0 = torch.maximum(torch.minimum(x_0, s), -s) / s
        torch.testing.assert_close(out.pred_original_sample, x_0, atol=1e-12, rtol=1e-12)
        sample = out.prev_sample


# ----------------------------------------------------------------------------------------------------------------
# Configs and validation
# ----------------------------------------------------------------------------------------------------------------


def test_from_ddpm_config():
    """A DDPM config makes a DDIM scheduler with the same schedule. DDIM has no `variance_type` parameter, so it is not
    in a DDIM scheduler's own config; `from_config` keeps it only as a hidden entry, as diffusers does for every
    compatible class (diffusers.DDIMScheduler.from_config(DDPMScheduler().config) does the same), so that converting
    back to DDPM restores it. It changes nothing in DDIM's steps."""
    ddpm = DDPMHubScheduler(
        num_train_timesteps=T,
        beta_schedule="cosine",
        variance_type="learned_range",
        prediction_type="v_prediction",
        timestep_spacing="trailing",
    )
    ddim = DDIMHubScheduler.from_config(ddpm.config)
    assert type(ddim) is DDIMHubScheduler
    assert "variance_type" not in DDIMHubScheduler(num_train_timesteps=T).config
    theirs = DDIMScheduler.from_config(DDPMScheduler(variance_type="learned_range").config)
    assert ("variance_type" in ddim.config) == ("variance_type" in theirs.config)  # diffusers' hidden entries
    assert DDPMHubScheduler.from_config(ddim.config).config.variance_type == "learned_range"
    assert ddim.config.set_alpha_to_one is True  # DDIM's default: the key is not in a DDPM config
    for key in ("num_train_timesteps", "beta_schedule", "prediction_type", "timestep_spacing", "clip_sample"):
        assert ddim.config[key] == ddpm.config[key], key
    assert torch.equal(ddim.alphas_cumprod, ddpm.alphas_cumprod)

    direct = DDIMHubScheduler(
        num_train_timesteps=T, beta_schedule="cosine", prediction_type="v_prediction", timestep_spacing="trailing"
    )
    for scheduler in (ddim, direct, ddpm):
        scheduler.set_timesteps(10)
    assert torch.equal(ddim.timesteps, ddpm.timesteps)
    sample, output = torch.randn(SHAPE), torch.randn(SHAPE)
    assert ddim.step(output, 99, sample, eta=0.0).prev_sample.equal(
        direct.step(output, 99, sample, eta=0.0).prev_sample
    )


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_diffusers_ddim_loads_our_config(beta_schedule):
    ours = DDIMHubScheduler(num_train_timesteps=T, beta_schedule=beta_schedule, set_alpha_to_one=False, steps_offset=1)
    theirs = DDIMScheduler.from_config(ours.config)
    for key, value in dict(theirs.config).items():
        if not key.startswith("_"):
            assert value == ours.config[key], key
    rtol = 2e-5 if beta_schedule == "squaredcos_cap_v2" else 1e-6  # see test_cosine_schedule_is_closer_to_float64...
    torch.testing.assert_close(theirs.alphas_cumprod, ours.alphas_cumprod, rtol=rtol, atol=0)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    assert torch.equal(ours.timesteps, theirs.timesteps)


def test_sigmoid_schedule_is_supported():
    """diffusers' DDIMScheduler has no sigmoid schedule; ours has GeoDiff's, the same as diffusers' DDPMScheduler's:
    beta = sigmoid(linspace(-6, 6, T)) (beta_end - beta_start) + beta_start, checked against that formula in float64
    and against diffusers' DDPMScheduler (an implementation that shares no code with ours)."""
    with pytest.raises(NotImplementedError):
        DDIMScheduler(num_train_timesteps=T, beta_schedule="sigmoid")
    ddim = DDIMHubScheduler(num_train_timesteps=T, beta_schedule="sigmoid", beta_start=0.001, beta_end=0.05)
    betas = 1 / (1 + np.exp(-np.linspace(-6, 6, T))) * (0.05 - 0.001) + 0.001
    torch.testing.assert_close(ddim.betas_float64, torch.from_numpy(betas), atol=0, rtol=1e-15)
    torch.testing.assert_close(
        ddim.alphas_cumprod_padded_float64[1:], torch.from_numpy(np.cumprod(1 - betas)), atol=0, rtol=1e-15
    )
    theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule="sigmoid", beta_start=0.001, beta_end=0.05)
    torch.testing.assert_close(ddim.betas, theirs.betas, atol=0, rtol=1e-6)
    torch.testing.assert_close(ddim.alphas_cumprod, theirs.alphas_cumprod, atol=0, rtol=1e-5)


def test_invalid_step_arguments_are_rejected():
    scheduler = DDIMHubScheduler(num_train_timesteps=T)
    scheduler.set_timesteps(10)
    sample = torch.randn(SHAPE)
    with pytest.raises(ValueError, match="either `generator` or `variance_noise`"):
        scheduler.step(sample, 90, sample, eta=1.0, generator=torch.Generator(), variance_noise=sample)
    with pytest.raises(ValueError, match=r"`variance_noise`.*sample's shape"):
        scheduler.step(sample, 90, sample, eta=1.0, variance_noise=sample[:1])
    with pytest.raises(ValueError, match=r"`timestep`=100.*integers in \[0, 100\)"):
        scheduler.step(sample, 100, sample)


@pytest.mark.parametrize("eta", [-0.1, 1.5, 2.0, float("nan"), float("inf")])
def test_eta_outside_zero_one_is_rejected(eta):
    """eta > 1 makes 1 - alpha_bar_prev - sigma_t^2 negative: diffusers returns NaN images (1.5 and 2 gave 100% NaN
    pixels here before); ours refuses, naming `eta` and [0, 1]."""
    scheduler = DDIMHubScheduler(num_train_timesteps=T)
    scheduler.set_timesteps(10)
    sample = torch.randn(SHAPE)
    if eta in (1.5, 2.0):  # diffusers' chain ends all-NaN
        theirs, x = DDIMScheduler(num_train_timesteps=T), sample
        theirs.set_timesteps(10)
        for t in theirs.timesteps:
            x = theirs.step(sample, t, x, eta=eta).prev_sample
        assert torch.isnan(x).all()
    with pytest.raises(ValueError, match=r"Invalid `eta`=.*allowed values are numbers in \[0, 1\]"):
        scheduler.step(sample, 90, sample, eta=eta)
    for ok in (0.0, 0.5, 1.0):
        assert torch.isfinite(scheduler.step(sample, 90, sample, eta=ok).prev_sample).all()


# ----------------------------------------------------------------------------------------------------------------
# Corners: zero terminal SNR, the chain's last step
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_zero_terminal_snr_chain_is_finite(eta, prediction_type):
    """With `rescale_betas_zero_snr` a chain from t = T - 1 is finite for every eta: before, beta_{T-1} < 0 made
    beta_tilde negative and sigma_t = eta sqrt(beta_tilde) NaN for eta > 0."""
    scheduler = DDIMHubScheduler(rescale_betas_zero_snr=True, prediction_type=prediction_type)
    scheduler.set_timesteps(timesteps=[999, 998, 997, 500, 0])
    assert (scheduler.alphas_cumprod.diff() < 0).all() and ((scheduler.betas > 0) & (scheduler.betas <= 1)).all()
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(SHAPE, generator=generator)
    for t in scheduler.timesteps:
        step = scheduler.step(torch.randn(SHAPE, generator=generator), t, sample, eta=eta, generator=generator)
        for field in ("prev_sample", "pred_original_sample", "pred_epsilon", "mean", "std"):
            assert torch.isfinite(getattr(step, field)).all(), (int(t), field)
        sample = step.prev_sample


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_no_noise_on_the_last_step_whatever_its_t(eta):
    """The last step (to x_0) adds no noise. With set_alpha_to_one=False and trailing spacing it goes from t = 9 to
    alpha_bar_0, where beta_tilde > 0: diffusers adds eta sqrt(beta_tilde) z there; ours returns the eta = 0 step."""
    scheduler = DDIMHubScheduler(num_train_timesteps=T, timestep_spacing="trailing", set_alpha_to_one=False)
    scheduler.set_timesteps(10)
    last = int(scheduler.timesteps[-1])
    assert last == 9 and scheduler.previous_timestep(last) == -1
    assert scheduler._get_variance(last, -1) > 0  # so the rule, not the schedule, is what removes the noise
    generator = torch.Generator().manual_seed(0)
    sample, out, z = (torch.randn(SHAPE, generator=generator) for _ in range(3))
    step = scheduler.step(out, last, sample, eta=eta, variance_noise=z)
    assert step.std.abs().max() == 0 and step.prev_sample.equal(step.mean)
    assert step.prev_sample.equal(scheduler.step(out, last, sample, eta=0.0).prev_sample)
    before = int(scheduler.timesteps[-2])
    assert scheduler.step(out, before, sample, eta=eta, variance_noise=z).std.abs().max() > 0


# ----------------------------------------------------------------------------------------------------------------
# What diffusers' own DDIMScheduler tests check (tests/schedulers/test_scheduler_ddim.py, SchedulerCommonTest)
# ----------------------------------------------------------------------------------------------------------------


def test_step_from_any_timestep():
    """diffusers' DDIM steps from any t, also one that is not in `timesteps` (its tests step from t = 0, 1, 10 and
    49 with 50 leading steps [980, ..., 20, 0] and steps_offset=1). Ours goes from such a t to the next inference
    timestep below it (-1 below the last), so the chain continues on the timesteps the model is asked at; the step is
    Eq. 12 with that prev_t, computed here in float64."""
    scheduler = DDIMHubScheduler(clip_sample=False)
    scheduler.set_timesteps(50)
    assert scheduler.timesteps[-3:].tolist() == [40, 20, 0]
    assert [scheduler.previous_timestep(t) for t in (49, 40, 21, 20, 1, 0)] == [40, 20, 20, 0, 0, -1]
    assert scheduler.previous_timestep(torch.tensor(49)).item() == 40
    alpha_bar = np.append(1.0, np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))  # entry t + 1 is alpha_bar_t
    generator = torch.Generator().manual_seed(0)
    sample, eps = torch.randn(2, *SHAPE, generator=generator, dtype=torch.float64)
    for t in (49, 10, 1):
        prev_t = scheduler.previous_timestep(t)
        x_0 = (sample - math.sqrt(1 - alpha_bar[t + 1]) * eps) / math.sqrt(alpha_bar[t + 1])
        expected = math.sqrt(alpha_bar[prev_t + 1]) * x_0 + math.sqrt(1 - alpha_bar[prev_t + 1]) * eps
        torch.testing.assert_close(scheduler.step(eps, t, sample).prev_sample, expected, atol=1e-12, rtol=1e-12)
    # and with steps_offset=1 (timesteps [..., 21, 1]) from t = 0, below the last timestep: straight to x_0
    offset = DDIMHubScheduler(steps_offset=1)
    offset.set_timesteps(5)
    assert offset.timesteps.tolist() == [801, 601, 401, 201, 1]
    assert offset.previous_timestep(0) == -1
    assert torch.isfinite(offset.step(eps.float(), 0, sample.float(), eta=1.0).prev_sample).all()


def test_get_variance_is_diffusers_get_variance():
    """`_get_variance(timestep, prev_timestep)`, which CycleDiffusion and LEDITS++ call on a DDIM scheduler:
    beta_tilde of the step, alpha_bar after the last step for any prev_timestep < 0. diffusers' test values: 0 at
    (0, 0), 0.14771 at (420, 400), 0.32460 at (980, 960), 0.00979 at (487, 486), 0.02 at (999, 998)."""
    for set_alpha_to_one in (True, False):
        ours = DDIMHubScheduler(set_alpha_to_one=set_alpha_to_one)
        theirs = DDIMScheduler(set_alpha_to_one=set_alpha_to_one)
        for t, prev_t in [(0, 0), (420, 400), (980, 960), (487, 486), (999, 998), (1, 0), (20, -1), (5, -15)]:
            got, expected = ours._get_variance(t, prev_t), theirs._get_variance(t, prev_t)
            assert got.shape == expected.shape == ()
            # diffusers' float32 arithmetic: each difference d of numbers near 1 (1 - alpha_bar_t, 1 - alpha_bar_prev,
            # beta = 1 - alpha_bar_t / alpha_bar_prev) loses 2^-24 / d relative (see test_scheduler_ddpm's COND)
            padded = ours.alphas_cumprod_padded_float64
            alpha_bar_t, alpha_bar_prev = padded[t + 1].item(), padded[max(prev_t, -1) + 1].item()
            differences = [1 - alpha_bar_t, 1 - alpha_bar_prev, 1 - alpha_bar_t / alpha_bar_prev]
            rtol = 4 * 2**-24 * sum(1 / max(d, 1e-12) for d in differences)
            torch.testing.assert_close(got, expected, atol=1e-12, rtol=rtol)
    scheduler = DDIMHubScheduler()
    for (t, prev_t), value in {(0, 0): 0.0, (420, 400): 0.14771, (980, 960): 0.32460, (487, 486): 0.00979}.items():
        assert abs(scheduler._get_variance(t, prev_t).item() - value) < 1e-5


def diffusers_function(module: str, name: str):
    """A top-level function of an installed diffusers module, compiled from its source without importing the module
    (the pipelines import transformers, which this project does not install)."""
    path = Path(importlib.util.find_spec("diffusers").submodule_search_locations[0], *module.split(".")).with_suffix(
        ".py"
    )
    tree = ast.parse(path.read_text())
    nodes = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
    assert nodes, f"diffusers.{module} has no function {name} any more"
    from diffusers.utils.torch_utils import randn_tensor

    namespace = {"torch": torch, "randn_tensor": randn_tensor}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("set_alpha_to_one", [True, False])
def test_cycle_diffusion_and_ledits_helpers_run_on_ours(set_alpha_to_one):
    """The DDIM helpers of diffusers' CycleDiffusion (`posterior_sample`, `compute_noise`) and LEDITS++
    (`compute_noise_ddim`) read `alphas_cumprod`, `final_alpha_cumprod` and `_get_variance(t, prev_t)` of the
    scheduler they are given: on ours they give what they give on diffusers' DDIMScheduler."""
    posterior_sample = diffusers_function(
        "pipelines.deprecated.stable_diffusion_variants.pipeline_cycle_diffusion", "posterior_sample"
    )
    compute_noise = diffusers_function(
        "pipelines.deprecated.stable_diffusion_variants.pipeline_cycle_diffusion", "compute_noise"
    )
    compute_noise_ddim = diffusers_function(
        "pipelines.ledits_pp.pipeline_leditspp_stable_diffusion", "compute_noise_ddim"
    )
    ours, theirs = (
        DDIMHubScheduler(set_alpha_to_one=set_alpha_to_one),
        DDIMScheduler(set_alpha_to_one=set_alpha_to_one),
    )
    for scheduler in (ours, theirs):
        scheduler.set_timesteps(10)
    generator = torch.Generator().manual_seed(0)
    latents, clean, prev_latents, noise_pred = (torch.randn(SHAPE, generator=generator) for _ in range(4))
    for t in (900, 400, 100):  # from t = 0 (prev_t < 0, sigma_t = 0) `compute_noise` divides by 0 in both
        results = []
        for scheduler in (ours, theirs):
            sample = posterior_sample(scheduler, latents, t, clean, torch.Generator().manual_seed(1), 0.7)
            noise, mu = compute_noise_ddim(scheduler, prev_latents, latents, t, noise_pred, 0.7)
            results.append([sample, compute_noise(scheduler, prev_latents, latents, t, noise_pred, 0.7), noise, mu])
        for got, expected in zip(*results, strict=True):
            assert torch.isfinite(got).all()
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
