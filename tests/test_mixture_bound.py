"""The 2-D truth beside the model: the bound on points (Gaussian decoder) against the exact -log p(x_0), the exact
reverse variance of Gaussian data (the variance question), the pipeline on (B, D) points, and training an MLP on a
mixture with the recipe's loss.

The exact side is checked against independent computations: Monte-Carlo bounds from the pipeline against the
closed-form expected gap, the reverse variance against a Monte-Carlo regression of x_{t-1} on x_t, and the
trajectory-form bound against -log p(x_0) (equal draw by draw when the model's joint is q's).
"""

import math

import pytest
import torch

from ddpm_hub import DDIMHubScheduler, DDPMHubMLP, DDPMHubPipeline
from ddpm_hub.mixture import MIXTURE_PRESETS, GaussianMixture, MixtureDenoiser
from ddpm_hub.mixture_training import fit_steps, noise_error_by_t, points_scheduler
from ddpm_hub.training import diffusion_loss

VARIANCE_TYPES = {"beta": "fixed_large", "beta_tilde": "fixed_small"}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def oracle_pipeline(mix: GaussianMixture, variance: str = "beta") -> DDPMHubPipeline:
    scheduler = points_scheduler(variance_type=VARIANCE_TYPES[variance])
    return DDPMHubPipeline(MixtureDenoiser(mix, scheduler), scheduler)


def exact_bits_per_dim(mix: GaussianMixture, x_0: torch.Tensor) -> torch.Tensor:
    """-log p(x_0) in bits per dimension, (B,)."""
    return -mix.log_prob(x_0) / (mix.dim * math.log(2))


def monte_carlo_gap(mix: GaussianMixture, variance: str, n: int, seed: int = 0) -> tuple[float, float]:
    """The KL-form bound minus -log p(x_0), averaged over n draws of x_0 ~ mix: (mean, standard error), bits/dim."""
    generator = torch.Generator().manual_seed(seed)
    x_0 = mix.sample(n, generator=generator, dtype=torch.float64)
    bound = oracle_pipeline(mix, variance).bits_per_dim(x_0, generator=generator, batch_size=1 << 16).total
    gap = bound - exact_bits_per_dim(mix, x_0)
    return float(gap.mean()), float(gap.std() / math.sqrt(n))


# ---------------------------------------------------------------------------------------------------------------------
# The bound on points
# ---------------------------------------------------------------------------------------------------------------------


