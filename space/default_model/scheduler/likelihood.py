"""The likelihood helpers of the variational bound (as improved-diffusion's losses.py): the KL of two Gaussians,
the Gaussian log-density, the discretized Gaussian decoder of 8-bit images, and nats per element -> bits per dim.

Pure functions of tensors, no schedule: `DDPMHubScheduler` forms the bound's per-t terms with them (`prior_bpd`,
`vb_terms_bpd`, `trajectory_terms_bpd`). Arguments broadcast; shapes are (B, C, H, W) for images and (B, D) for
vectors alike. This file imports nothing from `ddpm_hub`: it travels with the scheduler's code into saved pipelines.
"""

import math

import torch

# half the width of one 8-bit pixel bin in [-1, 1]: 256 levels k / 127.5 - 1, spaced 2 / 255 apart
PIXEL_BIN_HALF_WIDTH = 1.0 / 255.0


def gaussian_kl(mean_1, logvar_1, mean_2, logvar_2) -> torch.Tensor:
    """KL(N(mean_1, sigma_1^2) || N(mean_2, sigma_2^2)) per element, in nats (the notes' KL of two Gaussians).

        KL = log(sigma_2 / sigma_1) + (sigma_1^2 + (mu_1 - mu_2)^2) / (2 sigma_2^2) - 1/2

    written with log-variances (log(sigma_2 / sigma_1) = (logvar_2 - logvar_1) / 2) so that tiny variances such
    as beta_tilde_1 ~ 1e-4 never underflow. It is the sum of its two parts, `gaussian_kl_variance_part` (the widths)
    and `gaussian_kl_mean_part` (the means). Arguments broadcast (tensors or numbers); the result has their shape.
    """
    tensor = next(x for x in (mean_1, logvar_1, mean_2, logvar_2) if torch.is_tensor(x))
    logvar_1, logvar_2 = (torch.as_tensor(v, dtype=tensor.dtype, device=tensor.device) for v in (logvar_1, logvar_2))
    return gaussian_kl_variance_part(logvar_1, logvar_2) + gaussian_kl_mean_part(mean_1, mean_2, logvar_2)


def gaussian_kl_mean_part(mean_1, mean_2, logvar_2) -> torch.Tensor:
    """The means' part of `gaussian_kl`: (mu_1 - mu_2)^2 / (2 sigma_2^2) per element, in nats.

    With two equal variances it is the whole KL; in the DDPM bound it is the part the model's mean controls,
    ||mu_tilde - mu_theta||^2 / (2 sigma_t^2) = w(t) ||eps - eps_theta||^2 (Ho et al. 2020, Eq. 8 and 12).
    """
    tensor = next(x for x in (mean_1, mean_2, logvar_2) if torch.is_tensor(x))
    logvar_2 = torch.as_tensor(logvar_2, dtype=tensor.dtype, device=tensor.device)
    return 0.5 * (mean_1 - mean_2) ** 2 * torch.exp(-logvar_2)


def gaussian_kl_variance_part(logvar_1, logvar_2) -> torch.Tensor:
    """The widths' part of `gaussian_kl`: (sigma_1^2 / sigma_2^2 - 1 + log(sigma_2^2 / sigma_1^2)) / 2 per element,
    in nats; 0 when the variances are equal, > 0 otherwise. Arguments are tensors (or broadcast against one)."""
    logvar_1, logvar_2 = torch.as_tensor(logvar_1), torch.as_tensor(logvar_2)
    return 0.5 * (logvar_2 - logvar_1) + (torch.exp(logvar_1 - logvar_2) - 1) / 2


def gaussian_log_likelihood(x, mean, logvar) -> torch.Tensor:
    """log N(x; mean, e^logvar) per element, in nats: -(log(2 pi) + logvar + (x - mean)^2 / e^logvar) / 2."""
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device)
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def quantize_to_pixel_bins(x_0: torch.Tensor) -> torch.Tensor:
    """Rounds images in [-1, 1] to the centres of the 256 bins of 8-bit pixels (k / 127.5 - 1), (B, C, H, W).

    The discretized decoder gives a probability to each bin; data read from 8-bit files is already on the grid.
    """
    return torch.round((x_0 + 1) / (2 * PIXEL_BIN_HALF_WIDTH)) * (2 * PIXEL_BIN_HALF_WIDTH) - 1


def discretized_gaussian_log_likelihood(
    x_0: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log p(x_0) per element, in nats, under the discretized Gaussian decoder of DDPM (Sec. 3.3, Eq. 13).

    Each 8-bit pixel value x in [-1, 1] owns the bin [x - 1/255, x + 1/255] of N(mean, e^(2 log_scale)); the
    edge bins reach out to -inf (x = -1) and +inf (x = 1), so the 256 probabilities sum to one. Computed with the
    exact normal CDF in log space (improved-diffusion uses a tanh approximation and clamps at 1e-12).

    Args:
        x_0: the image, on the 8-bit grid in [-1, 1] (see `quantize_to_pixel_bins`), (B, C, H, W).
        mean: the decoder's mean, mu_theta(x_1, 1), (B, C, H, W).
        log_scale: log sigma of the decoder, broadcasting against x_0.

    Returns:
        (B, C, H, W) log-probabilities, all <= 0.
    """
    if x_0.min() < -1 - 1e-3 or x_0.max() > 1 + 1e-3:
        raise ValueError(
            f"`x_0` must lie in [-1, 1] (8-bit pixels scaled), got [{float(x_0.min()):.3g}, {float(x_0.max()):.3g}]."
        )
    inv_scale = torch.exp(-log_scale)
    upper = (x_0 - mean + PIXEL_BIN_HALF_WIDTH) * inv_scale  # the bin's edges in standard units
    lower = (x_0 - mean - PIXEL_BIN_HALF_WIDTH) * inv_scale
    log_cdf_upper = torch.special.log_ndtr(upper)  # left edge bin: P(X <= x + 1/255)
    log_sf_lower = torch.special.log_ndtr(-lower)  # right edge bin: P(X >= x - 1/255)
    # Interior bins: Phi(b) - Phi(a) with (a, b) taken on the lower tail (reflected when the bin lies above the
    # mean), as log Phi(b) + log(1 - Phi(a) / Phi(b)): no cancellation far out in either tail.
    reflect = (upper + lower) > 0
    a = torch.where(reflect, -upper, lower)
    b = torch.where(reflect, -lower, upper)
    log_phi_b = torch.special.log_ndtr(b)
    log_bin = log_phi_b + torch.log(-torch.expm1(torch.special.log_ndtr(a) - log_phi_b))
    edge = 1 - PIXEL_BIN_HALF_WIDTH  # halfway between the first two (last two) levels
    return torch.where(x_0 < -edge, log_cdf_upper, torch.where(x_0 > edge, log_sf_lower, log_bin))


def mean_bits(values: torch.Tensor) -> torch.Tensor:
    """Per-element nats (B, ...) -> bits per dim (B,): the mean over every non-batch dim (C x H x W for images, D
    for (B, D) data), divided by ln 2."""
    return values.reshape(values.shape[0], -1).mean(dim=1) / math.log(2.0)
