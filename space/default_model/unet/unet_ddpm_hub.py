"""A small, readable U-Net for DDPM, built on diffusers' ``ModelMixin`` / ``ConfigMixin``.

This file is self-contained on purpose: it imports only the standard library, torch and diffusers. It is copied
verbatim into saved pipeline folders and loaded by diffusers as remote code (``trust_remote_code=True``), so it must
not import anything from ``ddpm_hub``.

The architecture is the DDPM U-Net (Ho et al., 2020) with two later refinements (Nichol & Dhariwal, 2021):
scale/shift ("FiLM") injection of the time embedding and multi-head attention.

    timestep t (B,) ──> sinusoid ──> MLP ──(+ class embedding)──> SiLU ──> temb (B, T), fed to every ResidualBlock

    sample (B, C_in, H, W)
      └─ conv_in ─> DownBlock 0 ─> DownBlock 1 ─> ... ─> MidBlock ─> ... ─> UpBlock 1 ─> UpBlock 0 ─> norm, SiLU, conv
             │  every down-path activation is kept and concatenated into the matching up-path block  ▲
             └───────────────────────────────────────────────────────────────────────────────────────┘

Each level halves the resolution (28 -> 14 -> 7 for MNIST with three levels). The model predicts the noise
epsilon, so its output has the shape of its input: (B, C_out, H, W).
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


@dataclass
class DDPMHubUNet2DOutput(BaseOutput):
    """Output of :class:`DDPMHubUNet2DModel`.

    Args:
        sample: (B, out_channels, H, W) the model's prediction (the noise epsilon, for DDPM training).
    """

    sample: torch.Tensor


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------------


def _is_compiling() -> bool:
    """True while torch.compile traces the model (``torch.compiler.is_compiling``; always False on torch < 2.3)."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling is not None and is_compiling())


def batch_timesteps(timestep: torch.Tensor | float | int, batch: int, device: torch.device) -> torch.Tensor:
    """Python number, 0-d, (1,) or (B,) tensor -> (B,) tensor on ``device`` (the models' ``timestep`` argument)."""
    if not torch.is_tensor(timestep):
        return torch.full((batch,), float(timestep), device=device)
    timestep = timestep.to(device)  # a no-op when already there
    if timestep.numel() == 1 and timestep.ndim <= 1:
        return timestep.reshape(1).expand(batch)
    if timestep.shape != (batch,):
        raise ValueError(
            f"timestep must be a number, a 0-d tensor or a ({batch},) tensor; got shape {tuple(timestep.shape)}."
        )
    return timestep


def check_class_labels(
    class_labels: torch.Tensor | None, num_classes: int | None, batch: int, device: torch.device
) -> torch.Tensor | None:
    """Validate ``class_labels`` for a model with ``num_class_embeds=num_classes`` and return a (B,) long tensor, or
    None for an unconditional model (``num_classes`` None). No labels on a conditional model: the null class."""
    if num_classes is None:
        if class_labels is not None:
            raise ValueError("class_labels were given but the model is unconditional (num_class_embeds=None).")
        return None
    if class_labels is None:  # no labels: unconditional prediction through the null class
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    labels = torch.as_tensor(class_labels, device=device)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"class_labels must be an integer tensor; got dtype {labels.dtype}.")
    if labels.shape != (batch,):
        raise ValueError(f"class_labels must have shape ({batch},) to match the batch; got {tuple(labels.shape)}.")
    # The one host sync of the forward pass (free on CPU): an out-of-range index would otherwise be an opaque
    # IndexError on CPU, or a device-side assert that kills the CUDA context. Skipped inside torch.compile,
    # where it would split the graph in two (the pipeline has validated its labels already).
    if not _is_compiling() and bool(((labels < 0) | (labels > num_classes)).any()):
        raise ValueError(
            f"class_labels must be in [0, num_class_embeds={num_classes}] ({num_classes} = null class); "
            f"got min {int(labels.min())}, max {int(labels.max())}."
        )
    return labels.long()


def zero_init(module: nn.Module) -> nn.Module:
    """Set all parameters of ``module`` to zero and return it.

    Used on the last layer of every residual branch and on the output conv: at initialisation each block is then the
    identity and the model outputs 0, which keeps early training stable (a standard DDPM trick).
    """
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SinusoidalTimestepEmbedding(nn.Module):
    """Fixed sinusoidal features of the timestep, as the Transformer's positional encoding: (B,) -> (B, dim)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        self.dim = dim
        self.max_period = max_period
        # Non-persistent: a constant, so it is built once here, never saved, and never re-allocated per call.
        self.register_buffer("freqs", self._frequencies(), persistent=False)

    def _frequencies(self, device: torch.device | None = None) -> torch.Tensor:
        half = self.dim // 2
        exponents = torch.arange(half, dtype=torch.float32, device=device) / half
        return torch.exp(-math.log(self.max_period) * exponents)  # (dim/2,) from 1 down to ~1/max_period

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        freqs = self.freqs
        if freqs.dtype != torch.float32:
            # The model was cast with .half() / .to(torch.bfloat16): 8-bit mantissas would scramble t * freq for
            # t ~ 1000, so recompute the (tiny) table in float32.
            freqs = self._frequencies(device=freqs.device)
        args = timestep.float()[:, None] * freqs[None, :]  # (B, dim/2), float32 even under autocast
        emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (B, 2 * (dim/2))
        return F.pad(emb, (0, self.dim % 2))  # (B, dim): one zero column when dim is odd


class ResidualBlock(nn.Module):
    """GroupNorm -> SiLU -> conv -> (inject time) -> GroupNorm -> SiLU -> dropout -> conv, plus a skip connection.

    x (B, C_in, H, W), temb (B, T) -> (B, C_out, H, W).

    ``temb`` arrives already passed through SiLU (once, in the model's forward), so each block only needs a Linear.
    With ``scale_shift=True`` the time embedding modulates the normalised activations, h * (1 + scale) + shift
    (FiLM, as in improved DDPM); otherwise it is added before the second norm (original DDPM).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        norm_num_groups: int,
        dropout: float = 0.0,
        scale_shift: bool = True,
    ):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = nn.GroupNorm(norm_num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_proj = nn.Linear(temb_channels, 2 * out_channels if scale_shift else out_channels)
        self.norm2 = nn.GroupNorm(norm_num_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1))
        # A 1x1 conv only when the channel count changes; otherwise the skip is the identity.
        self.skip = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        t = self.time_proj(temb)[:, :, None, None]  # (B, 2*C_out or C_out, 1, 1): broadcast over H, W
        if self.scale_shift:
            scale, shift = t.chunk(2, dim=1)  # 2 x (B, C_out, 1, 1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(self.dropout(F.silu(h)))  # (B, C_out, H, W)
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention between all H*W pixels, with a residual connection: (B, C, H, W) -> (B, C, H, W).

    Only used at low resolutions (e.g. 7x7 = 49 tokens), where global context is cheap.
    """

    def __init__(self, channels: int, head_dim: int, norm_num_groups: int):
        super().__init__()
        self.num_heads = channels // head_dim
        self.norm = nn.GroupNorm(norm_num_groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C): one token per pixel
        qkv = self.qkv(h).view(B, H * W, 3, self.num_heads, C // self.num_heads)  # (B, HW, 3, heads, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, heads, HW, d)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        h = self.proj(h.transpose(1, 2).reshape(B, H * W, C))  # (B, HW, C)
        return x + h.transpose(1, 2).reshape(B, C, H, W)


class Downsample(nn.Module):
    """Stride-2 3x3 conv: (B, C, H, W) -> (B, C, H/2, W/2). Learned, unlike pooling."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv: (B, C, H, W) -> (B, C, 2H, 2W). Avoids transposed-conv checkerboards."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


# ---------------------------------------------------------------------------------------------------------------------
# One resolution level of the encoder / decoder, and the bottleneck
# ---------------------------------------------------------------------------------------------------------------------


