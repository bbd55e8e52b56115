from .scheduling_ddim import DDIMHubScheduler
from .scheduling_ddpm import DDPMHubScheduler, DDPMHubSchedulerOutput

__all__ = ["DDIMHubScheduler", "DDPMHubScheduler", "DDPMHubSchedulerOutput"]
