from .bound import BitsPerDimOutput, BoundStep, ElboEstimates, PosteriorAtT, PosteriorKL
from .chain import ChainModelInput, DenoisingChain, DenoisingStep, GuidanceParts, NoisingStep
from .pipeline_ddpm import DDPMHubPipeline

__all__ = [
    "BitsPerDimOutput",
    "BoundStep",
    "ChainModelInput",
    "DDPMHubPipeline",
    "DenoisingChain",
    "DenoisingStep",
    "ElboEstimates",
    "GuidanceParts",
    "NoisingStep",
    "PosteriorAtT",
    "PosteriorKL",
]