def test_trajectory_bound_is_exact_draw_by_draw_for_standard_normal_data_with_beta():
    """x_0 ~ N(0, I), sigma_t^2 = beta_t and the decoder N(mu, beta_1): the oracle's reverse chain has q's joint, so
    log q(x_{1:T} | x_0) / p(x_{0:T}) = -log p(x_0) on every trajectory, not only on average."""
    mix = GaussianMixture.preset("standard_normal")
    x_0 = mix.sample(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    pipe = oracle_pipeline(mix, "beta")
    for row in x_0:
        estimates = pipe.elbo_estimates(row, num_draws=4, generator=torch.Generator().manual_seed(2))
        exact = exact_bits_per_dim(mix, row[None])
        torch.testing.assert_close(estimates.trajectory_form, exact.expand(4), rtol=0, atol=1e-6)
        assert estimates.kl_form.std() > 0.1  # the KL form is exact only on average


@pytest.mark.parametrize("name", MIXTURE_PRESETS)
@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_bound_is_at_least_minus_log_p(name, variance):
    mix = GaussianMixture.preset(name)
    gap, standard_error = monte_carlo_gap(mix, variance, n=600)
    assert gap > -3.5 * standard_error, (gap, standard_error)


@pytest.mark.parametrize(("std", "variance"), [(1.0, "beta"), (1.0, "beta_tilde"), (0.02, "beta"), (0.01, "beta")])
def test_expected_gap_matches_the_monte_carlo_bound(std, variance):
    """The closed-form E[bound - (-log p)] against the pipeline's sampled bound, within 3.5 standard errors."""
    mix = GaussianMixture.gaussian(std)
    exact_gap = MixtureDenoiser(mix, points_scheduler()).expected_bound_gap(variance)
    gap, standard_error = monte_carlo_gap(mix, variance, n=800, seed=3)
    assert abs(gap - exact_gap) < 3.5 * standard_error, (gap, exact_gap, standard_error)


def test_bound_gap_extremes_of_the_variance_question():
    """s = 1: sigma^2 = beta closes the gap, beta_tilde does not. s -> 0 (a tight Gaussian): beta_tilde wins. In
    between the gap under beta rises as s shrinks, and beta_tilde's falls."""
    scheduler = points_scheduler()

    def gaps(std):
        oracle = MixtureDenoiser(GaussianMixture.gaussian(std), scheduler)
        return oracle.expected_bound_gap("beta"), oracle.expected_bound_gap("beta_tilde")

    beta_at_1, tilde_at_1 = gaps(1.0)
    assert abs(beta_at_1) < 1e-9 and tilde_at_1 > 0.1
    beta_tight, tilde_tight = gaps(0.005)
    assert tilde_tight < beta_tight
    stds = [0.01, 0.03, 0.1, 0.3, 1.0]
    beta_gaps, tilde_gaps = zip(*map(gaps, stds), strict=True)
    assert all(a > b for a, b in zip(beta_gaps, beta_gaps[1:], strict=False))
    assert all(a < b for a, b in zip(tilde_gaps, tilde_gaps[1:], strict=False))


def test_vb_terms_on_points_do_not_mix_rows():
    """The per-sample terms of (B, D) points are each row's own: a batch equals its rows one at a time."""
    mix = GaussianMixture.preset("two_blobs")
    scheduler = points_scheduler()
    oracle = MixtureDenoiser(mix, scheduler)
    g = torch.Generator().manual_seed(0)
    x_0 = mix.sample(6, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 0, 5, 100, 500, 999])
    x_t = scheduler.add_noise(x_0, torch.randn(x_0.shape, generator=g, dtype=torch.float64), t)
    output = oracle(x_t, t).sample
    batch = scheduler.vb_terms_bpd(output, x_0, x_t, t, decoder="gaussian")
    rows = torch.cat(
        [
            scheduler.vb_terms_bpd(output[i : i + 1], x_0[i : i + 1], x_t[i : i + 1], t[i : i + 1], decoder="gaussian")
            for i in range(6)
        ]
    )
    torch.testing.assert_close(batch, rows, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="decoder"):
        scheduler.vb_terms_bpd(output, x_0, x_t, t, decoder="laplace")


# ---------------------------------------------------------------------------------------------------------------------
# The exact reverse variance of Gaussian data
# ---------------------------------------------------------------------------------------------------------------------


def test_reverse_variance_extremes():
    scheduler = points_scheduler()
    steps = torch.arange(1000)
    beta, beta_tilde = scheduler._step_variances(steps, steps - 1, (1,))
    at_one = MixtureDenoiser(GaussianMixture.gaussian(1.0), scheduler).reverse_variance()
    torch.testing.assert_close(at_one, beta[:, None].expand(-1, 2), rtol=1e-12, atol=0)
    at_point = MixtureDenoiser(GaussianMixture.gaussian(1e-6), scheduler).reverse_variance()
    torch.testing.assert_close(at_point[1:], beta_tilde[1:, None].expand(-1, 2), rtol=1e-6, atol=0)
    between = MixtureDenoiser(GaussianMixture.gaussian(0.3), scheduler).reverse_variance()[:, 0]
    assert bool((between <= beta * (1 + 1e-12)).all() and (between >= beta_tilde).all())


def test_reverse_variance_matches_monte_carlo_regression():
    """Var[x_{t-1} | x_t] for N(0, s^2) data: the residual variance of x_{t-1} regressed on x_t over many draws."""
    std, scheduler = 0.3, points_scheduler()
    exact = MixtureDenoiser(GaussianMixture.gaussian(std, dim=1), scheduler).reverse_variance()
    g = torch.Generator().manual_seed(0)
    for t in (1, 20, 300):
        x_0 = std * torch.randn(200_000, 1, generator=g, dtype=torch.float64)
        x_prev = scheduler.add_noise(x_0, torch.randn(x_0.shape, generator=g, dtype=torch.float64), t - 1)
        x_t = scheduler.q_step(x_prev, t, torch.randn(x_0.shape, generator=g, dtype=torch.float64))
        slope = (x_prev * x_t).mean() / (x_t * x_t).mean()
        residual = (x_prev - slope * x_t).var()
        assert abs(float(residual) / float(exact[t, 0]) - 1) < 0.02


