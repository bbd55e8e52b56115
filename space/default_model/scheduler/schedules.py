"""The schedules of `DDPMHubScheduler`: the config values that choose them, their checks, the betas, the timesteps.

beta_t comes from the keys of `diffusers.DDPMScheduler`: `beta_schedule` (`linear`, `scaled_linear`,
`squaredcos_cap_v2` alias `cosine`, `sigmoid`) with `beta_start` and `beta_end`, or explicit `trained_betas`,
optionally rescaled to (nearly) zero terminal SNR; the inference timesteps come from `timestep_spacing`. Also here:
`_extract`, with which every formula of the scheduler reads a schedule at t. Like the scheduler, this file imports
nothing from `ddpm_hub`: it travels with the scheduler's code into saved pipelines.
"""

import math

import numpy as np
import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
BETA_SCHEDULE_ALIASES = {"cosine": "squaredcos_cap_v2"}
VARIANCE_TYPES = (
    "fixed_small",
    "fixed_small_log",
    "fixed_large",
    "fixed_large_log",
    "learned",
    "learned_log",
    "learned_range",
)
TERMINAL_ALPHA_BAR = 2.0**-24  # alpha_bar_{T-1} of `rescale_betas_zero_snr`: SNR 6e-8, zero in all but name
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def _invalid(key: str, value, allowed: str) -> ValueError:
    return ValueError(f"Invalid `{key}`={value!r}: allowed values are {allowed}.")


