"""Tests of `DDPMHubScheduler`.

1. Parity with `diffusers.DDPMScheduler` over a pairwise-covering grid of its config.
2. The places where diffusers is wrong and we are not (`fixed_large_log`, a negative `learned` sigma^2, a wrong
   channel count), and `learned_log`.
3. Config interchangeability with diffusers and the save/load round trip.
4. Validation: every invalid value raises a ValueError naming the key and the allowed values.
5. Every teaching formula against the formula written out here, in float64 numpy from the betas.
6. The statistics of the forward process: t steps of `q_step`, and `add_noise`, have the closed form's moments.
7. dtypes, devices, per-sample timesteps.
8. Corners: zero terminal SNR, the chain's last step, `variance_noise`.
9. What diffusers' own DDPMScheduler tests check (`previous_timestep` types, `_get_variance`).
"""

import itertools
import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from ddpm_hub.schedulers import DDIMHubScheduler, DDPMHubScheduler, DDPMHubSchedulerOutput


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Every tensor here is tiny: one intra-op thread is faster, and on a loaded machine with 2 cores it is ~100x
    faster (each elementwise op otherwise waits on the other, busy, core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


T = 100  # num_train_timesteps of the parity grid: small, so that 100-step chains stay cheap
SHAPE = (2, 3, 4, 4)  # (B, C, H, W) of the parity chains
FIELDS = ("prev_sample", "pred_original_sample", "pred_epsilon", "mean", "std")  # DDPMHubSchedulerOutput, in order

# ----------------------------------------------------------------------------------------------------------------
# 1. Parity with diffusers.DDPMScheduler
# ----------------------------------------------------------------------------------------------------------------

TRAINED_BETAS = np.geomspace(1e-4, 0.05, T).tolist()

# name -> (extra config, set_timesteps kwargs)
SPACINGS = {
    "leading": ({"timestep_spacing": "leading"}, {"num_inference_steps": 10}),
    "leading_offset1": ({"timestep_spacing": "leading", "steps_offset": 1}, {"num_inference_steps": 10}),
    "leading_all_steps": ({"timestep_spacing": "leading"}, {"num_inference_steps": T}),
    "trailing": ({"timestep_spacing": "trailing"}, {"num_inference_steps": 7}),  # 100 / 7: uneven strides
    "linspace": ({"timestep_spacing": "linspace"}, {"num_inference_steps": 12}),
    "custom": ({}, {"timesteps": [99, 80, 61, 40, 25, 12, 5, 1, 0]}),
}

FACTORS = {
    "beta_schedule": ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "trained_betas"],
    "spacing": list(SPACINGS),
    "variance_type": ["fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range"],
    "prediction_type": ["epsilon", "sample", "v_prediction"],
    "clip_sample": [True, False],
    "thresholding": [False, True],
}


def pairwise_cases(factors: dict[str, list]) -> list[dict]:
    """A covering array of strength 2 (greedy): every value of every two factors appears together in some case."""
    names = list(factors)
    candidates = [dict(zip(names, values, strict=True)) for values in itertools.product(*factors.values())]
    pairs = [frozenset((a, c[a], b, c[b]) for a, b in itertools.combinations(names, 2)) for c in candidates]
    uncovered = set().union(*pairs)
    cases = []
    while uncovered:
        best = max(range(len(candidates)), key=lambda i: len(pairs[i] & uncovered))
        cases.append(candidates[best])
        uncovered -= pairs[best]
    return cases


PARITY_CASES = pairwise_cases(FACTORS)


def test_parity_grid_covers_every_pair():
    covered = {(a, c[a], b, c[b]) for c in PARITY_CASES for a, b in itertools.combinations(FACTORS, 2)}
    for a, b in itertools.combinations(FACTORS, 2):
        for va, vb in itertools.product(FACTORS[a], FACTORS[b]):
            assert (a, va, b, vb) in covered
    assert len(PARITY_CASES) < 50  # far fewer than the 1440 of the full product


def make_config(case: dict) -> tuple[dict, dict]:
    config = {
        "num_train_timesteps": T,
        "variance_type": case["variance_type"],
        "prediction_type": case["prediction_type"],
        "clip_sample": case["clip_sample"],
        "thresholding": case["thresholding"],
    }
    if case["thresholding"]:  # with the default sample_max_value=1 dynamic thresholding is plain clipping
        config.update(sample_max_value=2.0, dynamic_thresholding_ratio=0.9)
    if case["beta_schedule"] == "trained_betas":
        config["trained_betas"] = TRAINED_BETAS
    else:
        config["beta_schedule"] = case["beta_schedule"]
    extra, timestep_kwargs = SPACINGS[case["spacing"]]
    config.update(extra)
    return config, timestep_kwargs


def model_outputs(n: int, variance_type: str, seed: int = 0) -> list[torch.Tensor]:
    """n seeded stand-ins for the model's output, one per step (prediction channels, then variance channels).

    For `learned_range` the variance channels go through tanh: a real model's v is in [-1, 1] (improved-diffusion
    trains it so). Raw N(0, 1) values outside [-1, 1] extrapolate log sigma^2 beyond [log beta_tilde, log beta];
    where beta_tilde = 0 (trailing spacing's last step, clamped to 1e-20 by both implementations) v = 3 gives
    log sigma^2 = 2 log beta - log 1e-20, i.e. sigma = 1e10 beta: the sample explodes and the exp() turns float32
    differences of the two schedules into differences of any size. That is garbage in both, not a parity question.
    For `learned` (sigma^2 itself) they are exp(2 v - 5), for `learned_log` (log sigma^2) 2 v - 5: sigma^2 around
    beta's magnitude.
    """
    generator = torch.Generator().manual_seed(seed)
    variance = {
        "learned_range": torch.tanh,
        "learned": lambda v: torch.exp(2 * v - 5),
        "learned_log": lambda v: 2 * v - 5,
    }
    outputs = []
    for _ in range(n):
        out = torch.randn(SHAPE, generator=generator)
        if variance_type in variance:
            v = torch.randn(SHAPE, generator=generator)
            out = torch.cat([out, variance[variance_type](v)], dim=1)
        outputs.append(out)
    return outputs


# The cosine schedule without clipping or thresholding, epsilon prediction, from t = 99: the tail has alpha_bar ~ 2e-7
# and x_0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) is ~3000, where the two float32 schedules disagree most
# (see `test_cosine_schedule_is_closer_to_float64_than_diffusers`). The pairwise grid need not contain this corner.
AMPLIFIED_CASES = [
    {
        "beta_schedule": "squaredcos_cap_v2",
        "spacing": spacing,
        "variance_type": variance_type,
        "prediction_type": "epsilon",
        "clip_sample": False,
        "thresholding": False,
    }
    for spacing, variance_type in [
        ("trailing", "fixed_small"),
        ("leading_all_steps", "fixed_large"),
        ("custom", "learned_range"),
    ]
]

ATOL = 1e-5  # parity of two float32 implementations of the same formula, on tensors of magnitude ~1
F32_ROUNDING = 2.0**-24


def schedule_perturbation(ours, theirs, t: int, prev_t: int) -> float:
    """A first-order bound on how much one step's output may change, relative to its magnitude, when the scheduler's
    alpha_bar is replaced by the other implementation's.

    Ours computes in float64 and casts each coefficient once; diffusers stores alpha_bar in float32 (a float32 cumprod
    of float32 betas), so they disagree by delta >= 2^-24 relative, and by up to 1.3e-5 on the cosine schedule's tail.
    A step's coefficients are built from sqrt(alpha_bar_t), 1 - alpha_bar_t, 1 - alpha_bar_prev and
    beta = 1 - alpha_bar_t / alpha_bar_prev; a relative change delta of a changes 1 - a by delta a / (1 - a) relative.
    Near t = 0 these differences are ~1e-4 (beta_0), so float32 rounding alone moves the step by ~1e-3 relative:
    there the two chains cannot agree better (diffusers' float32 step is that far from a float64 computation; ours,
    from float64 coefficients, is not: `test_step_in_float64`). In float64 on a shared schedule they agree to 1e-10.
    """
    ours_bar, theirs_bar = ours.alphas_cumprod_padded_float64[1:], theirs.alphas_cumprod.double()
    indices = [t] if prev_t < 0 else [t, prev_t]
    delta = max(F32_ROUNDING, (ours_bar[indices] / theirs_bar[indices] - 1).abs().max().item())
    alpha_bar_t = ours_bar[t].item()
    alpha_bar_prev = ours_bar[prev_t].item() if prev_t >= 0 else 1.0
    ratio = alpha_bar_t / alpha_bar_prev
    kappa = 1 + alpha_bar_t / (1 - alpha_bar_t) + 2 * ratio / (1 - ratio)
    if prev_t >= 0:  # alpha_bar_{-1} = 1 is exact in both
        kappa += alpha_bar_prev / (1 - alpha_bar_prev)
    return delta * kappa


def theirs_noise_free(theirs_step, z, std) -> torch.Tensor:
    """diffusers' prev_sample without the sigma_t z it adds on a chain's last step when that step's t > 0 (ours adds
    none there: Algorithm 2 returns the mean). z is the draw diffusers made (replayed from a copy of its generator),
    std our sigma_t of that step, which every other step checks against diffusers'."""
    return theirs_step.prev_sample - std * z


