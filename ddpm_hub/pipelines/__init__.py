from .pipeline_ddpm import DDPMHubPipeline, DenoisingStep, NoisingStep

__all__ = ["DDPMHubPipeline", "DenoisingStep", "NoisingStep"]