def _extract(arr: torch.Tensor, t: int | torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Gathers `arr[t]` and reshapes it to broadcast against a tensor of `shape`.

    Args:
        arr: (N,) schedule values.
        t: an int, a 0-d tensor, or (B,) integer indices into `arr`.
        shape: the shape (B, C, H, W) of the tensor the result multiplies.

    Returns:
        (B, 1, 1, 1), or (1, 1, 1, 1) for a scalar `t`.
    """
    if not torch.is_tensor(t):
        t = torch.tensor(t, dtype=torch.long)
    values = arr[t.to(arr.device).long()].reshape(-1)  # (B,) or (1,)
    return values.reshape(values.shape[0], *([1] * (len(shape) - 1)))


def check_config(config) -> str:
    """Rejects every config value the scheduler would not handle, naming the key and the allowed values.

    Returns the canonical name of `beta_schedule` (`cosine` -> `squaredcos_cap_v2`); the scheduler stores it so
    that diffusers can read its config. Keys a scheduler does not have (DDIM has no `variance_type`) are skipped.
    """
    if not isinstance(config.num_train_timesteps, int) or config.num_train_timesteps < 1:
        raise _invalid("num_train_timesteps", config.num_train_timesteps, "integers >= 1")
    schedule = BETA_SCHEDULE_ALIASES.get(config.beta_schedule, config.beta_schedule)
    if config.trained_betas is None:
        if schedule not in BETA_SCHEDULES:
            raise _invalid("beta_schedule", config.beta_schedule, ", ".join(BETA_SCHEDULES + ("cosine",)))
        if schedule != "squaredcos_cap_v2" and not 0 < config.beta_start <= config.beta_end < 1:
            raise ValueError(
                f"Invalid `beta_start`={config.beta_start!r}, `beta_end`={config.beta_end!r}: "
                "allowed values satisfy 0 < beta_start <= beta_end < 1."
            )
    else:
        betas = np.asarray(config.trained_betas, dtype=np.float64)
        if betas.shape != (config.num_train_timesteps,) or not np.all((betas > 0) & (betas < 1)):
            raise _invalid(
                "trained_betas",
                f"<{betas.size} values>",
                f"{config.num_train_timesteps} values (num_train_timesteps) strictly between 0 and 1",
            )
    allowed = {
        "variance_type": VARIANCE_TYPES,
        "prediction_type": PREDICTION_TYPES,
        "timestep_spacing": TIMESTEP_SPACINGS,
    }
    for key, values in allowed.items():
        if key in config and config[key] not in values:
            raise _invalid(key, config[key], ", ".join(values))
    if config.clip_sample_range <= 0:
        raise _invalid("clip_sample_range", config.clip_sample_range, "numbers > 0")
    if not 0 < config.dynamic_thresholding_ratio <= 1:
        raise _invalid("dynamic_thresholding_ratio", config.dynamic_thresholding_ratio, "numbers in (0, 1]")
    if config.sample_max_value <= 0:
        raise _invalid("sample_max_value", config.sample_max_value, "numbers > 0")
    if not isinstance(config.steps_offset, int) or not 0 <= config.steps_offset < config.num_train_timesteps:
        raise _invalid("steps_offset", config.steps_offset, f"integers in [0, {config.num_train_timesteps})")
    return schedule


def betas_from_config(config) -> np.ndarray:
    """beta_t for t = 0 .. T-1, float64 (T,), of a config `check_config` passed (its canonical `beta_schedule`)."""
    steps = config.num_train_timesteps
    if config.trained_betas is not None:
        betas = np.asarray(config.trained_betas, dtype=np.float64)
    elif config.beta_schedule == "linear":
        betas = np.linspace(config.beta_start, config.beta_end, steps, dtype=np.float64)
    elif config.beta_schedule == "scaled_linear":
        betas = np.linspace(config.beta_start**0.5, config.beta_end**0.5, steps, dtype=np.float64) ** 2
    elif config.beta_schedule == "squaredcos_cap_v2":
        betas = _betas_for_alpha_bar(steps)
    else:  # "sigmoid", validated above
        betas = 1 / (1 + np.exp(-np.linspace(-6, 6, steps))) * (config.beta_end - config.beta_start)
        betas = betas + config.beta_start
    if config.rescale_betas_zero_snr:
        betas = _rescale_zero_terminal_snr(betas)

    return betas


def spaced_timesteps(config, num_inference_steps: int) -> np.ndarray:
    """The inference timesteps, int64 (num_inference_steps,) in descending order, picked from the T training steps
    by `timestep_spacing` (`leading`, `trailing`, `linspace`: Table 2 of Lin et al. 2023), as diffusers picks them."""
    steps = config.num_train_timesteps
    spacing = config.timestep_spacing
    if spacing == "linspace":
        timesteps = np.linspace(0, steps - 1, num_inference_steps).round()[::-1].copy().astype(np.int64)
    elif spacing == "leading":
        step_ratio = steps // num_inference_steps
        timesteps = (np.arange(0, num_inference_steps) * step_ratio).round()[::-1].copy().astype(np.int64)
        timesteps += config.steps_offset
        if timesteps[0] >= steps:
            raise ValueError(
                f"Invalid `steps_offset`={config.steps_offset} for num_inference_steps="
                f"{num_inference_steps}: the first timestep {timesteps[0]} must be < num_train_timesteps "
                f"({steps})."
            )
    else:  # "trailing"
        step_ratio = steps / num_inference_steps
        timesteps = np.round(np.arange(steps, 0, -step_ratio)).astype(np.int64) - 1
    return timesteps


def _betas_for_alpha_bar(num_train_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """Betas of the cosine schedule (Nichol & Dhariwal 2021, Eq. 17): alpha_bar(t) = cos^2((t/T + s)/(1 + s) pi/2)."""

    def alpha_bar(time: float) -> float:
        return math.cos((time + 0.008) / 1.008 * math.pi / 2) ** 2

    steps = np.arange(num_train_timesteps, dtype=np.float64)
    betas = [1 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps) for i in steps]
    return np.minimum(np.array(betas, dtype=np.float64), max_beta)


def _rescale_zero_terminal_snr(betas: np.ndarray, terminal_alpha_bar: float = TERMINAL_ALPHA_BAR) -> np.ndarray:
    """Maps sqrt(alpha_bar) affinely so that alpha_bar_0 is kept and alpha_bar_{T-1} = `terminal_alpha_bar`.

    Lin et al. 2023 (Algorithm 1) map sqrt(alpha_bar_{T-1}) to exactly 0; then beta_{T-1} = 1, and x_0 from eps,
    log beta_tilde and the ELBO weight are infinite at T - 1. Mapping it to sqrt(2^-24) instead (the terminal value
    diffusers' Euler scheduler uses) keeps every quantity finite. Because the map is affine with a positive slope,
    alpha_bar stays strictly decreasing and every beta stays in (0, 1); setting alpha_bar_{T-1} = 2^-24 *after* an
    exact-zero rescale would not (the rescaled alpha_bar_{T-4..T-2} are already below 2^-24 on the linear schedule).
    """
    sqrt_alpha_bar = np.sqrt(np.cumprod(1.0 - betas))
    first, last, floor = sqrt_alpha_bar[0], sqrt_alpha_bar[-1], math.sqrt(terminal_alpha_bar)
    if len(betas) == 1:
        return np.array([1.0 - terminal_alpha_bar])
    if first <= floor:
        raise ValueError(
            f"Invalid `rescale_betas_zero_snr`=True for these betas: alpha_bar_0 = {first**2:.3g} is already below "
            f"the terminal value; allowed are schedules with alpha_bar_0 > {terminal_alpha_bar:.3g}."
        )
    sqrt_alpha_bar = floor + (sqrt_alpha_bar - last) * (first - floor) / (first - last)
    alpha_bar = sqrt_alpha_bar**2
    alphas = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas
