from .mlp import DDPMHubMLP, DDPMHubMLPOutput
from .unet import UNET_PRESETS, DDPMHubUNet2DModel, DDPMHubUNet2DOutput

__all__ = ["UNET_PRESETS", "DDPMHubMLP", "DDPMHubMLPOutput", "DDPMHubUNet2DModel", "DDPMHubUNet2DOutput"]