class DownBlock(nn.Module):
    """``num_layers`` x (ResidualBlock [+ SelfAttention]), then an optional Downsample.

    x (B, C_in, H, W) -> (B, C_out, H/2, W/2) (H, W at the last level), plus the list of every intermediate activation,
    which the decoder consumes as skip connections.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        num_layers: int,
        use_attention: bool,
        add_downsample: bool,
        attention_head_dim: int,
        norm_num_groups: int,
        dropout: float,
        scale_shift: bool,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResidualBlock(
                in_channels if i == 0 else out_channels,
                out_channels,
                temb_channels,
                norm_num_groups,
                dropout,
                scale_shift,
            )
            for i in range(num_layers)
        )
        self.attentions = nn.ModuleList(
            SelfAttention(out_channels, attention_head_dim, norm_num_groups) if use_attention else nn.Identity()
            for _ in range(num_layers)
        )
        self.downsample = Downsample(out_channels) if add_downsample else nn.Identity()
        self.add_downsample = add_downsample

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for resnet, attention in zip(self.resnets, self.attentions, strict=True):
            x = attention(resnet(x, temb))  # (B, C_out, H, W)
            skips.append(x)
        if self.add_downsample:
            x = self.downsample(x)  # (B, C_out, H/2, W/2)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """The bottleneck at the lowest resolution: ResidualBlock, [SelfAttention], ResidualBlock. (B, C, h, w) -> same."""

    def __init__(
        self,
        channels: int,
        temb_channels: int,
        use_attention: bool,
        attention_head_dim: int,
        norm_num_groups: int,
        dropout: float,
        scale_shift: bool,
    ):
        super().__init__()
        self.resnet1 = ResidualBlock(channels, channels, temb_channels, norm_num_groups, dropout, scale_shift)
        self.attention = (
            SelfAttention(channels, attention_head_dim, norm_num_groups) if use_attention else nn.Identity()
        )
        self.resnet2 = ResidualBlock(channels, channels, temb_channels, norm_num_groups, dropout, scale_shift)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.resnet2(self.attention(self.resnet1(x, temb)), temb)


class UpBlock(nn.Module):
    """One ResidualBlock [+ SelfAttention] per skip connection, each fed ``cat(x, skip)``, then an optional Upsample.

    x (B, C_in, H, W) and skips (popped from the end of the list) -> (B, C_out, 2H, 2W) (H, W at the top level).
    ``skip_channels`` lists the channels of the skips in the order they are popped.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        skip_channels: list[int],
        temb_channels: int,
        use_attention: bool,
        add_upsample: bool,
        attention_head_dim: int,
        norm_num_groups: int,
        dropout: float,
        scale_shift: bool,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(
            ResidualBlock(
                (in_channels if i == 0 else out_channels) + skip,
                out_channels,
                temb_channels,
                norm_num_groups,
                dropout,
                scale_shift,
            )
            for i, skip in enumerate(skip_channels)
        )
        self.attentions = nn.ModuleList(
            SelfAttention(out_channels, attention_head_dim, norm_num_groups) if use_attention else nn.Identity()
            for _ in skip_channels
        )
        self.upsample = Upsample(out_channels) if add_upsample else nn.Identity()

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor) -> torch.Tensor:
        for resnet, attention in zip(self.resnets, self.attentions, strict=True):
            x = torch.cat([x, skips.pop()], dim=1)  # (B, C + C_skip, H, W)
            x = attention(resnet(x, temb))  # (B, C_out, H, W)
        return self.upsample(x)  # (B, C_out, 2H, 2W), or unchanged at the top level


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_config(config: dict) -> None:
    """One ValueError for the first bad key, naming the key, its value and what is allowed (checked at entry, as
    diffusers' models do). Each rule runs only after the ones before it passed, so none divides by zero."""
    channels, groups, head_dim = config["block_out_channels"], config["norm_num_groups"], config["attention_head_dim"]
    attended = [c for c, a in zip(channels, config["attention_levels"], strict=False) if a]
    attended += [channels[-1]] if config["mid_attention"] and channels else []
    factor = 2 ** (len(channels) - 1)
    positive = (
        "sample_size",
        "in_channels",
        "out_channels",
        "layers_per_block",
        "attention_head_dim",
        "norm_num_groups",
    )
    rules = [
        *((key, lambda key=key: _positive_int(config[key]), "must be a positive int") for key in positive),
        ("block_out_channels", lambda: channels and all(map(_positive_int, channels)), "must be a non-empty tuple of "
         "positive ints"),
        ("block_out_channels", lambda: all(c % groups == 0 for c in channels), f"every entry must be divisible by "
         f"norm_num_groups={groups}"),
        ("attention_levels", lambda: len(config["attention_levels"]) == len(channels), f"must have one bool per "
         f"level, i.e. length len(block_out_channels)={len(channels)}"),
        ("attention_head_dim", lambda: all(c % head_dim == 0 for c in attended), f"must divide the channels of "
         f"every level with attention (here {attended})"),
        ("sample_size", lambda: config["sample_size"] % factor == 0, f"must be divisible by "
         f"2 ** (len(block_out_channels) - 1) = {factor}"),
        ("dropout", lambda: isinstance(config["dropout"], int | float) and 0 <= config["dropout"] < 1, "must be in "
         "[0, 1)"),
        ("time_embedding_injection", lambda: config["time_embedding_injection"] in ("scale_shift", "add"),
         "allowed values are 'scale_shift' and 'add'"),
        ("num_class_embeds", lambda: config["num_class_embeds"] is None or _positive_int(config["num_class_embeds"]),
         "must be None (unconditional) or a positive int"),
    ]  # fmt: skip
    for key, ok, allowed in rules:
        if not ok():
            raise ValueError(f"Invalid UNet config: {key}={config[key]!r}; {allowed}.")


