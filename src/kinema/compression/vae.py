"""Kinema's video compression network: a causal 3D convolutional VAE over space and time.

Layout: video ``(B, 3, T, H, W)`` in [-1, 1]; latents ``(B, C, t, h, w)``.

Time is compressed causally by ``tc = config.time_compression``: latent ``j`` depends only on
frames ``0 .. tc*j``. Frame 0 is encoded alone, so an image is exactly a 1-frame video, and each
later latent covers ``tc`` frames::

    T = 1 + tc*k frames  <->  t = 1 + k latents

Length rule for any T >= 1: write ``T = 1 + tc*k + r`` with ``0 <= r < tc``. If ``r > 0`` the clip
is padded at the end by repeating its last frame up to ``1 + tc*(k+1)`` frames, so
``t = 1 + ceil((T - 1) / tc)``. Decoding ``t`` latents gives ``1 + tc*(t - 1)`` frames; pass
``num_frames=T`` to :meth:`CausalVAE.decode` to trim the padding off again.

Space is compressed by ``sc = config.space_compression``; H and W must be multiples of it.

The VAE owns its latent normalization: :meth:`CausalVAE.encode` returns
``(z - latent_shift) / latent_scale`` and :meth:`CausalVAE.decode` takes such normalized latents.
:meth:`CausalVAE.encode_distribution` gives the raw posterior (mean, logvar) for training.

Long clips: ``chunk_frames`` runs the network in time chunks with a causal feature cache (equal
to the whole-clip result up to float rounding; memory does not grow with clip length beyond the
output). Large frames: ``tile=(th, tw)`` runs overlapping spatial tiles and blends the overlaps
with linear (feathered) weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from kinema.atomic import atomic_directory
from kinema.checkpoint_folders import check_finite, cpu_tensors
from kinema.compression.layers import (
    CausalConv3d,
    Downsample,
    ResBlock,
    RMSNorm3d,
    StreamCache,
    Upsample,
)
from kinema.loading import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    build_loaded,
    checkpoint_paths,
    read_checkpoint_config,
    read_tensors,
)

__all__ = [
    "PRESETS",
    "CausalVAE",
    "Decoder",
    "Encoder",
    "VAEConfig",
    "VAEOutput",
    "sample_posterior",
]

CHECKPOINT_KIND = "kinema.CausalVAE"
CHECKPOINT_VERSION = 1
LOGVAR_RANGE = (-30.0, 20.0)  # the posterior log-variance is clamped to this range


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3  # channels of the video (RGB)
    latent_channels: int = 16  # channels of the latent video
    base_channels: int = 32  # width of the first encoder stage (and last decoder stage)
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 4)  # width of stage i = base * mult[i]
    num_res_blocks: int = 2  # residual blocks per encoder stage (decoder: one more)
    # one per downsampling stage (len(multipliers) - 1): whether that stage also halves time
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    # residual paths around every down/upsampling and the latent bottleneck (pooling, repeats and
    # channel means, no weights), as in DC-AE (Chen et al., 2024): faster training from scratch
    shortcuts: bool = False

    def __post_init__(self) -> None:
        for name in ("in_channels", "latent_channels", "base_channels", "num_res_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"VAEConfig.{name} must be a positive int, got {value!r}")
        mults = tuple(self.channel_multipliers)
        if not mults or any(not isinstance(m, int) or m < 1 for m in mults):
            raise ValueError(
                f"VAEConfig.channel_multipliers must be a non-empty tuple of positive ints, "
                f"got {self.channel_multipliers!r}"
            )
        temporal = tuple(bool(t) for t in self.temporal_downsample)
        if len(temporal) != len(mults) - 1:
            raise ValueError(
                f"VAEConfig.temporal_downsample has {len(temporal)} entries but there are "
                f"{len(mults) - 1} downsampling stages (len(channel_multipliers) - 1)"
            )
        last = self.base_channels * mults[-1]
        if self.shortcuts and last % self.latent_channels:
            raise ValueError(
                f"VAEConfig.shortcuts needs the last stage's width ({last}) to be a multiple of "
                f"latent_channels ({self.latent_channels})"
            )
        object.__setattr__(self, "channel_multipliers", mults)
        object.__setattr__(self, "temporal_downsample", temporal)
        object.__setattr__(self, "shortcuts", bool(self.shortcuts))

    @property
    def time_compression(self) -> int:
        """Frames per latent frame (after the first): 2 ** (number of temporal downsamplings)."""
        return 2 ** sum(self.temporal_downsample)

    @property
    def space_compression(self) -> int:
        """Pixels per latent pixel along H and W: 2 ** (number of downsampling stages)."""
        return 2 ** len(self.temporal_downsample)

    def num_latent_frames(self, num_frames: int) -> int:
        """Latent frames for a clip of ``num_frames`` frames: 1 + ceil((T - 1) / tc)."""
        if num_frames < 1:
            raise ValueError(f"a clip needs at least 1 frame, got {num_frames}")
        return 1 + -(-(num_frames - 1) // self.time_compression)

    def num_video_frames(self, num_latent_frames: int) -> int:
        """Frames decoded from ``num_latent_frames`` latents: 1 + tc * (t - 1)."""
        if num_latent_frames < 1:
            raise ValueError(f"latents need at least 1 frame, got {num_latent_frames}")
        return 1 + self.time_compression * (num_latent_frames - 1)

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, t, h, w) of the latents of a (3, T, H, W) clip."""
        sc = self.space_compression
        return (self.latent_channels, self.num_latent_frames(num_frames), height // sc, width // sc)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_multipliers"] = list(self.channel_multipliers)
        d["temporal_downsample"] = list(self.temporal_downsample)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VAEConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VAEConfig fields {sorted(unknown)}; valid: {sorted(known)}")
        d = dict(d)
        for name in ("channel_multipliers", "temporal_downsample"):
            if name in d:
                d[name] = tuple(d[name])
        return cls(**d)


PRESETS: dict[str, VAEConfig] = {
    # tests: 4x time, 4x space, 4 latent channels, about 150k parameters
    "debug": VAEConfig(
        latent_channels=4,
        base_channels=8,
        channel_multipliers=(1, 1, 2),
        num_res_blocks=1,
        temporal_downsample=(True, True),
    ),
    # default compression on a CPU budget: 3.3M parameters; trains at ~0.4 s per 17x64x64 clip
    # (forward + backward, bf16 autocast, 2 cores)
    "tiny": VAEConfig(
        latent_channels=16,
        base_channels=16,
        channel_multipliers=(1, 2, 4, 4),
        num_res_blocks=1,
        temporal_downsample=(False, True, True),
    ),
    # 4x time, 4x4 space, 16 latent channels (12x fewer numbers): the shipped default model's
    # VAE: 2.3M parameters, keeps small objects of 64x64 clips sharp on a CPU training budget
    "tiny-s4": VAEConfig(
        latent_channels=16,
        base_channels=16,
        channel_multipliers=(1, 2, 4),
        num_res_blocks=1,
        temporal_downsample=(True, True),
    ),
    # default compression: 4x time, 8x8 space, 16 latent channels
    "small": VAEConfig(
        latent_channels=16,
        base_channels=32,
        channel_multipliers=(1, 2, 4, 4),
        num_res_blocks=2,
        temporal_downsample=(False, True, True),
    ),
    # same compression as small, twice as wide
    "base": VAEConfig(
        latent_channels=16,
        base_channels=64,
        channel_multipliers=(1, 2, 4, 4),
        num_res_blocks=2,
        temporal_downsample=(False, True, True),
    ),
}
# tiny-s4 with DC-AE's residual shortcuts: trains from random weights about 4 dB better in the
# same steps (docs/vae.md, "From scratch in one sitting")
PRESETS["tiny-s4r"] = replace(PRESETS["tiny-s4"], shortcuts=True)


@dataclass
class VAEOutput:
    reconstruction: Tensor  # (B, 3, T, H, W), same T as the input
    mean: Tensor  # (B, C, t, h, w) raw (unnormalized) posterior mean
    logvar: Tensor  # (B, C, t, h, w) raw posterior log-variance
    latents: Tensor  # (B, C, t, h, w) raw latents that were decoded (sample or mean)


INITIAL_LOGVAR = -6.0


class Encoder(nn.Module):
    """Video (B, 3, T, H, W) -> posterior moments (B, 2C, t, h, w): mean and logvar stacked."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_multipliers]
        self.conv_in = CausalConv3d(cfg.in_channels, widths[0], 3)
        blocks: list[nn.Module] = []
        c = widths[0]
        for i, width in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c, width))
                c = width
            if i < len(widths) - 1:
                blocks.append(Downsample(c, cfg.temporal_downsample[i], cfg.shortcuts))
        blocks += [ResBlock(c, c), ResBlock(c, c)]  # middle
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = RMSNorm3d(c)
        self.conv_out = CausalConv3d(c, 2 * cfg.latent_channels, 3)
        self.latent_channels = cfg.latent_channels
        self.shortcut = cfg.shortcuts
        # Start with a small posterior variance (std ≈ 0.05): with log-variance 0 the decoder would
        # see z = mean + ε, mostly noise, and the tiny KL weight moves that bias only slowly.
        nn.init.constant_(self.conv_out.conv.bias[cfg.latent_channels :], INITIAL_LOGVAR)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        # x: (B, 3, T, H, W)
        h = self.conv_in(x, cache)  # (B, c0, T, H, W)
        for block in self.blocks:
            h = block(h, cache)  # (B, c_i, T_i, H_i, W_i), downsampled at stage ends
        moments = self.conv_out(nn.functional.silu(self.norm_out(h)), cache)  # (B, 2C, t, h, w)
        if not self.shortcut:
            return moments
        # the mean gains the last features averaged in groups of c_last / C channels
        skip = h.unflatten(1, (self.latent_channels, -1)).mean(dim=2)  # (B, C, t, h, w)
        return moments + torch.cat([skip, torch.zeros_like(skip)], dim=1)


class Decoder(nn.Module):
    """Raw latents (B, C, t, h, w) -> video (B, 3, 1 + tc*(t-1), H, W)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_multipliers]
        c = widths[-1]
        self.conv_in = CausalConv3d(cfg.latent_channels, c, 3)
        blocks: list[nn.Module] = [ResBlock(c, c), ResBlock(c, c)]  # middle
        for i in reversed(range(len(widths))):
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(c, widths[i]))
                c = widths[i]
            if i > 0:
                blocks.append(Upsample(c, cfg.temporal_downsample[i - 1], cfg.shortcuts))
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = RMSNorm3d(c)
        self.conv_out = CausalConv3d(c, cfg.in_channels, 3)
        # with shortcuts, each latent channel is repeated into c_last / C of conv_in's channels
        self.repeats = widths[-1] // cfg.latent_channels if cfg.shortcuts else 0

    def forward(self, z: Tensor, cache: StreamCache | None = None) -> Tensor:
        # z: (B, C, t, h, w)
        h = self.conv_in(z, cache)  # (B, c_last, t, h, w)
        if self.repeats:
            h = h + z.repeat_interleave(self.repeats, dim=1)
        for block in self.blocks:
            h = block(h, cache)  # (B, c_i, T_i, H_i, W_i), upsampled at stage ends
        return self.conv_out(nn.functional.silu(self.norm_out(h)), cache)  # (B, 3, T, H, W)