def test_reverse_variance_needs_one_component():
    with pytest.raises(ValueError, match="mixture"):
        MixtureDenoiser(GaussianMixture.preset("ring8"), points_scheduler()).reverse_variance()
    with pytest.raises(ValueError, match="variance"):
        MixtureDenoiser(GaussianMixture.gaussian(0.5), points_scheduler()).expected_bound_gap("large")
    with pytest.raises(ValueError, match="std"):
        GaussianMixture.gaussian(0.0)


# ---------------------------------------------------------------------------------------------------------------------
# The pipeline on points, and training
# ---------------------------------------------------------------------------------------------------------------------


def test_pipeline_generates_points_with_ddpm_and_ddim():
    mix = GaussianMixture.preset("two_blobs")
    pipe = oracle_pipeline(mix, "beta_tilde")
    points = pipe(
        batch_size=5, num_inference_steps=20, output_type="latent", generator=torch.Generator().manual_seed(0)
    ).images
    assert points.shape == (5, 2) and torch.isfinite(points).all()
    with pytest.raises(ValueError, match="latent"):
        pipe(batch_size=2, num_inference_steps=2, output_type="pil")
    latents = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    ddim = DDPMHubPipeline(pipe.unet, DDIMHubScheduler.from_config(pipe.scheduler.config))
    first = ddim(batch_size=4, num_inference_steps=10, latents=latents, output_type="latent").images
    again = ddim(batch_size=4, num_inference_steps=10, latents=latents, output_type="latent").images
    torch.testing.assert_close(first, again, rtol=0, atol=0)  # eta = 0: deterministic from x_T
    with pytest.raises(ValueError, match="latents"):
        ddim(batch_size=4, num_inference_steps=10, latents=torch.randn(4, 1, 28, 28), output_type="latent")


def test_fit_steps_trains_an_mlp_towards_the_oracle():
    mix = GaussianMixture.preset("two_blobs")
    scheduler = points_scheduler()
    oracle = MixtureDenoiser(mix, scheduler)
    torch.manual_seed(0)
    model = DDPMHubMLP(hidden_dim=64, num_blocks=2, time_embed_dim=32)
    timesteps = [10, 100, 400]
    before = noise_error_by_t(model, oracle, timesteps, 512, torch.Generator().manual_seed(5))
    steps = list(fit_steps(model, scheduler, mix, num_steps=400, batch_size=128, seed=1))
    after = noise_error_by_t(model, oracle, timesteps, 512, torch.Generator().manual_seed(5))
    assert [s.step for s in steps] == list(range(1, 401)) and not model.training
    assert sum(s.loss for s in steps[-50:]) < sum(s.loss for s in steps[:50])
    assert bool((after < before / 3).all()), (before, after)
    # the same arguments train the same model
    torch.manual_seed(0)
    twin = DDPMHubMLP(hidden_dim=64, num_blocks=2, time_embed_dim=32)
    [s.loss for s in fit_steps(twin, scheduler, mix, num_steps=400, batch_size=128, seed=1)]
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_diffusion_loss_on_points_is_the_mean_per_sample():
    mix = GaussianMixture.preset("ring8")
    scheduler = points_scheduler()
    model = DDPMHubMLP(hidden_dim=16, num_blocks=1, time_embed_dim=8)
    x_0 = mix.sample(8, generator=torch.Generator().manual_seed(0))
    step = diffusion_loss(model, scheduler, x_0, None, torch.Generator().manual_seed(1))
    assert step.per_sample.shape == (8,)
    torch.testing.assert_close(step.loss, step.per_sample.mean())


@pytest.mark.parametrize(
    ("arguments", "key"),
    [({"num_steps": 0}, "num_steps"), ({"batch_size": 1.5}, "batch_size"), ({"learning_rate": -1.0}, "learning_rate")],
)
def test_fit_steps_rejects_bad_arguments(arguments, key):
    mix = GaussianMixture.preset("ring8")
    with pytest.raises(ValueError, match=key):
        next(fit_steps(DDPMHubMLP(hidden_dim=8, num_blocks=1, time_embed_dim=4), points_scheduler(), mix, **arguments))
    with pytest.raises(ValueError, match="sample_dim"):
        next(
            fit_steps(DDPMHubMLP(sample_dim=3, hidden_dim=8, num_blocks=1, time_embed_dim=4), points_scheduler(), mix)
        )
