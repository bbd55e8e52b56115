from .bound import BitsPerDimOutput, BoundStep, ElboEstimates, PosteriorAtT, PosteriorKL
from .chain import ChainModelInput, DenoisingChain, DenoisingStep, NoisingStep
from .pipeline_ddpm import DDPMHubPipeline

__all__ = [
    "BitsPerDimOutput",
    "BoundStep",
    "ChainModelInput",
    "DDPMHubPipeline",
    "DenoisingChain",
    "DenoisingStep",
    "ElboEstimates",
    "NoisingStep",
    "PosteriorAtT",
    "PosteriorKL",
]