def chunk_bounds(total: int, chunk: int) -> list[tuple[int, int]]:
    """[0, 1), then [1, 1 + chunk), [1 + chunk, 1 + 2*chunk), ... up to ``total``."""
    bounds = [(0, 1)]
    for start in range(1, total, chunk):
        bounds.append((start, min(start + chunk, total)))
    return bounds


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of length ``tile`` that cover ``size`` with at least ``overlap`` shared.

    The last tile is aligned to the end, so any ``size`` works (its overlap may be larger).
    """
    if tile >= size:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return [*starts, size - tile]


def feather_weights(size: int, ramp: int, left: bool, right: bool) -> Tensor:
    """(size,) blending weights: 1 inside, linear ramps of ``ramp`` samples at shared edges."""
    w = torch.ones(size)
    if ramp > 0:
        up = torch.arange(1, ramp + 1, dtype=torch.float32) / (ramp + 1)  # (ramp,) in (0, 1)
        n = min(ramp, size)
        if left:
            w[:n] = torch.minimum(w[:n], up[:n])
        if right:
            w[size - n :] = torch.minimum(w[size - n :], up[:n].flip(0))
    return w


def sample_posterior(
    mean: Tensor, logvar: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """One draw z = mean + exp(logvar / 2) * noise from the diagonal Gaussian posterior."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * noise


