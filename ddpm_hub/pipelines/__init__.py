from .pipeline_ddpm import ChainModelInput, DDPMHubPipeline, DenoisingChain, DenoisingStep, NoisingStep

__all__ = ["ChainModelInput", "DDPMHubPipeline", "DenoisingChain", "DenoisingStep", "NoisingStep"]