def compare_chains(ours, theirs, variance_type: str, tolerance: float, dtype=torch.float32) -> float:
    """Runs both reverse chains with the same model outputs and the same seeded generator; checks every step's
    prev_sample and pred_original_sample and returns the largest error relative to max(1, magnitude).

    The magnitude is that of the step's x_t, x_0 and x_{t-1}: x_0 reaches ~3000 in `AMPLIFIED_CASES`, where float32
    itself is only good to ~2e-4 absolute. The tolerance is `tolerance`, plus, for float32 chains (each
    implementation on its own float32 arithmetic and schedule), the accumulated `schedule_perturbation` of the steps
    so far (errors carry to later steps).

    On the chain's last step (to x_0) diffusers adds sigma_t z whenever that step's t > 0 (trailing spacing); ours
    adds no noise there. That step is compared without diffusers' noise (`theirs_noise_free`).
    """
    outputs = [out.to(dtype) for out in model_outputs(len(ours.timesteps), variance_type)]
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2)).to(dtype)
    ours_sample, theirs_sample = sample.clone(), sample.clone()
    ours_generator, theirs_generator = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    budget = worst = 0.0
    for t, out in zip(ours.timesteps, outputs, strict=True):
        prev_t = ours.previous_timestep(int(t))
        replay = torch.Generator().set_state(theirs_generator.get_state())
        ours_step = ours.step(out, t, ours_sample, generator=ours_generator)
        theirs_step = theirs.step(out, t, theirs_sample, generator=theirs_generator)
        assert isinstance(ours_step, DDPMHubSchedulerOutput)
        assert ours_step.prev_sample.dtype == dtype
        expected_prev = theirs_step.prev_sample
        if prev_t < 0:
            assert ours_step.std.abs().max() == 0 and ours_step.prev_sample.equal(ours_step.mean)
            if int(t) > 0:  # diffusers drew and added sigma_t z here
                z = torch.randn(SHAPE, generator=replay, dtype=dtype)
                predicted = out[:, SHAPE[1] :] if out.shape[1] > SHAPE[1] else None
                std = ours.step_std(int(t), prev_t, predicted, SHAPE).to(dtype)
                expected_prev = theirs_noise_free(theirs_step, z, std)
                torch.randn(SHAPE, generator=ours_generator, dtype=dtype)  # keep the generators in step
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
    # both drew the same number of normals from their generators
    assert torch.equal(torch.randn(3, generator=ours_generator), torch.randn(3, generator=theirs_generator))
    # the bound stays far below what a formula error (O(1) relative) would give; it is largest (~1.4e-2) for the
    # 100-step chains, which visit every small t
    assert budget < 5e-2
    return worst


def float64_twin(ours, cls, config: dict, timestep_kwargs: dict):
    """A diffusers scheduler running on our float64 schedule: with float64 tensors, only the step formulas differ."""
    shared = cls(**config)
    shared.alphas_cumprod = ours.alphas_cumprod_padded_float64[1:].clone()
    if hasattr(shared, "final_alpha_cumprod"):  # DDIM
        shared.final_alpha_cumprod = ours.alphas_cumprod_padded_float64[0].clone()
    else:
        shared.betas = ours.betas_float64.clone()
        shared.alphas = 1 - shared.betas
    shared.set_timesteps(**timestep_kwargs)
    return shared


F64_ATOL = 1e-10  # parity of two float64 implementations of the same formulas (x_0 ~ 3000 in the amplified cases)


@pytest.mark.parametrize("case", PARITY_CASES + AMPLIFIED_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_parity_with_diffusers_ddpm(case):
    config, timestep_kwargs = make_config(case)
    ours, theirs = DDPMHubScheduler(**config), DDPMScheduler(**config)
    ours.set_timesteps(**timestep_kwargs)
    theirs.set_timesteps(**timestep_kwargs)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    assert ours.timesteps.dtype == theirs.timesteps.dtype == torch.int64
    for t in ours.timesteps:
        assert ours.previous_timestep(t).item() == theirs.previous_timestep(t).item()

    # the forward process: add_noise and get_velocity at every training timestep (magnitudes <= ~3: absolute)
    generator = torch.Generator().manual_seed(1)
    x_0 = torch.rand((T, 3, 2, 2), generator=generator) * 2 - 1
    noise = torch.randn((T, 3, 2, 2), generator=generator)
    timesteps = torch.arange(T)
    torch.testing.assert_close(
        ours.add_noise(x_0, noise, timesteps), theirs.add_noise(x_0, noise, timesteps), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(
        ours.get_velocity(x_0, noise, timesteps), theirs.get_velocity(x_0, noise, timesteps), atol=ATOL, rtol=0
    )

    # the reverse chain, (1) in float64, with diffusers on our float64 schedule: only the step formulas differ
    shared = float64_twin(ours, DDPMScheduler, config, timestep_kwargs)
    compare_chains(ours, shared, case["variance_type"], F64_ATOL, dtype=torch.float64)
    # (2) in float32, each with its own schedule: the formulas, the schedules and float32 arithmetic
    compare_chains(ours, theirs, case["variance_type"], ATOL)


def cosine_alpha_bar_float64(steps: int) -> np.ndarray:
    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = np.minimum([1 - f((i + 1) / steps) / f(i / steps) for i in range(steps)], 0.999)
    return np.cumprod(1 - betas)


@pytest.mark.parametrize("steps", [100, 1000])
def test_cosine_schedule_is_closer_to_float64_than_diffusers(steps):
    """We compute the schedule in float64 and store float32; diffusers stores the betas in float32 first, so its
    alpha_t = 1 - beta_t loses ~1e-4 relative where beta_t -> 0.999 (float32's 1e-7 relative on beta_t, divided by
    1 - beta_t = 1e-3), and the cumprod carries that into alpha_bar. This is why the parity grid compares the cosine
    schedule without clipping relative to the magnitude."""
    reference = cosine_alpha_bar_float64(steps)
    ours = DDPMHubScheduler(num_train_timesteps=steps, beta_schedule="squaredcos_cap_v2").alphas_cumprod
    theirs = DDPMScheduler(num_train_timesteps=steps, beta_schedule="squaredcos_cap_v2").alphas_cumprod
    ours_error = np.abs(ours.double().numpy() / reference - 1).max()
    theirs_error = np.abs(theirs.double().numpy() / reference - 1).max()
    assert ours_error < 1e-7  # float32 rounding of the stored values: 2^-24 ~ 6e-8
    assert theirs_error > 5e-6
    assert theirs_error > 50 * ours_error


# ----------------------------------------------------------------------------------------------------------------
# 2. Where diffusers is wrong
# ----------------------------------------------------------------------------------------------------------------


def run_chain(scheduler, outputs, sample, seed=3, **step_kwargs) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for t, out in zip(scheduler.timesteps, outputs, strict=True):
        sample = scheduler.step(out, t, sample, generator=generator, **step_kwargs).prev_sample
        samples.append(sample)
    return samples


def test_fixed_large_log_is_fixed_large_and_diffusers_gives_nan():
    """GLIDE's "max_log" is sigma^2 = beta_t computed through its log. diffusers' `_get_variance` returns log(beta_t)
    for it and `step` then takes `** 0.5` of that negative number: NaN. If this assertion on diffusers starts failing,
    they fixed it, and this test should become a parity test."""
    config = {"num_train_timesteps": T, "clip_sample": False}
    outputs = model_outputs(10, "fixed_large_log")
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))

    theirs = DDPMScheduler(variance_type="fixed_large_log", **config)
    theirs.set_timesteps(10)
    theirs_samples = run_chain(theirs, outputs, sample)
    assert torch.isnan(theirs_samples[0]).all()

    ours = DDPMHubScheduler(variance_type="fixed_large_log", **config)
    ours.set_timesteps(10)
    reference = DDPMHubScheduler(variance_type="fixed_large", **config)
    reference.set_timesteps(10)
    ours_samples = run_chain(ours, outputs, sample)
    for got, expected in zip(ours_samples, run_chain(reference, outputs, sample), strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    # and fixed_large itself is diffusers' fixed_large
    theirs_large = DDPMScheduler(variance_type="fixed_large", **config)
    theirs_large.set_timesteps(10)
    for got, expected in zip(ours_samples, run_chain(theirs_large, outputs, sample), strict=True):
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)


def test_learned_is_diffusers_sigma_squared_and_refuses_negative_values():
    """`learned` means what it means in diffusers: the model's variance channels are sigma_t^2 itself. Where
    diffusers takes the square root of a negative output (NaN), ours refuses it and names `learned_log`."""
    config = {"num_train_timesteps": T, "clip_sample": False, "variance_type": "learned"}
    ours, theirs = DDPMHubScheduler(**config), DDPMScheduler(**config)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    outputs = model_outputs(10, "learned")  # sigma^2 = exp(2 v - 5) > 0
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    for got, expected in zip(run_chain(ours, outputs, sample), run_chain(theirs, outputs, sample), strict=True):
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    out = outputs[0]
    std = ours.step(out, ours.timesteps[0], sample, generator=torch.Generator().manual_seed(0)).std
    torch.testing.assert_close(std, out[:, 3:].sqrt())

    negative = out.clone()
    negative[0, 3, 0, 0] = -1e-3
    assert torch.isnan(theirs.step(negative, 90, sample, generator=torch.Generator().manual_seed(0)).prev_sample).any()
    with pytest.raises(ValueError, match=r"variance_type='learned'.*sigma_t\^2.*negative or NaN.*'learned_log'"):
        ours.step(negative, 90, sample)
    negative[0, 3, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="negative or NaN"):
        ours.step(negative, 90, sample)


