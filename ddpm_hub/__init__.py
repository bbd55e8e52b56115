"""ddpm-hub: a readable DDPM / DDIM scheduler, U-Net and pipeline on diffusers' interfaces.

The public names are imported on first use, so that `ddpm_hub.hub` and the `ddpm-hub-push` command start without
loading torch and diffusers.
"""

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "UNET_PRESETS": ".models.unet",
    "DDPMHubUNet2DModel": ".models.unet",
    "DDPMHubUNet2DOutput": ".models.unet",
    "DDPMHubMLP": ".models.mlp",
    "DDPMHubMLPOutput": ".models.mlp",
    "MIXTURE_PRESETS": ".mixture",
    "LangevinLevel": ".mixture",
    "annealed_langevin": ".mixture",
    "GaussianMixture": ".mixture",
    "MixtureDenoiser": ".mixture",
    "MixtureDenoiserOutput": ".mixture",
    "BitsPerDimOutput": ".pipelines.bound",
    "BoundStep": ".pipelines.bound",
    "ChainModelInput": ".pipelines.chain",
    "DDPMHubPipeline": ".pipelines.pipeline_ddpm",
    "DenoisingChain": ".pipelines.chain",
    "ElboEstimates": ".pipelines.bound",
    "DenoisingStep": ".pipelines.chain",
    "NoisingStep": ".pipelines.chain",
    "GuidanceParts": ".pipelines.chain",
    "PosteriorAtT": ".pipelines.bound",
    "PosteriorKL": ".pipelines.bound",
    "DDIMHubScheduler": ".schedulers.scheduling_ddim",
    "DDPMHubScheduler": ".schedulers.scheduling_ddpm",
    "DDPMHubSchedulerOutput": ".schedulers.scheduling_ddpm",
}
__all__ = [
    "MIXTURE_PRESETS",
    "UNET_PRESETS",
    "BitsPerDimOutput",
    "BoundStep",
    "ChainModelInput",
    "DDIMHubScheduler",
    "DDPMHubMLP",
    "DDPMHubMLPOutput",
    "DDPMHubPipeline",
    "DDPMHubScheduler",
    "DDPMHubSchedulerOutput",
    "DDPMHubUNet2DModel",
    "DDPMHubUNet2DOutput",
    "DenoisingChain",
    "DenoisingStep",
    "ElboEstimates",
    "GaussianMixture",
    "GuidanceParts",
    "LangevinLevel",
    "MixtureDenoiser",
    "MixtureDenoiserOutput",
    "NoisingStep",
    "PosteriorAtT",
    "PosteriorKL",
    "annealed_langevin",
]

if TYPE_CHECKING:
    from .mixture import (
        MIXTURE_PRESETS,
        GaussianMixture,
        LangevinLevel,
        MixtureDenoiser,
        MixtureDenoiserOutput,
        annealed_langevin,
    )
    from .models.mlp import DDPMHubMLP, DDPMHubMLPOutput
    from .models.unet import UNET_PRESETS, DDPMHubUNet2DModel, DDPMHubUNet2DOutput
    from .pipelines.bound import BitsPerDimOutput, BoundStep, ElboEstimates, PosteriorAtT, PosteriorKL
    from .pipelines.chain import ChainModelInput, DenoisingChain, DenoisingStep, GuidanceParts, NoisingStep
    from .pipelines.pipeline_ddpm import DDPMHubPipeline
    from .schedulers.scheduling_ddim import DDIMHubScheduler
    from .schedulers.scheduling_ddpm import DDPMHubScheduler, DDPMHubSchedulerOutput


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