def nearest_multiples(size: int, multiple: int) -> str:
    below = (size // multiple) * multiple
    above = below + multiple
    return f"{above}" if below == 0 else f"{below} or {above}"


class CausalVAE(nn.Module):
    """Causal 3D convolutional VAE: encoder, decoder and the latent normalization it owns."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.register_buffer("latent_shift", torch.zeros(config.latent_channels))
        self.register_buffer("latent_scale", torch.ones(config.latent_channels))

    @property
    def time_compression(self) -> int:
        return self.config.time_compression

    @property
    def space_compression(self) -> int:
        return self.config.space_compression

    def count_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---------------------------------------------------------------- input checks

    def check_video(self, video: Tensor) -> None:
        """Raise ValueError unless video is (B, 3, T >= 1, H, W) with H and W multiples of sc."""
        if video.ndim != 5:
            raise ValueError(f"video must be (B, C, T, H, W), got shape {tuple(video.shape)}")
        _, channels, T, H, W = video.shape
        if channels != self.config.in_channels:
            raise ValueError(f"video has {channels} channels, expected {self.config.in_channels}")
        if T < 1:
            raise ValueError(f"video needs at least 1 frame, got T={T}")
        sc = self.space_compression
        for name, size in (("height", H), ("width", W)):
            if size % sc != 0 or size == 0:
                raise ValueError(
                    f"video {name} {size} is not a multiple of the spatial compression {sc}; "
                    f"nearest valid {name}s: {nearest_multiples(size, sc)}"
                )

    def check_latents(self, latents: Tensor) -> None:
        if latents.ndim != 5:
            raise ValueError(f"latents must be (B, C, t, h, w), got shape {tuple(latents.shape)}")
        if latents.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"latents have {latents.shape[1]} channels, expected {self.config.latent_channels}"
            )
        if latents.shape[2] < 1 or latents.shape[3] < 1 or latents.shape[4] < 1:
            raise ValueError(f"latents must be non-empty, got shape {tuple(latents.shape)}")

    def check_chunk_frames(self, chunk_frames: int | None, multiple: int) -> None:
        if chunk_frames is None:
            return
        if not isinstance(chunk_frames, int) or chunk_frames < 1 or chunk_frames % multiple:
            raise ValueError(
                f"chunk_frames={chunk_frames!r} must be a positive multiple of {multiple}"
            )

    def tile_grid(
        self, tile: tuple[int, int], tile_overlap: int | tuple[int, int] | None
    ) -> tuple[tuple[int, int], tuple[int, int]]:
        """Pixel tile size and overlap -> (tile, overlap) in latent pixels, validated."""
        sc = self.space_compression
        if len(tile) != 2 or any(not isinstance(t, int) or t < sc or t % sc for t in tile):
            raise ValueError(f"tile={tile!r} must be (th, tw), positive multiples of {sc}")
        if tile_overlap is None:  # a quarter of the tile, rounded down to a multiple of sc
            overlap = tuple((t // 4) // sc * sc for t in tile)
        elif isinstance(tile_overlap, int):
            overlap = (tile_overlap, tile_overlap)
        else:
            overlap = tuple(tile_overlap)
        for t, o in zip(tile, overlap, strict=True):
            if o < 0 or o % sc or o >= t:
                raise ValueError(
                    f"tile_overlap={tile_overlap!r} must be a multiple of {sc} in [0, tile) "
                    f"for tile={tile!r}"
                )
        return (tile[0] // sc, tile[1] // sc), (overlap[0] // sc, overlap[1] // sc)

    # ---------------------------------------------------------------- latent normalization

    def normalize_latents(self, z: Tensor) -> Tensor:
        # z: (B, C, t, h, w) raw -> normalized
        shift = self.latent_shift.view(1, -1, 1, 1, 1).to(z.dtype)
        scale = self.latent_scale.view(1, -1, 1, 1, 1).to(z.dtype)
        return (z - shift) / scale

    def denormalize_latents(self, z: Tensor) -> Tensor:
        # z: (B, C, t, h, w) normalized -> raw
        shift = self.latent_shift.view(1, -1, 1, 1, 1).to(z.dtype)
        scale = self.latent_scale.view(1, -1, 1, 1, 1).to(z.dtype)
        return z * scale + shift

    @torch.no_grad()
    def set_latent_stats(self, shift: Tensor, scale: Tensor) -> None:
        """Set the per-channel shift and scale (each (C,)); scale must be finite and positive."""
        C = self.config.latent_channels
        shift, scale = torch.as_tensor(shift).float(), torch.as_tensor(scale).float()
        if shift.shape != (C,) or scale.shape != (C,):
            raise ValueError(
                f"shift and scale must have shape ({C},), got {tuple(shift.shape)} and "
                f"{tuple(scale.shape)}"
            )
        if not (torch.isfinite(shift).all() and torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"shift must be finite and scale finite and > 0, got scale={scale}")
        self.latent_shift.copy_(shift)
        self.latent_scale.copy_(scale)

    @staticmethod
    @torch.no_grad()
    def measure_latent_stats(latents: Tensor | Iterable[Tensor]) -> tuple[Tensor, Tensor]:
        """Per-channel (mean, std) of raw latents (B, C, t, h, w), or of several such tensors of
        any sizes taken together, to pass to set_latent_stats (std at least 1e-4)."""
        parts = [latents] if isinstance(latents, Tensor) else list(latents)
        flat = torch.cat(
            [z.detach().float().transpose(0, 1).reshape(z.shape[1], -1) for z in parts], dim=1
        )  # (C, all positions)
        return flat.mean(dim=1), flat.std(dim=1).clamp_min(1e-4)

    # ---------------------------------------------------------------- encode

    def pad_frames(self, video: Tensor) -> Tensor:
        """Repeat the last frame so T = 1 + tc*k (see the length rule in the module docstring)."""
        T = video.shape[2]
        T_padded = self.config.num_video_frames(self.config.num_latent_frames(T))
        if T_padded == T:
            return video
        last = video[:, :, -1:].expand(-1, -1, T_padded - T, -1, -1)  # (B, 3, pad, H, W)
        return torch.cat([video, last], dim=2)  # (B, 3, 1 + tc*k, H, W)

    def encode_moments(self, video: Tensor, chunk_frames: int | None = None) -> Tensor:
        """(B, 3, 1 + tc*k, H, W) -> (B, 2C, 1 + k, h, w), whole clip or in time chunks."""
        if chunk_frames is None:
            return self.encoder(video)
        B, _, T, H, W = video.shape
        C, t, h, w = self.config.latent_shape(T, H, W)
        out = video.new_empty(B, 2 * C, t, h, w)
        pos = 0
        chunks = (video[:, :, a:b] for a, b in chunk_bounds(T, chunk_frames))
        for m in self.stream_moments(chunks):  # (B, 2C, n, h, w)
            out[:, :, pos : pos + m.shape[2]] = m
            pos += m.shape[2]
        assert pos == t, f"chunked encode produced {pos} latent frames, expected {t}"
        return out

    def stream_moments(self, chunks: Iterable[Tensor]) -> Iterator[Tensor]:
        """Encode a clip that arrives in time chunks, in bounded memory.

        Chunks (B, 3, n, H, W) come in order: the first frame alone, then multiples of
        `time_compression` frames. Yields the raw moments (B, 2C, n', h, w) of each chunk.
        """
        cache = StreamCache()
        for chunk in chunks:
            yield self.encoder(chunk, cache)

    def encode_distribution(
        self,
        video: Tensor,
        chunk_frames: int | None = None,
        tile: tuple[int, int] | None = None,
        tile_overlap: int | tuple[int, int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Raw (unnormalized) posterior (mean, logvar) of a video, each (B, C, t, h, w).

        chunk_frames: frames per time chunk after the first frame (a multiple of tc), or None.
        tile, tile_overlap: spatial tile (th, tw) and overlap in pixels, or None for no tiling.
        """
        self.check_video(video)
        self.check_chunk_frames(chunk_frames, self.time_compression)
        video = self.pad_frames(video)  # (B, 3, 1 + tc*k, H, W)
        if tile is None:
            moments = self.encode_moments(video, chunk_frames)
        else:
            sc = self.space_compression
            moments = self.run_tiled(
                lambda x: self.encode_moments(x, chunk_frames),
                video,
                grid=(video.shape[3] // sc, video.shape[4] // sc),
                tiling=self.tile_grid(tile, tile_overlap),
                in_scale=sc,
                out_scale=1,
            )
        mean, logvar = moments.chunk(2, dim=1)  # (B, C, t, h, w) each
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode(
        self,
        video: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
        chunk_frames: int | None = None,
        tile: tuple[int, int] | None = None,
        tile_overlap: int | tuple[int, int] | None = None,
    ) -> Tensor:
        """Video (B, 3, T, H, W) in [-1, 1] -> normalized latents (B, C, t, h, w).

        The posterior mean by default; ``sample=True`` draws from it (with ``generator``).
        """
        mean, logvar = self.encode_distribution(video, chunk_frames, tile, tile_overlap)
        z = sample_posterior(mean, logvar, generator) if sample else mean
        return self.normalize_latents(z)

    # ---------------------------------------------------------------- decode

    def decode_raw(self, z: Tensor, chunk_frames: int | None = None) -> Tensor:
        """Raw latents (B, C, t, h, w) -> (B, 3, 1 + tc*(t-1), H, W), whole or in latent chunks."""
        if chunk_frames is None:
            return self.decoder(z)
        B, _, t, h, w = z.shape
        sc = self.space_compression
        T = self.config.num_video_frames(t)
        out = z.new_empty(B, self.config.in_channels, T, h * sc, w * sc)
        pos = 0
        chunks = (z[:, :, a:b] for a, b in chunk_bounds(t, chunk_frames))
        for frames in self.stream_decode_raw(chunks):  # (B, 3, n, H, W)
            out[:, :, pos : pos + frames.shape[2]] = frames
            pos += frames.shape[2]
        assert pos == T, f"chunked decode produced {pos} frames, expected {T}"
        return out

    def stream_decode_raw(self, chunks: Iterable[Tensor]) -> Iterator[Tensor]:
        """Decode raw latents that arrive in time chunks (B, C, n, h, w), in order, in bounded
        memory; yields the frames (B, 3, n', H, W) of each chunk."""
        cache = StreamCache()
        for chunk in chunks:
            yield self.decoder(chunk, cache)

    def decode(
        self,
        latents: Tensor,
        num_frames: int | None = None,
        chunk_frames: int | None = None,
        tile: tuple[int, int] | None = None,
        tile_overlap: int | tuple[int, int] | None = None,
    ) -> Tensor:
        """Normalized latents (B, C, t, h, w) -> video (B, 3, T, H, W), not clamped.

        num_frames: trim to this many frames (the T that was encoded); default 1 + tc*(t-1).
        chunk_frames: latent frames per time chunk after the first latent frame, or None.
        tile, tile_overlap: spatial tile (th, tw) and overlap in output pixels, or None.
        """
        self.check_latents(latents)
        self.check_chunk_frames(chunk_frames, 1)
        t = latents.shape[2]
        if num_frames is not None and self.config.num_latent_frames(num_frames) != t:
            tc = self.time_compression
            raise ValueError(
                f"num_frames={num_frames} does not come from {t} latent frames; valid: "
                f"{tc * (t - 2) + 2}..{tc * (t - 1) + 1}"
                if t > 1
                else f"num_frames={num_frames} does not come from 1 latent frame; valid: 1"
            )
        z = self.denormalize_latents(latents)
        if tile is None:
            video = self.decode_raw(z, chunk_frames)
        else:
            video = self.run_tiled(
                lambda x: self.decode_raw(x, chunk_frames),
                z,
                grid=(z.shape[3], z.shape[4]),
                tiling=self.tile_grid(tile, tile_overlap),
                in_scale=1,
                out_scale=self.space_compression,
            )
        return video if num_frames is None else video[:, :, :num_frames]

    # ---------------------------------------------------------------- tiling

    def run_tiled(
        self,
        fn: Callable[[Tensor], Tensor],
        x: Tensor,
        grid: tuple[int, int],
        tiling: tuple[tuple[int, int], tuple[int, int]],
        in_scale: int,
        out_scale: int,
    ) -> Tensor:
        """Apply fn to overlapping spatial tiles of x and blend the results with feathered weights.

        Tiles are laid on the latent grid ``grid = (h, w)``; x has ``grid * in_scale`` pixels and
        fn's output ``grid * out_scale``. ``tiling = ((th, tw), (oh, ow))`` in latent pixels.
        """
        (th, tw), (oh, ow) = tiling
        gh, gw = grid
        th, tw = min(th, gh), min(tw, gw)
        out = weight = None
        for y0 in tile_starts(gh, th, oh):
            for x0 in tile_starts(gw, tw, ow):
                piece = fn(
                    x[
                        ...,
                        y0 * in_scale : (y0 + th) * in_scale,
                        x0 * in_scale : (x0 + tw) * in_scale,
                    ]
                )  # (B, C', T', th * out_scale, tw * out_scale)
                if out is None:
                    B, C, T = piece.shape[:3]
                    out = piece.new_zeros(B, C, T, gh * out_scale, gw * out_scale)
                    weight = piece.new_zeros(gh * out_scale, gw * out_scale)
                wy = feather_weights(th * out_scale, oh * out_scale, y0 > 0, y0 + th < gh)
                wx = feather_weights(tw * out_scale, ow * out_scale, x0 > 0, x0 + tw < gw)
                w = (wy[:, None] * wx[None, :]).to(piece)  # (th*s, tw*s)
                ys = slice(y0 * out_scale, (y0 + th) * out_scale)
                xs = slice(x0 * out_scale, (x0 + tw) * out_scale)
                out[..., ys, xs] += piece * w
                weight[ys, xs] += w
        return out / weight

    # ---------------------------------------------------------------- training forward

    def forward(
        self, video: Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> VAEOutput:
        """Encode, (sample,) decode: reconstruction (B, 3, T, H, W) and the raw posterior."""
        mean, logvar = self.encode_distribution(video)  # (B, C, t, h, w) each
        z = sample_posterior(mean, logvar, generator) if sample else mean
        reconstruction = self.decoder(z)[:, :, : video.shape[2]]  # (B, 3, T, H, W)
        return VAEOutput(reconstruction=reconstruction, mean=mean, logvar=logvar, latents=z)

    # ---------------------------------------------------------------- save / load

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (weights and latent stats) atomically.

        Files go to a temporary directory beside ``directory`` that is then renamed into place,
        so a half-written checkpoint never exists under ``directory``. Non-finite weights raise.
        """
        directory = Path(directory)
        tensors = cpu_tensors(self.state_dict())
        check_finite(tensors, str(directory))
        meta = {
            "kind": CHECKPOINT_KIND,
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
        }
        with atomic_directory(directory) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
            save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], device: torch.device | str = "cpu"
    ) -> CausalVAE:
        """Load a checkpoint written by :meth:`save_pretrained` (safetensors only)."""
        config_path, weights_path = checkpoint_paths(directory, "VAE")
        config = read_checkpoint_config(config_path, CHECKPOINT_KIND, "VAE", VAEConfig.from_dict)
        tensors = read_tensors(weights_path, device)
        return build_loaded(lambda: cls(config).to(device), tensors, weights_path, config_path)
