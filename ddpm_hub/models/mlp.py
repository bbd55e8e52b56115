"""A small noise predictor for low-dimensional data (2-D point clouds), on diffusers' ``ModelMixin`` / ``ConfigMixin``.

The same contract as the U-Net (``forward(sample, timestep, class_labels=None, return_dict=True)`` -> ``.sample``,
``save_pretrained`` / ``from_pretrained`` with safetensors), for samples shaped (B, D) instead of (B, C, H, W):

    timestep t (B,) ──> sinusoid ──> MLP ──(+ class embedding)──> SiLU ──> temb (B, T), fed to every block

    sample (B, D) ─> Linear ─> ResidualMLPBlock x num_blocks ─> LayerNorm, SiLU, Linear ─> (B, D), the noise eps

Like ``unet.py`` this file imports only torch, diffusers and (relatively) ``unet.py``'s input checks, so it can be
copied into a saved pipeline folder and loaded there as remote code (diffusers copies relative imports along).
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from .unet import batch_timesteps, check_class_labels

TIME_EMBEDDING_INJECTIONS = ("scale_shift", "add")


@dataclass
class DDPMHubMLPOutput(BaseOutput):
    """Output of :class:`DDPMHubMLP`.

    Args:
        sample: (B, sample_dim), the model's prediction (the noise epsilon, for DDPM training).
    """

    sample: torch.Tensor


def timestep_embedding(timestep: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of the timestep, as the Transformer's positional encoding: (B,) -> (B, dim), float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timestep.device) / half)  # (dim/2,)
    args = timestep.float()[:, None] * freqs[None, :]  # (B, dim/2)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (B, 2 * (dim/2))
    return F.pad(emb, (0, dim % 2))  # (B, dim): one zero column when dim is odd


class ResidualMLPBlock(nn.Module):
    """LayerNorm -> (inject time) -> SiLU -> Linear -> SiLU -> dropout -> Linear, plus the identity skip.

    h (B, H), temb (B, T) -> (B, H). ``temb`` arrives already through SiLU. With ``scale_shift`` the time embedding
    modulates the normalised activations, h * (1 + scale) + shift (FiLM); otherwise it is added to them. The last
    Linear starts at zero, so a fresh block is the identity.
    """

    def __init__(self, hidden_dim: int, temb_dim: int, dropout: float = 0.0, scale_shift: bool = True):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm = nn.LayerNorm(hidden_dim)
        self.time_proj = nn.Linear(temb_dim, 2 * hidden_dim if scale_shift else hidden_dim)
        self.fc1 = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        t = self.time_proj(temb)  # (B, 2H or H)
        if self.scale_shift:
            scale, shift = t.chunk(2, dim=1)  # 2 x (B, H)
            x = self.norm(h) * (1 + scale) + shift
        else:
            x = self.norm(h) + t
        x = self.fc1(F.silu(x))  # (B, H)
        x = self.fc2(self.dropout(F.silu(x)))  # (B, H)
        return h + x


class DDPMHubMLP(ModelMixin, ConfigMixin):
    """A residual MLP that predicts the noise in ``sample`` (B, D) at ``timestep``, optionally class-conditional.

    Class conditioning follows the U-Net: the embedding table has ``num_class_embeds + 1`` rows and the last one,
    index ``num_class_embeds``, is the "null" (unconditional) class of classifier-free guidance.
    """

    @register_to_config
    def __init__(
        self,
        sample_dim: int = 2,
        hidden_dim: int = 128,
        num_blocks: int = 3,
        time_embed_dim: int = 64,
        dropout: float = 0.0,
        time_embedding_injection: Literal["scale_shift", "add"] = "scale_shift",
        num_class_embeds: int | None = None,
    ):
        """
        Args:
            sample_dim: D, the dimension of a sample (2 for points in the plane); input and output are (B, D).
            hidden_dim: H, the width of every residual block.
            num_blocks: how many residual blocks (>= 1).
            time_embed_dim: the size of the sinusoidal timestep features; the time MLP maps them to 4 x this.
            dropout: dropout probability inside the residual blocks, in [0, 1).
            time_embedding_injection: ``"scale_shift"`` (FiLM, improved DDPM) or ``"add"`` (original DDPM).
            num_class_embeds: number of real classes for class conditioning, or ``None`` for an unconditional model.
                Labels ``0 .. num_class_embeds - 1`` are real classes; label ``num_class_embeds`` is the null class.
        """
        super().__init__()
        self._validate_config(
            sample_dim=sample_dim,
            hidden_dim=hidden_dim,
            num_blocks=num_blocks,
            time_embed_dim=time_embed_dim,
            dropout=dropout,
            time_embedding_injection=time_embedding_injection,
            num_class_embeds=num_class_embeds,
        )
        temb_dim = 4 * time_embed_dim

        # Time (and class) embedding: (B,) -> (B, T). The class embedding is added to the time embedding.
        self.time_mlp = nn.Sequential(nn.Linear(time_embed_dim, temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.class_embedding = (
            nn.Embedding(num_class_embeds + 1, temb_dim) if num_class_embeds is not None else None
        )  # the "+ 1" row is the null class

        self.proj_in = nn.Linear(sample_dim, hidden_dim)
        self.blocks = nn.ModuleList(
            ResidualMLPBlock(hidden_dim, temb_dim, dropout, scale_shift=time_embedding_injection == "scale_shift")
            for _ in range(num_blocks)
        )
        self.norm_out = nn.LayerNorm(hidden_dim)
        self.proj_out = nn.Linear(hidden_dim, sample_dim)
        nn.init.zeros_(self.proj_out.weight)  # a fresh model predicts eps = 0, which keeps early training stable
        nn.init.zeros_(self.proj_out.bias)

    @staticmethod
    def _validate_config(**config) -> None:
        """Raise a ValueError naming the offending key and what is allowed."""

        def check(ok: bool, key: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"Invalid MLP config: {key}={config[key]!r}; {allowed}.")

        def is_pos_int(x) -> bool:
            return isinstance(x, int) and not isinstance(x, bool) and x > 0

        for key in ("sample_dim", "hidden_dim", "num_blocks", "time_embed_dim"):
            check(is_pos_int(config[key]), key, "must be a positive int")
        check(
            isinstance(config["dropout"], int | float) and 0.0 <= config["dropout"] < 1.0,
            "dropout",
            "must be in [0, 1)",
        )
        check(
            config["time_embedding_injection"] in TIME_EMBEDDING_INJECTIONS,
            "time_embedding_injection",
            "allowed values are " + " and ".join(repr(v) for v in TIME_EMBEDDING_INJECTIONS),
        )
        n = config["num_class_embeds"]
        check(n is None or is_pos_int(n), "num_class_embeds", "must be None (unconditional) or a positive int")

    # -- input handling -----------------------------------------------------------------------------------------------

    def _check_sample(self, sample: torch.Tensor) -> None:
        dim = self.config.sample_dim
        if not torch.is_tensor(sample) or sample.ndim != 2 or sample.shape[1] != dim:
            got = tuple(sample.shape) if torch.is_tensor(sample) else type(sample).__name__
            raise ValueError(f"sample must be a 2-D tensor (B, sample_dim={dim}); got {got}.")

    # -- forward ------------------------------------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DDPMHubMLPOutput | tuple[torch.Tensor]:
        """Predict the noise in ``sample``.

        Args:
            sample: (B, sample_dim) noisy points x_t.
            timestep: the diffusion step t: a number or 0-d tensor (same t for the whole batch), or a (B,) tensor.
            class_labels: (B,) integer tensor in [0, num_class_embeds] (``num_class_embeds`` = null class), or None
                (the null class on a class-conditional model). Must be None on an unconditional model.
            return_dict: return a :class:`DDPMHubMLPOutput` (default) or a plain tuple ``(sample,)``.

        Returns:
            (B, sample_dim) prediction, wrapped as described by ``return_dict``.
        """
        self._check_sample(sample)
        batch, device = sample.shape[0], sample.device

        t = batch_timesteps(timestep, batch, device)  # (B,)
        if batch > 1 and bool((t == t[0]).all()):
            # One t for the whole batch (every sampler step): embed it once, (1, T), and let it broadcast over the
            # rows. Per-row, the time MLP and the blocks' time projections cost more than the rest of the network.
            t = t[:1]
        temb = self.time_mlp(timestep_embedding(t, self.config.time_embed_dim).to(sample.dtype))  # (B, T)
        labels = check_class_labels(class_labels, self.config.num_class_embeds, batch, device)  # (B,) or None
        if labels is not None:
            temb = temb + self.class_embedding(labels)  # (B, T)
        temb = F.silu(temb)  # applied once instead of in each block

        h = self.proj_in(sample)  # (B, H)
        for block in self.blocks:
            h = block(h, temb)  # (B, H)
        out = self.proj_out(F.silu(self.norm_out(h)))  # (B, D)

        if not return_dict:
            return (out,)
        return DDPMHubMLPOutput(sample=out)
