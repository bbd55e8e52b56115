"""TEMPORARY: a minimal `prepare_chain` / `unet_forward` (CONTRACTS.md, "pipe") until branch `pipe` lands.

Installed on DDPMHubPipeline only where the pipeline lacks them; delete this file once `pipe` is merged.
"""

import copy
import inspect
from dataclasses import dataclass

import torch

from ddpm_hub import DDPMHubPipeline, DenoisingStep


@dataclass
class ChainModelInput:
    sample: torch.Tensor
    timestep: torch.Tensor
    class_labels: torch.Tensor | None

    def __iter__(self):
        return iter((self.sample, self.timestep, self.class_labels))


class DenoisingChain:
    def __init__(self, pipe, batch_size=1, class_labels=None, guidance_scale=2.0, num_inference_steps=1000,
                 generator=None, eta=0.0, latents=None, timesteps=None, use_clipped_model_output=True,
                 scheduler=None):  # fmt: skip
        pipe._check_call(batch_size, guidance_scale, num_inference_steps, eta)
        self.pipe, self.generator, self.guidance_scale = pipe, generator, guidance_scale
        self.scheduler = scheduler if scheduler is not None else copy.deepcopy(pipe.scheduler)
        if timesteps is not None:
            self.scheduler.set_timesteps(timesteps=timesteps, device=pipe.device)
        else:
            self.scheduler.set_timesteps(num_inference_steps, device=pipe.device)
        self.timesteps = self.scheduler.timesteps.tolist()
        self.num_steps, self.step_index, self.batch_size = len(self.timesteps), 0, batch_size
        self.labels = pipe._class_labels(class_labels, batch_size)
        self.sample = pipe._initial_noise(batch_size, generator, latents)
        self.step_kwargs = {"generator": generator}
        parameters = inspect.signature(self.scheduler.step).parameters
        if "eta" in parameters:
            self.step_kwargs["eta"] = eta
        if "use_clipped_model_output" in parameters:
            self.step_kwargs["use_clipped_model_output"] = use_clipped_model_output

    @property
    def done(self):
        return self.step_index >= self.num_steps

    @property
    def guided(self):
        return self.labels is not None and self.guidance_scale not in (0, 1)

    def model_input(self):
        t = torch.full((self.batch_size,), self.timesteps[self.step_index], dtype=torch.long)
        labels = self.labels
        if labels is not None and self.guidance_scale == 0:
            labels = torch.full_like(labels, self.pipe.num_classes)
        if self.guided:
            null = torch.full_like(labels, self.pipe.num_classes)
            return ChainModelInput(torch.cat([self.sample] * 2), torch.cat([t, t]), torch.cat([labels, null]))
        return ChainModelInput(self.sample, t, labels)

    def step(self, model_output):
        if self.guided:
            conditional, unconditional = model_output.chunk(2)
            channels = self.sample.shape[1]
            guided = self.scheduler.classifier_free_guidance(
                conditional[:, :channels], unconditional[:, :channels], self.guidance_scale
            )
            model_output = torch.cat([guided, conditional[:, channels:]], dim=1)
        t = self.timesteps[self.step_index]
        out = self.scheduler.step(model_output, t, self.sample, **self.step_kwargs)
        step = DenoisingStep(
            step_index=self.step_index,
            num_steps=self.num_steps,
            timestep=t,
            prev_timestep=self.timesteps[self.step_index + 1] if self.step_index + 1 < self.num_steps else -1,
            sample=self.sample,
            noise_pred=out.pred_epsilon,
            pred_original_sample=out.pred_original_sample,
            mean=out.mean,
            std=out.std,
            prev_sample=out.prev_sample,
        )
        self.sample, self.step_index = out.prev_sample, self.step_index + 1
        return step


def install():
    if hasattr(DDPMHubPipeline, "prepare_chain"):
        return

    def prepare_chain(self, batch_size=1, **kwargs):
        if kwargs.get("scheduler") is not None:
            kwargs["scheduler"] = kwargs["scheduler"]
        return DenoisingChain(self, batch_size, **kwargs)

    @torch.inference_mode()
    def unet_forward(self, sample, timestep, class_labels):
        return self._unet(sample, timestep, class_labels)

    DDPMHubPipeline.prepare_chain = prepare_chain
    DDPMHubPipeline.unet_forward = unet_forward
