"""ddpm-hub: a readable DDPM / DDIM scheduler, U-Net and pipeline on diffusers' interfaces."""

from .models.unet import UNET_PRESETS, DDPMHubUNet2DModel, DDPMHubUNet2DOutput
from .pipelines.pipeline_ddpm import DDPMHubPipeline, DenoisingStep, NoisingStep
from .schedulers.scheduling_ddim import DDIMHubScheduler
from .schedulers.scheduling_ddpm import DDPMHubScheduler, DDPMHubSchedulerOutput

__version__ = "0.1.0"

__all__ = [
    "UNET_PRESETS",
    "DDIMHubScheduler",
    "DDPMHubPipeline",
    "DDPMHubScheduler",
    "DDPMHubSchedulerOutput",
    "DDPMHubUNet2DModel",
    "DDPMHubUNet2DOutput",
    "DenoisingStep",
    "NoisingStep",
]
