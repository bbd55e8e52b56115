"""The variational bound: the scheduler's KL and decoder against references, the pipeline's bound against an
independent float64 loop written here from the formulas, and the two ELBO estimators of the notes (004)."""

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import special
from torch.distributions import Normal, kl_divergence

from ddpm_hub import (
    UNET_PRESETS,
    BitsPerDimOutput,
    BoundStep,
    DDPMHubPipeline,
    DDPMHubScheduler,
    DDPMHubUNet2DModel,
    ElboEstimates,
)

TRAIN_STEPS = 24
SIZE = 8
NULL_CLASS = UNET_PRESETS["tiny"]["num_class_embeds"]


def tiny_unet(seed: int = 0, **overrides) -> DDPMHubUNet2DModel:
    torch.manual_seed(seed)
    unet = DDPMHubUNet2DModel(**{**UNET_PRESETS["tiny"], "sample_size": SIZE, **overrides})
    with torch.no_grad():  # the output conv is zero-initialised: perturb so that predictions depend on the input
        for parameter in unet.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return unet.eval()


def make_pipeline(unet=None, **scheduler_config) -> DDPMHubPipeline:
    scheduler = DDPMHubScheduler(num_train_timesteps=TRAIN_STEPS, **scheduler_config)
    pipe = DDPMHubPipeline(unet=unet or tiny_unet(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipeline() -> DDPMHubPipeline:
    return make_pipeline()


def digits(batch: int = 3, seed: int = 0) -> torch.Tensor:
    """8-bit images in [-1, 1], (B, 1, SIZE, SIZE), with both extreme levels present (the decoder's edge bins)."""
    generator = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 256, (batch, 1, SIZE, SIZE), generator=generator)
    levels[:, :, 0, 0], levels[:, :, 0, 1] = 0, 255
    return levels.double() / 127.5 - 1


# ----------------------------------------------------------------------------------------------------------------
# The scheduler's formulas
# ----------------------------------------------------------------------------------------------------------------


def test_gaussian_kl_matches_torch_distributions():
    generator = torch.Generator().manual_seed(0)
    mean_1, mean_2 = torch.randn(2, 1000, generator=generator, dtype=torch.float64)
    logvar_1, logvar_2 = torch.randn(2, 1000, generator=generator, dtype=torch.float64) * 4  # variances e^-12 .. e^12
    expected = kl_divergence(Normal(mean_1, (0.5 * logvar_1).exp()), Normal(mean_2, (0.5 * logvar_2).exp()))
    got = DDPMHubScheduler.gaussian_kl(mean_1, logvar_1, mean_2, logvar_2)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # numbers broadcast (the prior term compares q(x_T | x_0) with N(0, 1)); KL(p || p) = 0
    prior = DDPMHubScheduler.gaussian_kl(mean_1, logvar_1, 0.0, 0.0)
    torch.testing.assert_close(prior, kl_divergence(Normal(mean_1, (0.5 * logvar_1).exp()), Normal(0.0, 1.0)))
    assert DDPMHubScheduler.gaussian_kl(mean_1, logvar_1, mean_1, logvar_1).abs().max() < 1e-12


def bin_log_probability(level: int, mean: float, scale: float) -> float:
    """log of the integral of N(mean, scale^2) over the bin of 8-bit level k (edges to -inf / +inf), with mpmath's
    erfc at 30 digits: P(a < Z < b) = (erfc(a / sqrt 2) - erfc(b / sqrt 2)) / 2, mirrored onto the upper tail."""
    x = level / 127.5 - 1
    lower = -mpmath.inf if level == 0 else mpmath.mpf(x - 1 / 255 - mean) / scale
    upper = mpmath.inf if level == 255 else mpmath.mpf(x + 1 / 255 - mean) / scale
    if upper <= 0:  # the bin lies below the mean: mirror it, so that erfc works with small, exact numbers
        lower, upper = -upper, -lower
    root2 = mpmath.sqrt(2)
    return float(mpmath.log((mpmath.erfc(lower / root2) - mpmath.erfc(upper / root2)) / 2))


@pytest.mark.parametrize("mean, scale", [(0.3, 0.05), (-1.0, 0.007), (0.98, 0.4), (-0.2, 0.002)])
def test_discretized_decoder_is_the_integral_of_the_gaussian_over_each_bin(mean, scale):
    mpmath.mp.dps = 30
    levels = torch.arange(256)
    x_0 = (levels.double() / 127.5 - 1).reshape(1, 1, 16, 16)
    got = DDPMHubScheduler.discretized_gaussian_log_likelihood(
        x_0, torch.full_like(x_0, mean), torch.full_like(x_0, math.log(scale))
    ).flatten()
    expected = torch.tensor([bin_log_probability(k, mean, scale) for k in range(256)], dtype=torch.float64)
    # relative in log space, down to the far tails (log p ~ -2e5 for the last bin at scale 0.002)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    assert abs(float(got.exp().sum()) - 1) < 1e-9  # the 256 bins cover the real line


def test_discretized_decoder_rejects_values_outside_the_pixel_range():
    x_0 = torch.full((1, 1, 2, 2), 1.5)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        DDPMHubScheduler.discretized_gaussian_log_likelihood(x_0, torch.zeros_like(x_0), torch.zeros_like(x_0))


def test_prior_term_is_the_kl_of_q_xT_given_x0_to_the_standard_normal():
    scheduler = DDPMHubScheduler(num_train_timesteps=TRAIN_STEPS)
    x_0 = digits()
    alpha_bar = np.prod(1 - np.linspace(1e-4, 0.02, TRAIN_STEPS))
    q_xT = Normal(math.sqrt(alpha_bar) * x_0, math.sqrt(1 - alpha_bar))
    expected = kl_divergence(q_xT, Normal(0.0, 1.0)).flatten(1).mean(1) / math.log(2)
    torch.testing.assert_close(scheduler.prior_bpd(x_0), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_x0_loss_weight_is_the_notes_x0_matching_weight(variance):
    scheduler = DDPMHubScheduler(num_train_timesteps=1000)
    t = torch.tensor([1, 10, 300, 999])
    betas = np.linspace(1e-4, 0.02, 1000)
    alpha_bar = np.cumprod(1 - betas)
    alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
    beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar) * betas
    sigma2 = (betas if variance == "beta" else beta_tilde)[t.numpy()]
    t = t.numpy()
    expected = (
        alpha_bar_prev[t] * betas[t] ** 2 / (2 * sigma2 * (1 - alpha_bar[t]) ** 2)
    )  # 004, "From VAE to Diffusion"
    np.testing.assert_allclose(scheduler.x0_loss_weight(torch.from_numpy(t), variance).numpy(), expected, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# The bound, term by term, against an independent float64 loop (improved-diffusion's `calc_bpd_loop`)
# ----------------------------------------------------------------------------------------------------------------


def _log_bin_probability(x_0: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """log P(bin of x_0) under N(mean, scale^2), edges to +-inf, from scipy's normal CDF (float64)."""
    lower = (x_0 - 1 / 255 - mean) / scale
    upper = (x_0 + 1 / 255 - mean) / scale
    upper_tail = lower > 0  # take the bin on the lower tail, where the CDF keeps its precision
    inside = np.where(
        upper_tail, special.ndtr(-lower) - special.ndtr(-upper), special.ndtr(upper) - special.ndtr(lower)
    )
    return np.where(
        x_0 < -0.999, special.log_ndtr(upper), np.where(x_0 > 0.999, special.log_ndtr(-lower), np.log(inside))
    )


def reference_bound(unet, x_0, labels, noise_by_t, variance_type="fixed_small", clip=True):
    """The bound per image in bits/dim from the DDPM formulas, in float64: (total, prior, terms (B, T))."""
    betas = np.linspace(1e-4, 0.02, TRAIN_STEPS, dtype=np.float64)
    alphas = 1 - betas
    alpha_bar = np.cumprod(alphas)
    alpha_bar_prev = np.append(1.0, alpha_bar[:-1])
    beta_tilde = betas * (1 - alpha_bar_prev) / (1 - alpha_bar)
    true_log_var = np.log(np.append(beta_tilde[1], beta_tilde[1:]))
    model_var = np.append(beta_tilde[1], (beta_tilde if variance_type == "fixed_small" else betas)[1:])
    coef_x0 = betas * np.sqrt(alpha_bar_prev) / (1 - alpha_bar)
    coef_xt = (1 - alpha_bar_prev) * np.sqrt(alphas) / (1 - alpha_bar)
    x0 = x_0.numpy()
    dims = x0[0].size
    terms = np.zeros((x0.shape[0], TRAIN_STEPS))
    for t in range(TRAIN_STEPS - 1, -1, -1):
        eps = noise_by_t[t].numpy()
        x_t = np.sqrt(alpha_bar[t]) * x0 + np.sqrt(1 - alpha_bar[t]) * eps
        with torch.no_grad():
            out = unet(torch.from_numpy(x_t).float(), torch.full((x0.shape[0],), t), class_labels=labels).sample
        x0_hat = (x_t - np.sqrt(1 - alpha_bar[t]) * out.double().numpy()) / np.sqrt(alpha_bar[t])
        x0_hat = np.clip(x0_hat, -1, 1) if clip else x0_hat
        mean_p = coef_x0[t] * x0_hat + coef_xt[t] * x_t
        mean_q = coef_x0[t] * x0 + coef_xt[t] * x_t
        if t > 0:  # KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), both N(., var I)
            var_q, var_p = np.exp(true_log_var[t]), model_var[t]
            kl = 0.5 * np.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / (2 * var_p) - 0.5
            terms[:, t] = kl.reshape(len(x0), -1).sum(1) / dims / np.log(2)
        else:
            log_p = _log_bin_probability(x0, mean_p, np.sqrt(model_var[0]))
            terms[:, 0] = -log_p.reshape(len(x0), -1).sum(1) / dims / np.log(2)
    mean_T, var_T = np.sqrt(alpha_bar[-1]) * x0, 1 - alpha_bar[-1]
    prior = (0.5 * (var_T + mean_T**2 - 1 - np.log(var_T))).reshape(len(x0), -1).sum(1) / dims / np.log(2)
    return prior + terms.sum(1), prior, terms


def noise_of_each_step(pipe, x_0, class_labels, seed, **kwargs):
    steps = list(pipe.bound_steps(x_0, class_labels, torch.Generator().manual_seed(seed), **kwargs))
    return steps, {step.timestep: step.noise.double() for step in steps}


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_bits_per_dim_matches_an_independent_float64_loop(variance_type):
    pipe = make_pipeline(variance_type=variance_type)
    x_0, labels = digits(), torch.tensor([3, 7, 0])
    steps, noise_by_t = noise_of_each_step(pipe, x_0, labels, seed=1)
    assert [step.timestep for step in steps] == list(range(TRAIN_STEPS - 1, -1, -1))
    total, prior, terms = reference_bound(pipe.unet, x_0, labels, noise_by_t, variance_type)

    out = pipe.bits_per_dim(x_0, labels, torch.Generator().manual_seed(1))  # the same draws
    assert isinstance(out, BitsPerDimOutput)
    np.testing.assert_allclose(out.prior.numpy(), prior, rtol=1e-6)
    np.testing.assert_allclose(out.reconstruction.numpy(), terms[:, 0], rtol=1e-4)
    np.testing.assert_allclose(out.denoising.numpy(), terms[:, 1:], rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(out.total.numpy(), total, rtol=5e-4)


def test_the_parts_sum_to_the_total(pipeline):
    out = pipeline.bits_per_dim(digits(), [1, 2, 3], torch.Generator().manual_seed(0))
    assert out.denoising.shape == (3, TRAIN_STEPS - 1) and out.noise_mse.shape == (3, TRAIN_STEPS)
    torch.testing.assert_close(out.rate, out.denoising.sum(1))
    torch.testing.assert_close(out.distortion, out.reconstruction)
    torch.testing.assert_close(out.total, out.prior + out.rate + out.distortion)
    assert (out.denoising >= 0).all() and (out.reconstruction > 0).all() and (out.prior > 0).all()


def test_unconditional_is_the_null_class_and_differs_from_a_label(pipeline):
    x_0 = digits(2)
    unconditional = pipeline.bits_per_dim(x_0, None, torch.Generator().manual_seed(2))
    _, noise_by_t = noise_of_each_step(pipeline, x_0, None, seed=2)
    total, _, _ = reference_bound(pipeline.unet, x_0, torch.full((2,), NULL_CLASS), noise_by_t)
    np.testing.assert_allclose(unconditional.total.numpy(), total, rtol=5e-4)
    conditional = pipeline.bits_per_dim(x_0, 5, torch.Generator().manual_seed(2))  # one int for the whole batch
    assert (conditional.total - unconditional.total).abs().min() > 1e-4


def test_unconditional_model():
    pipe = make_pipeline(tiny_unet(num_class_embeds=None))
    x_0 = digits(2)
    out = pipe.bits_per_dim(x_0, generator=torch.Generator().manual_seed(0))
    _, noise_by_t = noise_of_each_step(pipe, x_0, None, seed=0)
    np.testing.assert_allclose(out.total.numpy(), reference_bound(pipe.unet, x_0, None, noise_by_t)[0], rtol=5e-4)
    with pytest.raises(ValueError, match="unconditional"):
        pipe.bits_per_dim(x_0, class_labels=3)


def test_bound_steps_fields_and_the_eps_form_of_each_term():
    """With a fixed variance and no clipping, L_t = w(t) ||eps - eps_theta||^2 = w_x0(t) ||x_0 - x0_theta||^2."""
    pipe = make_pipeline(clip_sample=False)
    x_0 = digits(2)
    steps = list(pipe.bound_steps(x_0, [4, 9], torch.Generator().manual_seed(0), timesteps=[20, 7, 1, 0]))
    assert [s.timestep for s in steps] == [20, 7, 1, 0] and [s.step_index for s in steps] == [0, 1, 2, 3]
    for step in steps:
        assert isinstance(step, BoundStep) and step.num_steps == 4
        assert step.sample.shape == step.noise.shape == step.noise_pred.shape == (2, 1, SIZE, SIZE)
        assert step.vb_bpd.shape == step.noise_mse.shape == step.x0_mse.shape == step.prior_bpd.shape == (2,)
        alpha_bar = float(pipe.scheduler.alphas_cumprod[step.timestep])
        torch.testing.assert_close(
            step.sample.double(),
            math.sqrt(alpha_bar) * x_0 + math.sqrt(1 - alpha_bar) * step.noise.double(),
            rtol=0,
            atol=1e-5,  # alphas_cumprod is stored in float32
        )
        torch.testing.assert_close(step.noise_mse, (step.noise - step.noise_pred).double().pow(2).flatten(1).mean(1))
        if step.timestep > 0:
            nats = step.vb_bpd * math.log(2)
            torch.testing.assert_close(nats, step.loss_weight * step.noise_mse, rtol=2e-3, atol=0)
            x0_weight = float(pipe.scheduler.x0_loss_weight(step.timestep, "beta_tilde"))
            torch.testing.assert_close(nats, x0_weight * step.x0_mse, rtol=2e-3, atol=0)


def test_bound_steps_results_do_not_depend_on_the_batching(pipeline):
    x_0 = digits(2)
    wide = pipeline.bits_per_dim(x_0, [1, 2], torch.Generator().manual_seed(3), batch_size=64)
    narrow = pipeline.bits_per_dim(x_0, [1, 2], torch.Generator().manual_seed(3), batch_size=1)
    torch.testing.assert_close(wide.total, narrow.total, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"images": torch.zeros(2, 1, 5, 5)}, "images"),
        ({"images": torch.full((1, 1, SIZE, SIZE), 2.0)}, r"\[-1, 1\]"),
        ({"images": torch.full((1, 1, SIZE, SIZE), float("nan"))}, "finite"),
        ({"class_labels": 10}, "class_labels"),
        ({"timesteps": [TRAIN_STEPS]}, "timesteps"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bound_steps_rejects_bad_input(pipeline, kwargs, match):
    arguments = {"images": torch.zeros(1, 1, SIZE, SIZE), **kwargs}
    with pytest.raises(ValueError, match=match):
        next(pipeline.bound_steps(**arguments))


# ----------------------------------------------------------------------------------------------------------------
# The two ELBO forms (004, "Question"): same mean, different spread
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def estimates(pipeline) -> ElboEstimates:
    return pipeline.elbo_estimates(
        digits(1)[0], num_draws=64, class_labels=3, generator=torch.Generator().manual_seed(0)
    )


def test_elbo_estimates_shapes(estimates):
    assert isinstance(estimates, ElboEstimates)
    assert estimates.kl_form.shape == estimates.trajectory_form.shape == (64,)
    assert torch.isfinite(estimates.kl_form).all() and torch.isfinite(estimates.trajectory_form).all()


def test_the_two_forms_estimate_the_same_bound(estimates, pipeline):
    kl, trajectory = estimates.kl_form, estimates.trajectory_form
    standard_error = math.sqrt(kl.var() / len(kl) + trajectory.var() / len(trajectory))
    assert abs(float(kl.mean() - trajectory.mean())) < 4 * standard_error
    # and the KL form on trajectories has the mean of the bound with independent draws per t
    x_0 = digits(1).expand(16, -1, -1, -1)
    independent = pipeline.bits_per_dim(x_0, 3, torch.Generator().manual_seed(5)).total
    standard_error = math.sqrt(kl.var() / len(kl) + independent.var() / len(independent))
    assert abs(float(kl.mean() - independent.mean())) < 4 * standard_error


class NearOracleUNet(DDPMHubUNet2DModel):
    """The tiny U-Net's output, scaled down, added to the exact noise of a one-image data set {x*}: a good model.

    For the data set {x*}, eps(x_t, t) = (x_t - sqrt(alpha_bar_t) x*) / sqrt(1 - alpha_bar_t) is the ideal prediction.
    """

    def set_target(self, x_star: torch.Tensor, residual_scale: float) -> None:
        alpha_bar = np.cumprod(1 - np.linspace(1e-4, 0.02, TRAIN_STEPS))
        self.x_star, self.residual_scale, self.alpha_bar = x_star.float(), residual_scale, torch.tensor(alpha_bar)

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        residual = super().forward(sample, timestep, class_labels=class_labels).sample
        alpha_bar = self.alpha_bar[timestep.long()].float().reshape(-1, 1, 1, 1)
        ideal = (sample - alpha_bar.sqrt() * self.x_star) / (1 - alpha_bar).sqrt()
        return type(super().forward(sample, timestep, class_labels))(sample=ideal + self.residual_scale * residual)


def test_the_kl_form_has_the_smaller_spread_for_a_good_model():
    """The KL form computes each term's expectation over x_{t-1} exactly; the trajectory form samples it. For a model
    whose rate is small (well under 1 nat/dim), that sampling noise dominates the spread."""
    x_star = digits(1)
    torch.manual_seed(0)
    unet = NearOracleUNet(**{**UNET_PRESETS["tiny"], "sample_size": SIZE})
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    unet.set_target(x_star, residual_scale=0.1)
    pipe = make_pipeline(unet.eval())
    estimates = pipe.elbo_estimates(
        x_star[0], num_draws=32, class_labels=3, generator=torch.Generator().manual_seed(0)
    )
    kl, trajectory = estimates.kl_form, estimates.trajectory_form
    standard_error = math.sqrt(kl.var() / len(kl) + trajectory.var() / len(trajectory))
    assert abs(float(kl.mean() - trajectory.mean())) < 4 * standard_error
    print(f"spreads: KL form {float(kl.std()):.2e}, trajectory form {float(trajectory.std()):.2e}")
    assert kl.std() < trajectory.std() / 2


def test_elbo_estimates_rejects_bad_input(pipeline):
    with pytest.raises(ValueError, match="num_draws"):
        pipeline.elbo_estimates(digits(1)[0], num_draws=1)
    with pytest.raises(ValueError, match="one image"):
        pipeline.elbo_estimates(digits(2), num_draws=4)


# ----------------------------------------------------------------------------------------------------------------
# python -m ddpm_hub.evaluation --nll, and the model card
# ----------------------------------------------------------------------------------------------------------------


def test_held_out_digits_go_round_robin_over_the_classes():
    from ddpm_hub.evaluation import held_out_digits

    images, labels = held_out_digits(23)
    assert images.shape == (23, 1, 28, 28) and labels.tolist() == [k % 10 for k in range(23)]
    with pytest.raises(ValueError, match="nll_images"):
        held_out_digits(0)


def test_evaluate_nll_reports_the_bound_and_its_split():
    from ddpm_hub.evaluation import NLL_BLOCKS, evaluate_nll, format_nll_report

    pipe = make_pipeline(tiny_unet(sample_size=28))
    result = evaluate_nll(pipe, num_images=3, batch_size=2)  # two batches
    parts = result["rate_bits_per_dim"] + result["distortion_bits_per_dim"] + result["prior_bits_per_dim"]
    assert result["nll_bits_per_dim"] == pytest.approx(parts, rel=1e-12)
    assert sum(result["rate_by_timesteps"].values()) == pytest.approx(result["rate_bits_per_dim"], rel=1e-12)
    assert len(result["rate_by_timesteps"]) == NLL_BLOCKS and result["num_images"] == 3
    labelled = evaluate_nll(pipe, num_images=3, condition="label")
    assert labelled["nll_bits_per_dim"] != pytest.approx(result["nll_bits_per_dim"], rel=1e-6)
    assert "variational bound on -log p(x_0)" in format_nll_report(result)
    with pytest.raises(ValueError, match="condition"):
        evaluate_nll(pipe, num_images=1, condition="digit")


def test_the_model_card_shows_the_bound():
    from ddpm_hub.hub import _card_evaluation

    run = {"nll_bits_per_dim": 1.25, "rate_bits_per_dim": 1.0, "distortion_bits_per_dim": 0.25, "wall_seconds": 3}
    card = _card_evaluation({"nll-null-64images": run})
    assert card == {"nll-null-64images": {key: run[key] for key in run if key != "wall_seconds"}}


def test_vb_terms_are_per_sample_for_any_data_shape():
    """(B, D) vectors and the same data as (B, D, 1, 1) images give the same per-sample terms: no row mixes."""
    from ddpm_hub.schedulers.likelihood import mean_bits

    scheduler = DDPMHubScheduler(num_train_timesteps=10, clip_sample=False)
    generator = torch.Generator().manual_seed(0)
    x_0 = torch.rand(3, 4, generator=generator, dtype=torch.float64) * 2 - 1
    x_t = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    model_output = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    t = torch.tensor([0, 4, 9])
    flat = scheduler.vb_terms_bpd(model_output, x_0, x_t, t)
    image = scheduler.vb_terms_bpd(model_output[..., None, None], x_0[..., None, None], x_t[..., None, None], t)
    assert flat.shape == (3,)
    torch.testing.assert_close(flat, image)
    row = scheduler.vb_terms_bpd(model_output[1:2], x_0[1:2], x_t[1:2], t[1:2])
    torch.testing.assert_close(flat[1:2], row)  # each row's term depends on that row alone
    assert mean_bits(torch.ones(2, 5)).tolist() == pytest.approx([1 / math.log(2)] * 2)


# ----------------------------------------------------------------------------------------------------------------
# The posterior at one t, with its numbers (`posterior_at_t`)
# ----------------------------------------------------------------------------------------------------------------


def test_kl_parts_sum_to_the_kl_and_are_written_as_the_notes_write_them():
    generator = torch.Generator().manual_seed(1)
    mean_1, mean_2 = torch.randn(2, 500, generator=generator, dtype=torch.float64)
    logvar_1, logvar_2 = torch.randn(2, 500, generator=generator, dtype=torch.float64) * 3
    mean_part = DDPMHubScheduler.gaussian_kl_mean_part(mean_1, mean_2, logvar_2)
    variance_part = DDPMHubScheduler.gaussian_kl_variance_part(logvar_1, logvar_2)
    torch.testing.assert_close(mean_part, (mean_1 - mean_2) ** 2 / (2 * logvar_2.exp()), rtol=1e-13, atol=0)
    ratio = (logvar_1 - logvar_2).exp()  # sigma_1^2 / sigma_2^2
    torch.testing.assert_close(variance_part, (ratio - 1 - ratio.log()) / 2, rtol=1e-10, atol=1e-14)
    full = DDPMHubScheduler.gaussian_kl(mean_1, logvar_1, mean_2, logvar_2)
    torch.testing.assert_close(mean_part + variance_part, full, rtol=1e-14, atol=0)
    assert (variance_part >= 0).all() and DDPMHubScheduler.gaussian_kl_variance_part(logvar_1, logvar_1).eq(0).all()


def test_mean_coefficients_are_the_notes_coefficients():
    scheduler = DDPMHubScheduler(num_train_timesteps=TRAIN_STEPS)
    betas = scheduler.betas_float64.numpy()
    alpha_bar = np.cumprod(1 - betas)
    for t in (1, 7, TRAIN_STEPS - 1):
        c = scheduler.mean_coefficients(t)
        alpha = 1 - betas[t]
        assert c["posterior_x0"] == pytest.approx(
            math.sqrt(alpha_bar[t - 1]) * betas[t] / (1 - alpha_bar[t]), rel=1e-12
        )
        assert c["posterior_xt"] == pytest.approx(
            math.sqrt(alpha) * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]), rel=1e-12
        )
        assert c["model_xt"] == pytest.approx(1 / math.sqrt(alpha), rel=1e-12)
        assert c["model_eps"] == pytest.approx(betas[t] / math.sqrt(1 - alpha_bar[t]) / math.sqrt(alpha), rel=1e-12)
    with pytest.raises(ValueError, match=r"`t`=24.*\[0, 24\)"):
        scheduler.mean_coefficients(TRAIN_STEPS)


@pytest.mark.parametrize("t", [1, 5, TRAIN_STEPS - 1])
def test_posterior_at_t_mean_part_two_ways_and_the_kl_decomposition(pipeline, t):
    images = digits(2)
    out = pipeline.posterior_at_t(images, t, class_labels=[3, 4], generator=torch.Generator().manual_seed(5))
    scheduler = pipeline.scheduler
    x_0, x_t = out.original_sample, out.sample
    # x_t is the bound's draw: the same seed gives bound_steps' x_t and eps_hat
    (step,) = pipeline.bound_steps(images, [3, 4], generator=torch.Generator().manual_seed(5), timesteps=[t])
    torch.testing.assert_close(x_t.float(), step.sample, rtol=0, atol=0)
    torch.testing.assert_close(out.noise_pred.float(), step.noise_pred, rtol=0, atol=0)
    # the two means from their coefficients
    c = out.coefficients
    torch.testing.assert_close(
        out.posterior_mean, c["posterior_x0"] * x_0 + c["posterior_xt"] * x_t, rtol=1e-12, atol=1e-14
    )
    torch.testing.assert_close(
        out.model_mean, c["model_xt"] * x_t - c["model_eps"] * out.noise_pred, rtol=1e-12, atol=1e-14
    )
    assert out.posterior_variance == pytest.approx(float(scheduler.posterior_variance(t, dtype=torch.float64)), rel=0)
    for variance, kl in out.terms.items():
        sigma2 = float(scheduler.fixed_variance(t, variance, dtype=torch.float64))
        assert kl.model_variance == sigma2
        # ||mu_tilde - mu_theta||^2 / (2 sigma^2) and w(t) ||eps - eps_hat||^2: one number. The means nearly cancel
        # (mu_tilde - mu_theta is ~1e-3 of either), which costs float64 a few digits; float32 would miss by ~1e-3.
        direct = (out.mean_difference**2).flatten(1).mean(1) / (2 * sigma2)
        torch.testing.assert_close(kl.mean_part, direct, rtol=1e-13, atol=0)
        torch.testing.assert_close(kl.mean_part, kl.weighted_noise_error, rtol=1e-9, atol=0)
        # L_t = mean part + (beta_tilde / sigma^2 - 1 + log(sigma^2 / beta_tilde)) / 2 per dimension
        ratio = out.posterior_variance / sigma2
        assert kl.variance_part == pytest.approx((ratio - 1 - math.log(ratio)) / 2, rel=1e-9, abs=1e-15)
        torch.testing.assert_close(kl.kl, kl.mean_part + kl.variance_part, rtol=1e-12, atol=0)
        torch.testing.assert_close(kl.kl_bpd, kl.kl / math.log(2), rtol=1e-14, atol=0)
    assert out.terms["beta_tilde"].variance_part == 0 and out.terms["beta"].variance_part > 0
    # beta_tilde <= beta: the mean part weighs more with the smaller variance
    assert (out.terms["beta_tilde"].mean_part > out.terms["beta"].mean_part).all()


def test_posterior_at_t_kl_is_the_bounds_term_when_nothing_is_clipped():
    pipe = make_pipeline(clip_sample=False, variance_type="fixed_large")
    out = pipe.posterior_at_t(digits(2), 6, generator=torch.Generator().manual_seed(0))
    # vb_terms_bpd puts log beta_tilde on q's side and log beta on p's: the "beta" row, in bits. Its mean goes
    # through x_0 (mu_tilde at x0_hat), ours through eps_hat (Eq. 11): equal in exact arithmetic, apart by float64
    # cancellation.
    torch.testing.assert_close(out.vb_bpd, out.terms["beta"].kl_bpd, rtol=1e-6, atol=0)
    assert not torch.allclose(out.vb_bpd, out.terms["beta_tilde"].kl_bpd, rtol=1e-3)


@pytest.mark.parametrize("t", [0, TRAIN_STEPS, 2.0, True])
def test_posterior_at_t_rejects_t_outside_the_kl_terms(pipeline, t):
    with pytest.raises(ValueError, match=rf"`t`={t!r}.*\[1, {TRAIN_STEPS - 1}\]"):
        pipeline.posterior_at_t(digits(1), t)