# ---------------------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------------------


class DDPMHubUNet2DModel(ModelMixin, ConfigMixin):
    """A U-Net that predicts the noise in ``sample`` at ``timestep``, optionally conditioned on a class label.

    Class conditioning supports classifier-free guidance: the embedding table has ``num_class_embeds + 1`` rows and
    the last one, index ``num_class_embeds``, is the "null" (unconditional) class.
    """

    @register_to_config
    def __init__(
        self,
        sample_size: int = 28,
        in_channels: int = 1,
        out_channels: int = 1,
        block_out_channels: tuple[int, ...] = (16, 32, 64),
        layers_per_block: int = 1,
        attention_levels: tuple[bool, ...] = (False, False, True),
        mid_attention: bool = True,
        attention_head_dim: int = 32,
        dropout: float = 0.0,
        norm_num_groups: int = 8,
        time_embedding_injection: Literal["scale_shift", "add"] = "scale_shift",
        num_class_embeds: int | None = None,
    ):
        """
        Args:
            sample_size: Height and width of the (square) input images. Must be divisible by
                ``2 ** (len(block_out_channels) - 1)``, since every level but the last halves the resolution.
            in_channels: Channels of the input images (1 for MNIST).
            out_channels: Channels of the output (the predicted noise, so usually ``in_channels``).
            block_out_channels: Channels at each resolution level, from the highest resolution to the lowest.
                ``(16, 32, 64)`` gives three levels: 28x28, 14x14, 7x7. Each must be divisible by ``norm_num_groups``.
            layers_per_block: Residual blocks per level in the encoder (the decoder has one more per level).
            attention_levels: One bool per level: whether its residual blocks are followed by self-attention.
            mid_attention: Whether the bottleneck has self-attention.
            attention_head_dim: Channels per attention head; the channels of every level with attention (and of the
                last level, if ``mid_attention``) must be divisible by it.
            dropout: Dropout probability inside the residual blocks, in [0, 1).
            norm_num_groups: Groups of every GroupNorm.
            time_embedding_injection: ``"scale_shift"`` (FiLM, improved DDPM) or ``"add"`` (original DDPM).
            num_class_embeds: Number of real classes for class conditioning (10 for MNIST), or ``None`` for an
                unconditional model. Labels ``0 .. num_class_embeds - 1`` are real classes and label
                ``num_class_embeds`` is the null class used for classifier-free guidance.
        """
        super().__init__()
        # JSON stores tuples as lists: normalise, so a reloaded model builds exactly the same layers.
        block_out_channels = tuple(block_out_channels)
        attention_levels = tuple(bool(a) for a in attention_levels)
        config = {name: value for name, value in locals().items() if name in self.config}  # the normalised tuples
        _check_config(config)
        num_levels = len(block_out_channels)
        block_kwargs = dict(
            attention_head_dim=attention_head_dim,
            norm_num_groups=norm_num_groups,
            dropout=dropout,
            scale_shift=time_embedding_injection == "scale_shift",
        )

        # Time (and class) embedding: (B,) -> (B, T). The class embedding is added to the time embedding.
        temb_channels = 4 * block_out_channels[0]
        self.time_sinusoid = SinusoidalTimestepEmbedding(block_out_channels[0])
        self.time_mlp = nn.Sequential(
            nn.Linear(block_out_channels[0], temb_channels), nn.SiLU(), nn.Linear(temb_channels, temb_channels)
        )
        self.class_embedding = (
            nn.Embedding(num_class_embeds + 1, temb_channels) if num_class_embeds is not None else None
        )  # the "+ 1" row is the null class

        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)

        # Encoder. skip_channels tracks every activation pushed for the decoder, in push order.
        skip_channels = [block_out_channels[0]]  # conv_in's output is the first skip
        self.down_blocks = nn.ModuleList()
        channels = block_out_channels[0]
        for level, level_channels in enumerate(block_out_channels):
            is_last = level == num_levels - 1
            self.down_blocks.append(
                DownBlock(
                    channels,
                    level_channels,
                    temb_channels,
                    num_layers=layers_per_block,
                    use_attention=attention_levels[level],
                    add_downsample=not is_last,
                    **block_kwargs,
                )
            )
            skip_channels += [level_channels] * (layers_per_block + (0 if is_last else 1))
            channels = level_channels

        self.mid_block = MidBlock(channels, temb_channels, use_attention=mid_attention, **block_kwargs)

        # Decoder: the mirror image, one extra block per level so every skip is consumed exactly once.
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(num_levels)):
            level_skips = [skip_channels.pop() for _ in range(layers_per_block + 1)]
            self.up_blocks.append(
                UpBlock(
                    channels,
                    block_out_channels[level],
                    level_skips,
                    temb_channels,
                    use_attention=attention_levels[level],
                    add_upsample=level > 0,
                    **block_kwargs,
                )
            )
            channels = block_out_channels[level]
        assert not skip_channels, "every skip connection must be consumed"

        self.norm_out = nn.GroupNorm(norm_num_groups, channels)
        self.conv_out = zero_init(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1))

    @classmethod
    def from_preset(cls, name: Literal["tiny", "small", "base"], **overrides) -> "DDPMHubUNet2DModel":
        """Build a randomly initialised model from ``UNET_PRESETS[name]``, with ``overrides`` on top."""
        if name not in UNET_PRESETS:
            raise ValueError(f"Unknown UNet preset {name!r}; allowed values are {sorted(UNET_PRESETS)}.")
        return cls(**{**UNET_PRESETS[name], **overrides})

    # -- input handling -----------------------------------------------------------------------------------------------

    def _check_sample(self, sample: torch.Tensor) -> None:
        cfg = self.config
        if not torch.is_tensor(sample) or sample.ndim != 4:
            got = tuple(sample.shape) if torch.is_tensor(sample) else type(sample).__name__
            raise ValueError(f"sample must be a 4-D tensor (B, in_channels, H, W); got {got}.")
        if sample.shape[1] != cfg.in_channels:
            raise ValueError(f"sample has {sample.shape[1]} channels but the model has in_channels={cfg.in_channels}.")
        if sample.shape[2] != cfg.sample_size or sample.shape[3] != cfg.sample_size:
            raise ValueError(
                f"sample is {sample.shape[2]}x{sample.shape[3]} but the model has "
                f"sample_size={cfg.sample_size} ({cfg.sample_size}x{cfg.sample_size})."
            )

    # -- the null class of classifier-free guidance -------------------------------------------------------------------

    def null_class_labels(self, like: torch.Tensor) -> torch.Tensor:
        """The null (unconditional) class, label ``num_class_embeds``, once per entry of ``like``: (B,) long on
        ``like``'s device. Training drops labels to it (:meth:`drop_class_labels`); guidance asks it for eps_uncond."""
        if self.config.num_class_embeds is None:
            raise ValueError("the model is unconditional (num_class_embeds=None): it has no null class.")
        return torch.full(like.shape[:1], self.config.num_class_embeds, dtype=torch.long, device=like.device)

    def drop_class_labels(
        self, class_labels: torch.Tensor, probability: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Label dropout (Ho & Salimans 2022): each label becomes the null class with ``probability``, so that one
        model learns both the conditional and the unconditional prediction. (B,) -> (B,) long, same device; the
        draw, ``torch.rand(B, generator=generator)``, is on the CPU so a seeded CPU generator fixes it anywhere."""
        if not 0 <= probability <= 1:
            raise ValueError(f"label dropout probability must be in [0, 1], got {probability!r}.")
        drop = torch.rand(class_labels.shape[0], generator=generator) < probability  # (B,) on the CPU
        return torch.where(drop.to(class_labels.device), self.null_class_labels(class_labels), class_labels.long())

    # -- forward ------------------------------------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> DDPMHubUNet2DOutput | tuple[torch.Tensor]:
        """Predict the noise in ``sample``.

        Args:
            sample: (B, in_channels, sample_size, sample_size) noisy images x_t.
            timestep: The diffusion step t: a number or 0-d tensor (same t for the whole batch), or a (B,) tensor.
            class_labels: (B,) integer tensor in [0, num_class_embeds], where ``num_class_embeds`` means "null class".
                ``None`` on a class-conditional model uses the null class for every sample. Must be ``None`` on an
                unconditional model.
            return_dict: Return a :class:`DDPMHubUNet2DOutput` (default) or a plain tuple ``(sample,)``.

        Returns:
            (B, out_channels, sample_size, sample_size) prediction, wrapped as described by ``return_dict``.
        """
        self._check_sample(sample)
        batch, device = sample.shape[0], sample.device

        # Embeddings: computed once here, then shared by every residual block.
        t = batch_timesteps(timestep, batch, device)  # (B,)
        temb = self.time_mlp(self.time_sinusoid(t))  # (B, T)
        labels = check_class_labels(class_labels, self.config.num_class_embeds, batch, device)  # (B,) or None
        if labels is not None:
            temb = temb + self.class_embedding(labels)  # (B, T)
        temb = F.silu(temb)  # applied once instead of in each block

        h = self.conv_in(sample)  # (B, C0, H, W)
        skips = [h]
        for block in self.down_blocks:
            h, block_skips = block(h, temb)  # resolution halves at every level but the last
            skips += block_skips
        h = self.mid_block(h, temb)  # (B, C_last, h, w)
        for block in self.up_blocks:
            h = block(h, skips, temb)  # consumes the skips in reverse order, doubling the resolution
        out = self.conv_out(F.silu(self.norm_out(h)))  # (B, out_channels, H, W)

        if not return_dict:
            return (out,)
        return DDPMHubUNet2DOutput(sample=out)


# ---------------------------------------------------------------------------------------------------------------------
# Presets: config overrides on top of the defaults above (all MNIST-shaped: 28x28, 1 channel, 10 classes)
# ---------------------------------------------------------------------------------------------------------------------


def _mnist_preset(
    block_out_channels: tuple[int, ...],
    layers_per_block: int,
    attention_levels: tuple[bool, ...],
    attention_head_dim: int,
    norm_num_groups: int,
    **more,
) -> dict:
    """One preset's config overrides: the widths and attention of its levels, 10 classes (+ the null class)."""
    return {
        "block_out_channels": block_out_channels,
        "layers_per_block": layers_per_block,
        "attention_levels": attention_levels,
        "attention_head_dim": attention_head_dim,
        "norm_num_groups": norm_num_groups,
        **more,
        "num_class_embeds": 10,
    }


UNET_PRESETS: dict[str, dict] = {
    # Unit tests and smoke tests: milliseconds per forward, same code paths as the bigger models.
    "tiny": _mnist_preset((8, 16, 16), 1, (False, False, True), attention_head_dim=8, norm_num_groups=4),
    # The Space's default model (~0.72M parameters, ~144 MFLOP per 28x28 image): sized by compute, not parameters,
    # so that a 1000-step chain of 8 digits runs in under 30 s on 2 CPU cores. Most FLOPs are spent at 28x28 and 14x14
    # (including the upsampling convs), so the early levels stay narrow.
    "small": _mnist_preset((16, 32, 64), 1, (False, False, True), attention_head_dim=32, norm_num_groups=8),
    # For training on a GPU.
    "base": _mnist_preset(
        (64, 128, 256), 2, (False, True, True), attention_head_dim=64, norm_num_groups=32, dropout=0.1
    ),
}