def test_learned_log_is_log_sigma_squared():
    """`learned_log` is improved-diffusion's LEARNED: the model outputs log sigma_t^2, so any real output is a valid
    variance. It equals diffusers' `learned` fed exp(v)."""
    ours = DDPMHubScheduler(num_train_timesteps=T, clip_sample=False, variance_type="learned_log")
    theirs = DDPMScheduler(num_train_timesteps=T, clip_sample=False, variance_type="learned")
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    outputs = model_outputs(10, "learned_log")  # log sigma^2 around log(beta) ~ -5: negative values included
    assert any((out[:, 3:] < 0).any() for out in outputs)
    exp_outputs = [torch.cat([out[:, :3], out[:, 3:].exp()], dim=1) for out in outputs]
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    for got, expected in zip(run_chain(ours, outputs, sample), run_chain(theirs, exp_outputs, sample), strict=True):
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    out = outputs[0]
    std = ours.step(out, ours.timesteps[0], sample, generator=torch.Generator().manual_seed(0)).std
    torch.testing.assert_close(std, torch.exp(0.5 * out[:, 3:]))


@pytest.mark.parametrize("variance_type", ["learned", "learned_log", "learned_range"])
def test_learned_variance_needs_twice_the_channels(variance_type):
    ours = DDPMHubScheduler(num_train_timesteps=T, variance_type=variance_type)
    sample = torch.randn(SHAPE)
    with pytest.raises(ValueError, match=r"needs a model output with 2 x 3 channels .* got 3"):
        ours.step(torch.randn(SHAPE), 50, sample)
    with pytest.raises(ValueError, match="got 5"):
        ours.step(torch.randn(2, 5, 4, 4), 50, sample)
    if variance_type != "learned_log":  # diffusers silently takes predicted_variance=None and crashes on arithmetic
        with pytest.raises(TypeError):
            DDPMScheduler(num_train_timesteps=T, variance_type=variance_type).step(torch.randn(SHAPE), 50, sample)


# ----------------------------------------------------------------------------------------------------------------
# 3. Interchangeability of configs
# ----------------------------------------------------------------------------------------------------------------


def public(config) -> dict:
    return {key: value for key, value in dict(config).items() if not key.startswith("_")}


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"])
def test_diffusers_schedulers_load_our_config(beta_schedule):
    ours = DDPMHubScheduler(
        num_train_timesteps=T,
        beta_schedule=beta_schedule,
        prediction_type="v_prediction",
        clip_sample=False,
        timestep_spacing="trailing",
        rescale_betas_zero_snr=False,
    )
    ours.set_timesteps(10)
    classes = [DDPMScheduler] + ([DDIMScheduler] if beta_schedule != "sigmoid" else [])  # diffusers' DDIM: no sigmoid
    for cls in classes:
        theirs = cls.from_config(ours.config)
        assert type(theirs) is cls
        for key, value in public(theirs.config).items():
            if key in ours.config:
                assert value == ours.config[key], key
        # the betas agree to float32 rounding; alpha_bar too, except cosine's tail (diffusers' float32 cumprod)
        torch.testing.assert_close(theirs.betas, ours.betas)
        rtol = 2e-5 if beta_schedule == "squaredcos_cap_v2" else 1e-6
        torch.testing.assert_close(theirs.alphas_cumprod, ours.alphas_cumprod, rtol=rtol, atol=0)
        theirs.set_timesteps(10)
        assert torch.equal(theirs.timesteps, ours.timesteps)


@pytest.mark.parametrize("cls", [DDPMScheduler, DDIMScheduler])
def test_we_load_diffusers_config(cls):
    theirs = cls(
        num_train_timesteps=T,
        beta_schedule="scaled_linear",
        beta_start=0.001,
        beta_end=0.03,
        prediction_type="sample",
        timestep_spacing="linspace",
        clip_sample_range=2.0,
    )
    ours = DDPMHubScheduler.from_config(theirs.config)
    for key, value in public(ours.config).items():
        if key in theirs.config:
            assert theirs.config[key] == value, key
    torch.testing.assert_close(ours.alphas_cumprod, theirs.alphas_cumprod, rtol=1e-6, atol=0)
    ours.set_timesteps(9)
    theirs.set_timesteps(9)
    assert torch.equal(ours.timesteps, theirs.timesteps)


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (DDPMHubScheduler, {"beta_schedule": "cosine", "variance_type": "learned_range", "prediction_type": "sample"}),
        (DDPMHubScheduler, {"trained_betas": TRAINED_BETAS, "timestep_spacing": "trailing", "thresholding": True}),
        (DDIMHubScheduler, {"beta_schedule": "cosine", "set_alpha_to_one": False, "prediction_type": "v_prediction"}),
        (DDIMHubScheduler, {"trained_betas": TRAINED_BETAS, "steps_offset": 3, "clip_sample": False}),
    ],
    ids=["ddpm-cosine", "ddpm-trained_betas", "ddim-cosine", "ddim-trained_betas"],
)
def test_save_and_load_round_trip(tmp_path, cls, config):
    scheduler = cls(num_train_timesteps=T, **config)
    scheduler.save_config(tmp_path)
    loaded = cls.from_pretrained(tmp_path)
    assert type(loaded) is cls
    assert public(loaded.config) == public(scheduler.config)  # `_use_default_values` is not saved
    assert torch.equal(loaded.alphas_cumprod_padded, scheduler.alphas_cumprod_padded)


def test_cosine_is_stored_as_squaredcos_cap_v2():
    ours = DDPMHubScheduler(num_train_timesteps=T, beta_schedule="cosine")
    assert ours.config.beta_schedule == "squaredcos_cap_v2"
    reference = DDPMHubScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    assert torch.equal(ours.alphas_cumprod, reference.alphas_cumprod)
    # diffusers does not know "cosine": it can read our config only because we store the canonical name
    assert DDPMScheduler.from_config(ours.config).config.beta_schedule == "squaredcos_cap_v2"
    with pytest.raises(NotImplementedError):
        DDPMScheduler(num_train_timesteps=T, beta_schedule="cosine")


# ----------------------------------------------------------------------------------------------------------------
# 4. Validation
# ----------------------------------------------------------------------------------------------------------------


INVALID_CONFIGS = [
    ({"beta_schedule": "quadratic"}, ["`beta_schedule`='quadratic'", "linear, scaled_linear", "sigmoid, cosine"]),
    ({"variance_type": "fixed"}, ["`variance_type`='fixed'", "fixed_small, fixed_small_log", "learned_range"]),
    ({"prediction_type": "x0"}, ["`prediction_type`='x0'", "epsilon, sample, v_prediction"]),
    ({"timestep_spacing": "uniform"}, ["`timestep_spacing`='uniform'", "leading, trailing, linspace"]),
    ({"num_train_timesteps": 0}, ["`num_train_timesteps`=0", "integers >= 1"]),
    ({"beta_start": 0.0}, ["`beta_start`=0.0", "0 < beta_start <= beta_end < 1"]),
    ({"beta_start": 0.03, "beta_end": 0.02}, ["`beta_start`=0.03", "`beta_end`=0.02", "beta_start <= beta_end"]),
    ({"beta_end": 1.0}, ["`beta_end`=1.0", "beta_end < 1"]),
    ({"trained_betas": [0.01] * (T - 1)}, ["`trained_betas`", "<99 values>", "100 values (num_train_timesteps)"]),
    ({"trained_betas": [0.0] + [0.01] * (T - 1)}, ["`trained_betas`", "strictly between 0 and 1"]),
    ({"steps_offset": T}, ["`steps_offset`=100", "[0, 100)"]),
    ({"clip_sample_range": 0.0}, ["`clip_sample_range`", "numbers > 0"]),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "fragments"),
    [
        pytest.param(cls, kwargs, fragments, id=f"{cls.__name__}-{kwargs}"[:60])
        for cls in (DDPMHubScheduler, DDIMHubScheduler)
        for kwargs, fragments in INVALID_CONFIGS
        if not (cls is DDIMHubScheduler and "variance_type" in kwargs)  # DDIM has no variance_type
    ],
)
def test_invalid_config_is_rejected(cls, kwargs, fragments):
    kwargs = {"num_train_timesteps": T, **kwargs}
    with pytest.raises(ValueError) as excinfo:
        cls(**kwargs)
    for fragment in fragments:
        assert fragment in str(excinfo.value)


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"num_inference_steps": T + 1}, ["`num_inference_steps`=101", "integers in [1, 100] (num_train_timesteps)"]),
        ({"num_inference_steps": 0}, ["`num_inference_steps`=0", "integers in [1, 100]"]),
        ({"timesteps": [10, 20, 5]}, ["`timesteps`=[10, 20, 5]", "strictly descending"]),
        ({"timesteps": [50, 50, 0]}, ["`timesteps`", "strictly descending"]),
        ({"timesteps": []}, ["`timesteps`=[]", "non-empty"]),
        ({"timesteps": [T, 50, 0]}, ["`timesteps`=[100, 50, 0]", "integers in [0, 100)"]),
        ({"timesteps": [50, 10, -1]}, ["`timesteps`=[50, 10, -1]", "integers in [0, 100)"]),
        ({"num_inference_steps": 10, "timesteps": [50, 0]}, ["exactly one of `num_inference_steps` or `timesteps`"]),
        ({}, ["exactly one of `num_inference_steps` or `timesteps`"]),
    ],
    ids=lambda value: str(value)[:40] if isinstance(value, dict) else None,
)
def test_invalid_set_timesteps_is_rejected(kwargs, fragments):
    scheduler = DDPMHubScheduler(num_train_timesteps=T)
    with pytest.raises(ValueError) as excinfo:
        scheduler.set_timesteps(**kwargs)
    for fragment in fragments:
        assert fragment in str(excinfo.value)


def test_other_invalid_arguments_are_rejected():
    scheduler = DDPMHubScheduler(num_train_timesteps=T, timestep_spacing="leading", steps_offset=5)
    scheduler.set_timesteps(1)  # leading: [0] + 5 is fine ...
    with pytest.raises(ValueError, match=r"`steps_offset`=5 for num_inference_steps=100.*must be < num_train_timest"):
        scheduler.set_timesteps(T)  # ... but [99, ..., 0] + 5 runs past T
    with pytest.raises(ValueError, match=r"`kind`='sigma'.*'beta', 'beta_tilde'"):
        scheduler.fixed_variance(3, "sigma")
    with pytest.raises(ValueError, match=r"`variance`='sigma'.*'beta', 'beta_tilde'"):
        scheduler.loss_weight(3, variance="sigma")
    scheduler.set_timesteps(10)
    with pytest.raises(ValueError, match=r"`timestep`=7.*the timesteps set by `set_timesteps`"):
        scheduler.previous_timestep(7)


# ----------------------------------------------------------------------------------------------------------------
# 5. The teaching formulas, against float64 numpy
# ----------------------------------------------------------------------------------------------------------------

T_TEACH = 1000
BETAS = np.linspace(1e-4, 0.02, T_TEACH)  # float64, the linear schedule of Ho et al. 2020
ALPHAS = 1 - BETAS
ALPHA_BAR = np.cumprod(ALPHAS)
ALPHA_BAR_PREV = np.append(1.0, ALPHA_BAR[:-1])  # alpha_bar_{t-1}, with alpha_bar_{-1} = 1
BETA_TILDE = (1 - ALPHA_BAR_PREV) / (1 - ALPHA_BAR) * BETAS
TS = torch.tensor([0, 1, 10, 500, 998, 999])  # per-sample timesteps, both ends included

# The conditioning of the formulas at step t with a float32 schedule, for the tolerances of the float64 comparisons.
# Built from a float32 alpha_bar (relative rounding 2^-24), the coefficients use the differences 1 - alpha_bar_t,
# 1 - alpha_bar_{t-1} and beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} (beta is recomputed from alpha_bar so that
# strided steps use the same code); a difference d of numbers near 1 carries 2^-24 / d relative error: ~4e-4 at
# t = 1, ~5e-5 at t = 500, ~2e-5 at t = 999. diffusers computes so. Ours computes the coefficients from the float64
# schedule (`test_step_in_float64`), so these tolerances are upper bounds for it, and tight ones for diffusers
# (`test_get_variance_is_diffusers_get_variance`). alpha_bar_{-1} = 1 is exact: no term for it at t = 0.
COND = 1 / (1 - ALPHA_BAR) + 2 / BETAS + np.append(0.0, 1 / (1 - ALPHA_BAR[:-1]))


def col(values: np.ndarray, t: torch.Tensor = TS) -> torch.Tensor:
    """values[t] as a float64 (B, 1, 1, 1) tensor."""
    return torch.from_numpy(values[t.numpy()]).reshape(-1, 1, 1, 1)


def assert_close_at(got: torch.Tensor, expected: torch.Tensor, t=TS):
    """Sample by sample: |got - expected| <= 4 * 2^-24 * COND[t] * max |expected| (got float32, expected float64).

    `t` is (B,), or an int for all samples; `got` and `expected` are (B, ...), or scalars/(B,) values, whose own
    magnitude then sets the scale (a relative comparison). The factor 4 covers the few roundings of each formula.
    """
    t = torch.as_tensor(t).reshape(-1)
    expected = expected.double().reshape(len(got) if got.ndim else 1, -1)  # (B, N)
    got = got.double().reshape(expected.shape)
    tolerance = 4 * F32_ROUNDING * torch.from_numpy(COND[t.numpy()]).reshape(-1, 1)
    bound = tolerance * expected.abs().amax(dim=1, keepdim=True)
    error = (got - expected).abs()
    assert (error <= bound).all(), f"relative errors {(error / bound * tolerance).amax(dim=1).tolist()} at t={t}"


@pytest.fixture
def teach():
    return DDPMHubScheduler(num_train_timesteps=T_TEACH, clip_sample=False)


@pytest.fixture
def tensors():
    """x_0 in [-1, 1], eps, and a random x_t, each float32 (len(TS), 3, 4, 4)."""
    generator = torch.Generator().manual_seed(0)
    shape = (len(TS), 3, 4, 4)
    x_0 = torch.rand(shape, generator=generator) * 2 - 1
    return x_0, torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def test_schedule_matches_the_float64_definition(teach):
    torch.testing.assert_close(teach.betas.double(), torch.from_numpy(BETAS), atol=0, rtol=1e-7)
    torch.testing.assert_close(teach.alphas_cumprod.double(), torch.from_numpy(ALPHA_BAR), atol=0, rtol=1e-7)


def test_q_step(teach, tensors):
    x_prev, eps, _ = tensors
    expected = col(np.sqrt(1 - BETAS)) * x_prev.double() + col(np.sqrt(BETAS)) * eps.double()
    assert_close_at(teach.q_step(x_prev, TS, eps), expected)


def test_add_noise_is_the_closed_form(teach, tensors):
    x_0, eps, _ = tensors
    expected = col(np.sqrt(ALPHA_BAR)) * x_0.double() + col(np.sqrt(1 - ALPHA_BAR)) * eps.double()
    assert_close_at(teach.add_noise(x_0, eps, TS), expected)
    assert teach.q_sample(x_0, eps, TS).equal(teach.add_noise(x_0, eps, TS))


def test_q_posterior_mean_and_variance(teach, tensors):
    x_0, _, x_t = tensors
    # Eq. 7 of Ho et al. 2020
    expected_mean = (
        col(np.sqrt(ALPHA_BAR_PREV) * BETAS / (1 - ALPHA_BAR)) * x_0.double()
        + col(np.sqrt(ALPHAS) * (1 - ALPHA_BAR_PREV) / (1 - ALPHA_BAR)) * x_t.double()
    )
    assert_close_at(teach.q_posterior_mean(x_0, x_t, TS), expected_mean)
    assert_close_at(teach.posterior_variance(TS), torch.from_numpy(BETA_TILDE[TS.numpy()]))
    assert teach.posterior_variance(0).item() == 0  # x_{-1} = x_0 is known given x_0: no uncertainty left
    assert teach.q_posterior_mean(x_0, x_t, 0).equal(x_0)
    assert teach.posterior_variance(5).ndim == 0 and teach.posterior_variance(TS).shape == (len(TS),)

    # independently, by Bayes: q(x_{t-1} | x_t, x_0) ~ q(x_t | x_{t-1}) q(x_{t-1} | x_0) is a product of Gaussians in
    # x_{t-1} with precisions alpha_t / beta_t and 1 / (1 - alpha_bar_{t-1}) (t >= 1, where both are finite)
    t = TS[TS > 0]
    x_0, x_t = x_0[TS > 0], x_t[TS > 0]
    prior_variance = col(1 - ALPHA_BAR_PREV, t)  # of q(x_{t-1} | x_0)
    precision = col(ALPHAS / BETAS, t) + 1 / prior_variance
    bayes_mean = (
        col(np.sqrt(ALPHAS) / BETAS, t) * x_t.double() + col(np.sqrt(ALPHA_BAR_PREV), t) / prior_variance * x_0
    ) / precision
    assert_close_at(teach.q_posterior_mean(x_0, x_t, t), bayes_mean, t)
    assert_close_at(teach.posterior_variance(t), 1 / precision, t)


def test_predict_x0_and_noise_invert_add_noise(teach, tensors):
    x_0, eps, x_t = tensors
    expected = (x_t.double() - col(np.sqrt(1 - ALPHA_BAR)) * eps.double()) / col(np.sqrt(ALPHA_BAR))
    assert_close_at(teach.predict_x0_from_noise(x_t, TS, eps), expected)
    expected = (x_t.double() - col(np.sqrt(ALPHA_BAR)) * x_0.double()) / col(np.sqrt(1 - ALPHA_BAR))
    assert_close_at(teach.predict_noise_from_x0(x_t, TS, x_0), expected)
    # round trips: x_t = add_noise(x_0, eps) carries float32 rounding (~6e-8 |x_t|); recovering x_0 divides it by
    # sqrt(alpha_bar_t) (160x at t = 999), recovering eps by sqrt(1 - alpha_bar_t) (100x at t = 0)
    x_t = teach.add_noise(x_0, eps, TS)
    x0_error = (teach.predict_x0_from_noise(x_t, TS, eps).double() - x_0.double()).abs()
    eps_error = (teach.predict_noise_from_x0(x_t, TS, x_0).double() - eps.double()).abs()
    assert (x0_error <= 1e-6 / col(np.sqrt(ALPHA_BAR))).all()
    assert (eps_error <= 1e-6 / col(np.sqrt(1 - ALPHA_BAR))).all()


def test_learned_mean(teach, tensors):
    _, eps, x_t = tensors
    # Eq. 11 of Ho et al. 2020
    expected = (x_t.double() - col(BETAS / np.sqrt(1 - ALPHA_BAR)) * eps.double()) / col(np.sqrt(ALPHAS))
    assert_close_at(teach.learned_mean(x_t, TS, eps), expected)
    # the same as the posterior mean at the x_0 the noise implies (no clipping in between)
    via_x0 = teach.q_posterior_mean(teach.predict_x0_from_noise(x_t, TS, eps), x_t, TS)
    assert_close_at(teach.learned_mean(x_t, TS, eps), via_x0.double())


def test_fixed_variance(teach):
    assert_close_at(teach.fixed_variance(TS, "beta"), torch.from_numpy(BETAS[TS.numpy()]))
    assert_close_at(teach.fixed_variance(TS, "beta_tilde"), torch.from_numpy(BETA_TILDE[TS.numpy()]))
    assert teach.fixed_variance(TS).equal(teach.posterior_variance(TS))  # beta_tilde is the default
    assert teach.fixed_variance(7, "beta").ndim == 0
    # beta_tilde_t <= beta_t: the two ends of the range of reasonable sigma^2 (Sec. 3.2)
    assert (teach.fixed_variance(TS, "beta_tilde") <= teach.fixed_variance(TS, "beta")).all()


def test_snr(teach):
    assert_close_at(teach.snr(TS), torch.from_numpy((ALPHA_BAR / (1 - ALPHA_BAR))[TS.numpy()]))
    assert teach.snr(3).ndim == 0
    assert (teach.snr(torch.arange(T_TEACH)).diff() < 0).all()  # monotonically decreasing


def test_loss_weight(teach):
    weight_beta = BETAS**2 / (2 * BETAS * ALPHAS * (1 - ALPHA_BAR))
    assert_close_at(teach.loss_weight(TS), torch.from_numpy(weight_beta[TS.numpy()]))
    assert_close_at(teach.loss_weight(TS, variance="beta"), torch.from_numpy(weight_beta[TS.numpy()]))
    # sigma^2 = beta_tilde: beta_tilde_0 = 0 would make w(0) infinite; beta_tilde_1 stands in (improved-diffusion)
    beta_tilde = BETA_TILDE.copy()
    beta_tilde[0] = beta_tilde[1]
    weight_tilde = BETAS**2 / (2 * beta_tilde * ALPHAS * (1 - ALPHA_BAR))
    got = teach.loss_weight(TS, variance="beta_tilde")
    assert torch.isfinite(got).all()
    assert_close_at(got, torch.from_numpy(weight_tilde[TS.numpy()]))
    assert teach.loss_weight(0, variance="beta_tilde").ndim == 0
    # for t >= 1, with beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t the weight simplifies to
    # beta_t / (2 alpha_t (1 - alpha_bar_{t-1}))
    t = TS[1:].numpy()
    simplified = BETAS[t] / (2 * ALPHAS[t] * (1 - ALPHA_BAR_PREV[t]))
    assert_close_at(got[1:], torch.from_numpy(simplified), TS[1:])


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_min_snr_loss_weight(prediction_type):
    """Min-SNR-gamma (Hang et al. 2023): the x_0 error weighted by min(SNR, gamma), written in the model's own error:
    ||eps - eps_hat||^2 = SNR ||x_0 - x_0_hat||^2 and ||v - v_hat||^2 = (SNR + 1) ||x_0 - x_0_hat||^2."""
    scheduler = DDPMHubScheduler(num_train_timesteps=T_TEACH, prediction_type=prediction_type)
    snr = ALPHA_BAR / (1 - ALPHA_BAR)
    clipped = np.minimum(snr, 5.0)
    expected = {"epsilon": clipped / snr, "sample": clipped, "v_prediction": clipped / (snr + 1)}[prediction_type]
    assert_close_at(scheduler.min_snr_loss_weight(TS), torch.from_numpy(expected[TS.numpy()]))
    assert scheduler.min_snr_loss_weight(TS, gamma=1e9).equal(scheduler.min_snr_loss_weight(TS, gamma=1e10))


def test_coefficients_and_guidance(teach):
    for t in (0, 500, 999):
        values = teach.coefficients(t)
        expected = {
            "beta_t": BETAS[t],
            "alpha_t": ALPHAS[t],
            "alpha_bar_t": ALPHA_BAR[t],
            "sqrt_alpha_t": math.sqrt(ALPHAS[t]),
            "sqrt_beta_t": math.sqrt(BETAS[t]),
            "sqrt_alpha_bar_t": math.sqrt(ALPHA_BAR[t]),
            "sqrt_one_minus_alpha_bar_t": math.sqrt(1 - ALPHA_BAR[t]),
            "beta_tilde_t": BETA_TILDE[t],
            "snr_t": ALPHA_BAR[t] / (1 - ALPHA_BAR[t]),
            "log_snr_t": math.log(ALPHA_BAR[t] / (1 - ALPHA_BAR[t])),
            "loss_weight_t": BETAS[t] / (2 * ALPHAS[t] * (1 - ALPHA_BAR[t])),
        }
        assert set(values) == set(expected)
        rtol = 4 * F32_ROUNDING * COND[t]
        for key, value in expected.items():
            assert values[key] == pytest.approx(value, rel=rtol, abs=rtol if key == "log_snr_t" else 0), (t, key)
    with pytest.raises(ValueError, match=r"`t`=1000.*\[0, 1000\)"):
        teach.coefficients(T_TEACH)


def test_score_from_noise(teach, tensors):
    x_0, eps, _ = tensors
    x_t = teach.add_noise(x_0, eps, TS)
    score = teach.score_from_noise(x_t, TS, eps)
    assert_close_at(score, -eps.double() / col(np.sqrt(1 - ALPHA_BAR)))
    # and that formula is the score: for x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps (float64 here), the score of
    # q(x_t | x_0) = N(sqrt(ab) x_0, (1 - ab) I) is -(x_t - sqrt(ab) x_0) / (1 - ab) = -eps / sqrt(1 - ab)
    x_t = col(np.sqrt(ALPHA_BAR)) * x_0.double() + col(np.sqrt(1 - ALPHA_BAR)) * eps.double()
    gaussian_score = -(x_t - col(np.sqrt(ALPHA_BAR)) * x_0.double()) / col(1 - ALPHA_BAR)
    torch.testing.assert_close(-eps.double() / col(np.sqrt(1 - ALPHA_BAR)), gaussian_score, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_training_target_and_split_model_output(prediction_type, tensors):
    scheduler = DDPMHubScheduler(num_train_timesteps=T_TEACH, prediction_type=prediction_type, clip_sample=False)
    x_0, eps, _ = tensors
    target = scheduler.training_target(x_0, eps, TS)
    expected = {
        "epsilon": eps.double(),
        "sample": x_0.double(),
        "v_prediction": col(np.sqrt(ALPHA_BAR)) * eps.double() - col(np.sqrt(1 - ALPHA_BAR)) * x_0.double(),
    }[prediction_type]
    assert_close_at(target, expected)
    if prediction_type == "v_prediction":
        assert target.equal(scheduler.get_velocity(x_0, eps, TS))
    # a perfect model's output is turned back into (x_0, eps); the float32 rounding of x_t is amplified as in
    # `test_predict_x0_and_noise_invert_add_noise` for epsilon (x_0 from eps) and sample (eps from x_0)
    x_t = scheduler.add_noise(x_0, eps, TS)
    pred_x0, pred_eps = scheduler.split_model_output(target, x_t, TS)
    assert ((pred_x0.double() - x_0.double()).abs() <= 1e-6 / col(np.sqrt(ALPHA_BAR))).all()
    assert ((pred_eps.double() - eps.double()).abs() <= 1e-6 / col(np.sqrt(1 - ALPHA_BAR))).all()


def reference_step(x_t, eps, t, prev_t, clip):
    """One ancestral step in float64 from the betas: x_0 from eps (clipped), mu_tilde, beta and beta_tilde."""
    alpha_bar_t = ALPHA_BAR[t]
    alpha_bar_prev = ALPHA_BAR[prev_t] if prev_t >= 0 else 1.0
    alpha = alpha_bar_t / alpha_bar_prev  # = alpha_t when prev_t = t - 1
    beta = 1 - alpha
    x_0 = (x_t.double() - math.sqrt(1 - alpha_bar_t) * eps.double()) / math.sqrt(alpha_bar_t)
    if clip:
        x_0 = x_0.clamp(-1, 1)
    mean = (
        math.sqrt(alpha_bar_prev) * beta / (1 - alpha_bar_t) * x_0
        + math.sqrt(alpha) * (1 - alpha_bar_prev) / (1 - alpha_bar_t) * x_t.double()
    )
    beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta
    return x_0, mean, beta, beta_tilde


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"])
def test_step_mean_and_std(variance_type, clip, tensors):
    scheduler = DDPMHubScheduler(num_train_timesteps=T_TEACH, variance_type=variance_type, clip_sample=clip)
    _, eps, x_t = tensors
    x_t, eps, z = x_t[:2], eps[:2], eps[2:4]
    for t in [999, 500, 1, 0]:
        out = scheduler.step(eps, t, x_t, variance_noise=z)
        x_0, mean, beta, beta_tilde = reference_step(x_t, eps, t, t - 1, clip)
        assert_close_at(out.pred_original_sample, x_0, t)
        assert out.pred_epsilon.equal(eps)
        assert_close_at(out.mean, mean, t)
        if t == 0:
            expected_std = 0.0  # Algorithm 2: z = 0 at the last step
        elif variance_type.startswith("fixed_small"):
            expected_std = math.sqrt(beta_tilde)
        else:
            expected_std = math.sqrt(beta)
        assert out.std.shape == (1, 1, 1, 1)
        assert_close_at(out.std.reshape(1), torch.tensor([expected_std]), t)
        torch.testing.assert_close(out.prev_sample, out.mean + out.std * z, atol=0, rtol=0)
        if clip:
            assert out.pred_original_sample.abs().max() <= 1
        # return_dict=False: the same fields, in order
        as_tuple = scheduler.step(eps, t, x_t, variance_noise=z, return_dict=False)
        assert len(as_tuple) == 5
        for got, field in zip(as_tuple, FIELDS, strict=True):
            assert got.equal(getattr(out, field))


def test_strided_steps_use_the_jump_beta(teach, tensors):
    """With fewer inference steps, the step t -> prev_t acts as one forward step with
    beta = 1 - alpha_bar_t / alpha_bar_prev (Nichol & Dhariwal 2021, Sec. 4), not beta_t."""
    _, eps, x_t = tensors
    x_t, eps, z = x_t[:2], eps[:2], eps[2:4]
    teach.set_timesteps(10)  # leading: 900, 800, ..., 0
    assert teach.timesteps.tolist() == list(range(900, -1, -100))
    assert teach.previous_timestep(900) == 800 and teach.previous_timestep(0) == -1
    _, mean, jump_beta, jump_beta_tilde = reference_step(x_t, eps, 900, 800, clip=False)
    assert jump_beta == pytest.approx(1 - ALPHA_BAR[900] / ALPHA_BAR[800])
    assert jump_beta > 10 * BETAS[900]  # visibly not the single-step beta
    # a jump of 100 steps: the differences are large, float32 rounding is all that is left
    rtol = 1e-6
    assert teach.fixed_variance(900, "beta", prev_t=800).item() == pytest.approx(jump_beta, rel=rtol)
    assert teach.posterior_variance(900, prev_t=800).item() == pytest.approx(jump_beta_tilde, rel=rtol)
    torch.testing.assert_close(teach.learned_mean(x_t, 900, eps, prev_t=800).double(), mean, atol=1e-6, rtol=rtol)

    out = teach.step(eps, 900, x_t, variance_noise=z)  # fixed_small
    torch.testing.assert_close(out.mean.double(), mean, atol=1e-6, rtol=rtol)
    assert out.std.item() == pytest.approx(math.sqrt(jump_beta_tilde), rel=rtol)
    large = DDPMHubScheduler(num_train_timesteps=T_TEACH, clip_sample=False, variance_type="fixed_large")
    large.set_timesteps(10)
    assert large.step(eps, 900, x_t, variance_noise=z).std.item() == pytest.approx(math.sqrt(jump_beta), rel=rtol)


# ----------------------------------------------------------------------------------------------------------------
# 6. Statistics of the forward process
# ----------------------------------------------------------------------------------------------------------------

# T = 100 steps up to beta = 0.2 (alpha_bar_99 ~ 4e-5, nearly pure noise): the q_step chain stays short
STATS_BETAS = np.linspace(1e-4, 0.2, T)
STATS_ALPHA_BAR = np.cumprod(1 - STATS_BETAS)  # float64
N_SAMPLES = 20000
X_0 = torch.tensor([-0.9, -0.2, 0.4, 1.0]).reshape(1, 1, 2, 2)  # one fixed x_0 of four pixels
CHECKPOINTS = [0, 4, 19, 49, 89, 99]


@pytest.fixture
def stats_scheduler():
    return DDPMHubScheduler(num_train_timesteps=T, beta_end=0.2)


def assert_moments(x_t: torch.Tensor, t: int):
    """Per-pixel empirical mean and variance against sqrt(alpha_bar_t) x_0 and 1 - alpha_bar_t, within 5 standard
    errors: sqrt(var / N) for the mean, var sqrt(2 / (N - 1)) for the variance of Gaussian samples."""
    x = x_t.double().reshape(N_SAMPLES, -1)
    expected_mean = math.sqrt(STATS_ALPHA_BAR[t]) * X_0.double().reshape(-1)
    expected_var = 1 - STATS_ALPHA_BAR[t]
    mean_error = (x.mean(0) - expected_mean).abs()
    var_error = (x.var(0) - expected_var).abs()
    assert (mean_error < 5 * math.sqrt(expected_var / N_SAMPLES)).all(), (t, mean_error)
    assert (var_error < 5 * expected_var * math.sqrt(2 / (N_SAMPLES - 1))).all(), (t, var_error)


def test_q_step_chain_has_the_closed_form_moments(stats_scheduler):
    """t + 1 single steps q(x_s | x_{s-1}), s = 0..t, give the closed form q(x_t | x_0) (Eq. 4)."""
    generator = torch.Generator().manual_seed(0)
    x = X_0.expand(N_SAMPLES, 1, 2, 2)
    for t in range(T):
        x = stats_scheduler.q_step(x, t, torch.randn(x.shape, generator=generator))
        if t in CHECKPOINTS:
            assert_moments(x, t)


def test_add_noise_has_the_closed_form_moments(stats_scheduler):
    generator = torch.Generator().manual_seed(1)
    x_0 = X_0.expand(N_SAMPLES, 1, 2, 2)
    for t in CHECKPOINTS:
        noise = torch.randn(x_0.shape, generator=generator)
        assert_moments(stats_scheduler.add_noise(x_0, noise, torch.full((N_SAMPLES,), t)), t)


# ----------------------------------------------------------------------------------------------------------------
# 7. dtypes, devices, per-sample timesteps
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("thresholding", [False, True])
def test_step_in_float64(thresholding):
    """A float64 chain stays float64 and is the float64 formula: every coefficient (alpha_bar, the step's alpha and
    beta, beta_tilde, sigma_t) comes from the float64 schedule, so the step equals Ho et al.'s Eq. 7 and 15 computed
    here in float64 from the betas' definition to 1e-12. (Rebuilt from a float32 alpha_bar, the step's beta is off
    by ~4e-4 relative at t = 1: 2^-24 / beta_1.)"""
    config = {
        "clip_sample": False,
        "thresholding": thresholding,
        "sample_max_value": 2.0,
        "dynamic_thresholding_ratio": 0.9,
    }
    scheduler = DDPMHubScheduler(num_train_timesteps=T, **config)
    scheduler.set_timesteps(timesteps=[99, 50, 10, 2, 1, 0])  # the small t, where float32 coefficients fail
    alpha_bar = torch.from_numpy(np.cumprod(1 - np.linspace(1e-4, 0.02, T)))
    generator = torch.Generator().manual_seed(5)
    sample = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    expected = sample.clone()
    for t in scheduler.timesteps.tolist():
        eps = 3 * torch.randn(SHAPE, generator=generator, dtype=torch.float64)  # x 3: thresholding has work to do
        z = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
        out = scheduler.step(eps, t, sample, variance_noise=z)
        for field in FIELDS:
            assert getattr(out, field).dtype == torch.float64, field

        prev_t = scheduler.previous_timestep(t)
        alpha_bar_t, alpha_bar_prev = alpha_bar[t], (alpha_bar[prev_t] if prev_t >= 0 else torch.tensor(1.0).double())
        beta = 1 - alpha_bar_t / alpha_bar_prev
        x_0 = (expected - (1 - alpha_bar_t).sqrt() * eps) / alpha_bar_t.sqrt()
        if thresholding:  # Saharia et al. 2022: s = the 90th percentile of |x_0| per sample, in [1, 2]
            s = torch.quantile(x_0.reshape(SHAPE[0], -1).abs(), 0.9, dim=1).clamp(1, 2).reshape(-1, 1, 1, 1)
            x_0 = torch.maximum(torch.minimum(x_0, s), -s) / s
        mean = (
            alpha_bar_prev.sqrt() * beta / (1 - alpha_bar_t) * x_0
            + (1 - beta).sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar_t) * expected
        )
        std = ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta).sqrt() if prev_t >= 0 else 0.0
        torch.testing.assert_close(out.pred_original_sample, x_0, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(out.pred_epsilon, eps, atol=0, rtol=0)
        torch.testing.assert_close(out.mean, mean, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(out.std.reshape(()), torch.as_tensor(std).double(), atol=0, rtol=1e-12)
        torch.testing.assert_close(out.prev_sample, out.mean + out.std * z, atol=0, rtol=0)
        sample, expected = out.prev_sample, out.prev_sample


def test_schedule_values_at_small_t_are_float64_accurate():
    """beta_tilde_t and the step's beta at t <= 1, where 1 - alpha_bar_t ~ 1e-4: a float32 alpha_bar carries 2^-24
    relative rounding, ~4e-4 relative after the subtraction. From the float64 schedule they are exact to float32's
    own rounding of the result, and `coefficients` (python floats) to 1e-12."""
    scheduler = DDPMHubScheduler(num_train_timesteps=T_TEACH)
    alpha_bar_float32 = scheduler.alphas_cumprod.double().numpy()
    rebuilt = 1 - alpha_bar_float32[1] / alpha_bar_float32[0]  # beta_1 from a float32 alpha_bar, as diffusers does
    assert abs(rebuilt / (1 - ALPHA_BAR[1] / ALPHA_BAR[0]) - 1) > 3e-4  # the README's ~4e-4
    for t in (1, 2):
        reference_beta = 1 - ALPHA_BAR[t] / ALPHA_BAR[t - 1]
        assert scheduler.fixed_variance(t, "beta").item() == pytest.approx(reference_beta, rel=1e-7)
        assert scheduler.posterior_variance(t).item() == pytest.approx(BETA_TILDE[t], rel=1e-7)
        values = scheduler.coefficients(t)
        assert values["beta_tilde_t"] == pytest.approx(BETA_TILDE[t], rel=1e-12)
        assert values["loss_weight_t"] == pytest.approx(BETAS[t] / (2 * ALPHAS[t] * (1 - ALPHA_BAR[t])), rel=1e-7)
        assert values["snr_t"] == pytest.approx(ALPHA_BAR[t] / (1 - ALPHA_BAR[t]), rel=1e-12)
        assert values["sqrt_one_minus_alpha_bar_t"] == pytest.approx(math.sqrt(1 - ALPHA_BAR[t]), rel=1e-12)


def test_teaching_functions_take_per_sample_timesteps(teach, tensors):
    """Each function, called with (B,) timesteps, gives row b what it gives for the scalar t_b."""
    x_0, eps, x_t = tensors
    batched = {
        "q_step": teach.q_step(x_0, TS, eps),
        "add_noise": teach.add_noise(x_0, eps, TS),
        "get_velocity": teach.get_velocity(x_0, eps, TS),
        "q_posterior_mean": teach.q_posterior_mean(x_0, x_t, TS),
        "predict_x0_from_noise": teach.predict_x0_from_noise(x_t, TS, eps),
        "predict_noise_from_x0": teach.predict_noise_from_x0(x_t, TS, x_0),
        "learned_mean": teach.learned_mean(x_t, TS, eps),
        "score_from_noise": teach.score_from_noise(x_t, TS, eps),
        "split_model_output": torch.stack(teach.split_model_output(eps, x_t, TS)),
        "posterior_variance": teach.posterior_variance(TS),
        "fixed_variance": teach.fixed_variance(TS, "beta"),
        "snr": teach.snr(TS),
        "loss_weight": teach.loss_weight(TS, variance="beta_tilde"),
    }
    for b, t in enumerate(TS.tolist()):
        row = slice(b, b + 1)
        single = {
            "q_step": teach.q_step(x_0[row], t, eps[row]),
            "add_noise": teach.add_noise(x_0[row], eps[row], t),
            "get_velocity": teach.get_velocity(x_0[row], eps[row], torch.tensor(t)),
            "q_posterior_mean": teach.q_posterior_mean(x_0[row], x_t[row], t),
            "predict_x0_from_noise": teach.predict_x0_from_noise(x_t[row], t, eps[row]),
            "predict_noise_from_x0": teach.predict_noise_from_x0(x_t[row], t, x_0[row]),
            "learned_mean": teach.learned_mean(x_t[row], t, eps[row]),
            "score_from_noise": teach.score_from_noise(x_t[row], t, eps[row]),
            "split_model_output": torch.stack(teach.split_model_output(eps[row], x_t[row], t)),
            "posterior_variance": teach.posterior_variance(t),
            "fixed_variance": teach.fixed_variance(t, "beta"),
            "snr": teach.snr(t),
            "loss_weight": teach.loss_weight(t, variance="beta_tilde"),
        }
        for name, value in single.items():
            expected = batched[name][:, row] if name == "split_model_output" else batched[name][row]
            if value.ndim == 0:
                expected = expected.reshape(())
            torch.testing.assert_close(value, expected, atol=0, rtol=0, msg=f"{name} at t={t}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_step_and_add_noise_on_cuda():
    scheduler = DDPMHubScheduler(num_train_timesteps=T, variance_type="learned_range", clip_sample=False)
    scheduler.set_timesteps(10, device="cuda")
    sample = torch.randn(SHAPE, device="cuda")
    output = torch.randn(2, 6, 4, 4, device="cuda")
    out = scheduler.step(output, scheduler.timesteps[0], sample, generator=torch.Generator("cuda").manual_seed(0))
    assert out.prev_sample.device.type == "cuda" and out.std.device.type == "cuda"
    ts = torch.tensor([3, 50], device="cuda")
    assert scheduler.add_noise(sample, sample, ts).device.type == "cuda"
    assert scheduler.q_posterior_mean(sample, sample, ts).device.type == "cuda"
    # the float64 schedule stays on the CPU; what the formulas return is on the device of their tensors
    assert scheduler.snr(ts).device.type == "cuda" and scheduler.loss_weight(ts).device.type == "cuda"
    assert scheduler.previous_timestep(scheduler.timesteps[0]).device.type == "cuda"
    ddim = DDIMHubScheduler(num_train_timesteps=T)
    ddim.set_timesteps(10, device="cuda")
    generator = torch.Generator("cuda").manual_seed(0)
    step = ddim.step(torch.randn(SHAPE, device="cuda"), ddim.timesteps[0], sample, eta=1.0, generator=generator)
    assert step.prev_sample.device.type == "cuda" and torch.isfinite(step.prev_sample).all()


# ----------------------------------------------------------------------------------------------------------------
# 8. Corners: zero terminal SNR, the chain's last step, variance_noise
# ----------------------------------------------------------------------------------------------------------------

ALL_VARIANCE_TYPES = [
    "fixed_small",
    "fixed_small_log",
    "fixed_large",
    "fixed_large_log",
    "learned",
    "learned_log",
    "learned_range",
]


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_zero_terminal_snr_schedule_is_monotone_and_lin_et_al(beta_schedule):
    """`rescale_betas_zero_snr` (Lin et al. 2023, Algorithm 1) maps sqrt(alpha_bar) affinely, keeping alpha_bar_0;
    ours maps sqrt(alpha_bar_{T-1}) to sqrt(2^-24) instead of 0. Setting alpha_bar_{T-1} = 2^-24 after an exact-zero
    rescale (the old code) left alpha_bar_{996..998} below 2^-24 on the linear schedule: beta_{999} = -13.1."""
    config = {"beta_schedule": beta_schedule, "rescale_betas_zero_snr": True}
    ours = DDPMHubScheduler(**config)
    plain = DDPMHubScheduler(beta_schedule=beta_schedule)
    alpha_bar = ours.alphas_cumprod.double()
    assert (alpha_bar.diff() < 0).all()  # strictly decreasing
    assert ((ours.betas > 0) & (ours.betas <= 1)).all()
    assert alpha_bar[-1].item() == pytest.approx(2**-24, rel=1e-6)  # SNR 6e-8
    assert alpha_bar[0].item() == pytest.approx(plain.alphas_cumprod[0].item(), rel=1e-6)
    # affine in the original sqrt(alpha_bar): the same line through both ends fits every t
    old, new = plain.alphas_cumprod.double().sqrt(), alpha_bar.sqrt()
    slope = (new[0] - new[-1]) / (old[0] - old[-1])
    torch.testing.assert_close(new, new[-1] + slope * (old - old[-1]), atol=1e-6, rtol=0)
    # and within sqrt(2^-24) = 2^-12 of diffusers' exact-zero rescale everywhere
    theirs = DDPMScheduler(**config).alphas_cumprod.double().sqrt()
    assert (new - theirs).abs().max() <= 2**-12 + 1e-6
    # the old way, 2^-24 set after an exact-zero rescale, on the linear schedule: beta_999 = -13.1
    if beta_schedule == "linear":
        sqrt_old = np.sqrt(np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
        exact_zero = ((sqrt_old - sqrt_old[-1]) * sqrt_old[0] / (sqrt_old[0] - sqrt_old[-1])) ** 2
        exact_zero[-1] = 2**-24
        assert 1 - exact_zero[-1] / exact_zero[-2] == pytest.approx(-13.1, abs=0.05)
    # every per-t value is finite, the ELBO weights included
    steps = torch.arange(len(ours))
    for values in (ours.snr(steps), ours.loss_weight(steps), ours.loss_weight(steps, variance="beta_tilde")):
        assert torch.isfinite(values).all() and (values > 0).all()
    for t in (0, len(ours) - 1):
        assert all(math.isfinite(v) for k, v in ours.coefficients(t).items() if k != "log_snr_t")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("variance_type", ALL_VARIANCE_TYPES)
def test_zero_terminal_snr_chain_is_finite_for_every_variance_type(variance_type, prediction_type):
    """From t = T - 1 (alpha_bar = 2^-24) every variance type gives finite steps: before, beta_{T-1} < 0 made
    fixed_large, learned_range (log of a negative number) and eps-prediction's x_0 NaN."""
    scheduler = DDPMHubScheduler(
        variance_type=variance_type, prediction_type=prediction_type, rescale_betas_zero_snr=True
    )
    scheduler.set_timesteps(timesteps=[999, 998, 997, 600, 1, 0])
    outputs = model_outputs(6, variance_type)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(3)
    for t, out in zip(scheduler.timesteps, outputs, strict=True):
        step = scheduler.step(out, t, sample, generator=generator)
        for field in FIELDS:
            assert torch.isfinite(getattr(step, field)).all(), (int(t), field)
        sample = step.prev_sample


@pytest.mark.parametrize("variance_type", ALL_VARIANCE_TYPES)
def test_no_noise_on_the_last_step_whatever_its_t(variance_type):
    """Algorithm 2 returns the mean on the chain's last step, the one to x_0. With 10 trailing steps that step is
    t = 99 (sigma = 0.32 for fixed_large before); with custom timesteps it may be any t."""
    scheduler = DDPMHubScheduler(variance_type=variance_type, clip_sample=False)
    scheduler.set_timesteps(10)
    for timesteps in (None, [700, 300, 50]):
        if timesteps is None:
            scheduler = DDPMHubScheduler(variance_type=variance_type, timestep_spacing="trailing", clip_sample=False)
            scheduler.set_timesteps(10)
        else:
            scheduler.set_timesteps(timesteps=timesteps)
        last = int(scheduler.timesteps[-1])
        assert last == (99 if timesteps is None else 50)
        assert scheduler.previous_timestep(last) == -1
        out = model_outputs(1, variance_type)[0]
        sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
        step = scheduler.step(out, last, sample, generator=torch.Generator().manual_seed(0))
        assert step.std.abs().max() == 0
        assert step.prev_sample.equal(step.mean)
        # the mean itself is the posterior mean towards alpha_bar_{-1} = 1, i.e. the predicted x_0
        torch.testing.assert_close(step.mean, step.pred_original_sample, atol=1e-5, rtol=1e-5)
        # and the step before it still adds noise
        before = int(scheduler.timesteps[-2])
        assert scheduler.step(out, before, sample, generator=torch.Generator().manual_seed(0)).std.abs().max() > 0
    if variance_type == "fixed_large":  # the number of the issue: sigma would be sqrt(1 - alpha_bar_99) = 0.32
        assert scheduler.step_std(99, -1, None, SHAPE).item() == pytest.approx(0.32, abs=0.01)


def test_variance_noise_replaces_z():
    """`variance_noise` is z of x_{t-1} = mean + sigma_t z: zeros give the mean, any z the same as drawing it."""
    scheduler = DDPMHubScheduler(num_train_timesteps=T, variance_type="fixed_large")
    scheduler.set_timesteps(10)
    sample, out = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    mean_only = scheduler.step(out, 50, sample, variance_noise=torch.zeros(SHAPE))
    assert mean_only.std.abs().min() > 0 and mean_only.prev_sample.equal(mean_only.mean)
    drawn = scheduler.step(out, 50, sample, generator=torch.Generator().manual_seed(7))
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    assert scheduler.step(out, 50, sample, variance_noise=z).prev_sample.equal(drawn.prev_sample)
    with pytest.raises(ValueError, match="either `generator` or `variance_noise`"):
        scheduler.step(out, 50, sample, generator=torch.Generator(), variance_noise=z)
    with pytest.raises(ValueError, match=r"`variance_noise`.*\(2, 3, 4\).*sample's shape \(2, 3, 4, 4\)"):
        scheduler.step(out, 50, sample, variance_noise=z[..., 0])


# ----------------------------------------------------------------------------------------------------------------
# 9. What diffusers' own DDPMScheduler tests check (tests/schedulers/test_scheduler_ddpm.py, SchedulerCommonTest)
# ----------------------------------------------------------------------------------------------------------------


def test_previous_timestep_types_follow_diffusers():
    """diffusers returns a tensor for a tensor (its tests call `.item()` on it) and an int for an int before
    `set_timesteps`; ours returns a long tensor of the input's shape for a tensor, an int for an int."""
    ours, theirs = DDPMHubScheduler(), DDPMScheduler()
    assert ours.previous_timestep(5) == theirs.previous_timestep(5) == 4 and isinstance(ours.previous_timestep(5), int)
    for scheduler in (ours, theirs):
        scheduler.set_timesteps(timesteps=[100, 87, 50, 1, 0])
    for t in ours.timesteps:
        got = ours.previous_timestep(t)
        assert torch.is_tensor(got) and got.dtype == torch.long and got.shape == ()
        assert got.item() == theirs.previous_timestep(t).item()
    batched = ours.previous_timestep(torch.tensor([100, 1, 0]))
    assert batched.tolist() == [87, 0, -1]
    assert ours.previous_timestep(87) == 50


@pytest.mark.parametrize("variance_type", ALL_VARIANCE_TYPES)
def test_get_variance_is_diffusers_get_variance(variance_type):
    """`_get_variance(t, predicted_variance=None, variance_type=None)` has diffusers' meaning per type (sigma^2,
    sigma for fixed_small_log, log sigma^2 for fixed_large_log and learned_range), at every t, before and after
    `set_timesteps`, and with the type passed as an argument. diffusers' test values: 0 at t = 0, 0.00979 at 487,
    0.02 at 999 for fixed_small."""
    ours, theirs = DDPMHubScheduler(variance_type=variance_type), DDPMScheduler(variance_type=variance_type)
    ours_default = DDPMHubScheduler()
    predicted = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0)) * 0.02
    if variance_type == "learned_range":
        predicted = predicted * 100 - 1
    theirs_type = "learned" if variance_type == "learned_log" else variance_type  # diffusers has no learned_log
    for timesteps in (None, 10):
        if timesteps is not None:
            for scheduler in (ours, theirs, ours_default):
                scheduler.set_timesteps(timesteps)
        for t in [0, 1, 487, 998, 999] if timesteps is None else ours.timesteps.tolist():
            got = ours._get_variance(t, predicted_variance=predicted)
            expected = theirs._get_variance(t, predicted_variance=predicted, variance_type=theirs_type)
            if variance_type == "learned_log":  # log sigma^2, which diffusers' `learned` reads as sigma^2
                assert got is predicted
                continue
            # diffusers' float32 schedule is 2^-24 COND[t] off a float64 one (see `assert_close_at`): relative for
            # sigma^2 and sigma, absolute for log sigma^2
            tolerance = 4 * F32_ROUNDING * COND[t]
            is_log = variance_type in ("fixed_large_log", "learned_range")
            torch.testing.assert_close(
                got, expected, atol=tolerance if is_log else 1e-12, rtol=0 if is_log else tolerance
            )
            assert got.shape == expected.shape
            assert ours_default._get_variance(t, predicted, variance_type).equal(got)
    fixed_small = DDPMHubScheduler()
    for t, value in [(0, 0.0), (487, 0.00979), (999, 0.02)]:
        assert abs(fixed_small._get_variance(t).item() - value) < 1e-5


def test_noise_then_denoise_loop_is_closer_to_float64_than_diffusers():
    """diffusers' `test_full_loop_with_noise` (noise to t = 1 with its dummy noise, then steps 1 and 0) pins the sum
    of |x| at 387.9466 (+-1e-2). That value carries diffusers' float32 rounding of beta_1 (2^-24 / beta_1 ~ 4e-4
    relative); the same loop in float64 (ours, which `test_step_in_float64` checks against the formulas) differs from
    it by more than the pin allows, and our float32 loop is within float32 rounding of the float64 one."""
    n = 4 * 3 * 8 * 8
    sample = (torch.arange(n).reshape(3, 8, 8, 4) / n).permute(3, 0, 1, 2)  # diffusers' dummy_sample_deter
    noise = (torch.arange(n).flip(-1).reshape(3, 8, 8, 4) / n).permute(3, 0, 1, 2)  # dummy_noise_deter
    z = torch.randn(sample.shape, generator=torch.manual_seed(0))  # the draw diffusers makes at t = 1

    def loop(scheduler, dtype):
        x = scheduler.add_noise(sample.to(dtype), noise.to(dtype), torch.tensor([1]))
        for t in (1, 0):
            kwargs = {"variance_noise": z.to(dtype)} if t > 0 else {}
            if isinstance(scheduler, DDPMScheduler):
                kwargs = {"generator": torch.manual_seed(0)}
            x = scheduler.step(x * t / (t + 1), t, x, **kwargs).prev_sample
        return x.double().abs().sum().item()

    float64 = loop(DDPMHubScheduler(), torch.float64)
    ours, theirs = loop(DDPMHubScheduler(), torch.float32), loop(DDPMScheduler(), torch.float32)
    assert abs(theirs - 387.9466) < 1e-3  # diffusers' pinned value, reproduced
    assert abs(float64 - theirs) > 1e-2  # outside diffusers' own tolerance
    assert abs(ours - float64) < 1e-6 * float64


def test_marginal_pixel_density_is_the_histogram_of_many_draws():
    """The pooled pixels of many draws of q(x_t | x_0) follow the mixture over pixels of N(sqrt(ab) x_0, 1 - ab)."""
    scheduler = DDPMHubScheduler()
    generator = torch.Generator().manual_seed(0)
    x_0 = torch.where(torch.rand(1, 1, 6, 6, generator=generator) > 0.7, 1.0, -1.0)  # a two-level "digit"
    for t in (50, 300, 999):
        draws = 4000
        noise = torch.randn((draws, 1, 6, 6), generator=generator, dtype=torch.float64)
        x_t = scheduler.add_noise(x_0.double().expand(draws, -1, -1, -1), noise, torch.tensor([t]))
        edges = torch.linspace(-3, 3, 25, dtype=torch.float64)
        counts = torch.histogram(x_t.flatten(), edges).hist / x_t.numel()
        grid = torch.linspace(-3, 3, 24 * 200 + 1, dtype=torch.float64)
        density = scheduler.marginal_pixel_density(x_0, t, grid)
        bins = (density[:-1] + density[1:]).reshape(24, 200).sum(1) / 2 * (grid[1] - grid[0])  # trapezoid per bin
        assert (counts - bins).abs().max() < 0.01, t  # 144,000 pooled pixels: a bin's sd is < 0.0015
        alpha_bar = float(scheduler.coefficients(t)["alpha_bar_t"])
        by_hand = (
            sum(
                torch.exp(-((grid - math.sqrt(alpha_bar) * x) ** 2) / (2 * (1 - alpha_bar)))
                / math.sqrt(2 * math.pi * (1 - alpha_bar))
                for x in x_0.flatten().tolist()
            )
            / x_0.numel()
        )
        torch.testing.assert_close(density, by_hand, rtol=1e-9, atol=1e-12)


def test_noise_at_last_step_adds_sigma_z_to_the_mean():
    scheduler = DDPMHubScheduler(num_train_timesteps=10, variance_type="fixed_large")
    scheduler.set_timesteps(5)
    sample, model_output = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    z = torch.randn(2, 1, 4, 4)
    last = int(scheduler.timesteps[-1])
    plain = scheduler.step(model_output, last, sample, variance_noise=z)
    assert plain.std.eq(0).all() and torch.equal(plain.prev_sample, plain.mean)
    scheduler.noise_at_last_step = True
    noisy = scheduler.step(model_output, last, sample, variance_noise=z)
    beta = float(scheduler.fixed_variance(last, "beta", prev_t=-1))
    assert float(noisy.std.max()) == pytest.approx(math.sqrt(beta), rel=1e-6)
    torch.testing.assert_close(noisy.prev_sample, plain.mean + noisy.std * z)
