"""Building blocks of the causal video VAE: causal 3D convolutions that can stream, norms, blocks.

Every layer here is causal in time and never mixes frames except through a causal convolution, so
the whole network can run on a clip in time chunks and give the same result as on the whole clip.

Streaming works through :class:`StreamCache`: a causal convolution keeps the input frames its next
output still needs (at most ``kernel_t - 1`` of them) and the global index of that next output.
Calling the network chunk after chunk with one cache equals calling it once on the whole clip.
Without a cache (``cache=None``) each call is a whole clip on its own.

Tensors are ``(B, C, T, H, W)`` throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

__all__ = [
    "CausalConv3d",
    "ConvStreamState",
    "Downsample",
    "RMSNorm3d",
    "ResBlock",
    "StreamCache",
    "Upsample",
    "conv3d_split_rows",
    "mean_pairs_in_time",
]

# On the CPU, PyTorch runs a conv3d through oneDNN only when its input is batched or large
# (batch > 1, or N * C * T * H above 20,480 in torch 2.x); one small clip takes an im2col kernel
# (slow_conv3d), which made a tiny-s4 training step on a 17x64x64 clip four times slower than
# on oneDNN (benchmarks/vae_conv.py). conv3d_split_rows hands such a clip over as a batch of two.
_ONEDNN_CONV3D_MIN_ELEMENTS = 20480


def _output_rows(conv: nn.Conv3d, rows: int) -> int:
    return (rows + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1


def conv3d_split_rows(x: Tensor, conv: nn.Conv3d) -> Tensor:
    """``conv(x)`` for one clip, computed as a batch of two: its top and bottom output rows.

    x: (1, C_in, T, H, W) -> (1, C_out, T', H', W'). The rows are zero-padded as ``conv`` pads
    them, and each half reads the input rows its outputs need (they overlap by ``kernel_h -
    stride_h`` rows), so the result equals ``conv(x)`` to float rounding. Needs an even number
    of output rows, no dilation and no groups.
    """
    kh, sh, ph = conv.kernel_size[1], conv.stride[1], conv.padding[1]
    if x.shape[0] != 1 or conv.dilation != (1, 1, 1) or conv.groups != 1:
        raise ValueError(
            "conv3d_split_rows takes one clip and a conv3d without dilation or groups; got "
            f"batch {x.shape[0]}, dilation={conv.dilation}, groups={conv.groups}"
        )
    rows_out = _output_rows(conv, x.shape[3])
    if rows_out < 2 or rows_out % 2:
        raise ValueError(f"conv3d_split_rows needs an even number of output rows, got {rows_out}")
    half = rows_out // 2
    padded = F.pad(x, (0, 0, ph, ph))  # (1, C_in, T, H + 2 ph, W)
    rows_in = (half - 1) * sh + kh  # input rows each half reads
    both = torch.cat([padded[:, :, :, :rows_in], padded[:, :, :, half * sh : half * sh + rows_in]])
    padding = (conv.padding[0], 0, conv.padding[2])
    y = F.conv3d(both, conv.weight, conv.bias, conv.stride, padding)  # (2, C_out, T', H'/2, W')
    return torch.cat([y[:1], y[1:]], dim=3)  # (1, C_out, T', H', W')


@dataclass
class ConvStreamState:
    """What a streaming causal convolution remembers between chunks."""

    frames: Tensor  # (B, C, n, H, W) input frames still needed by outputs not yet emitted
    start: int  # global index of frames[:, :, 0] (negative for the causal zero padding)
    next_out: int  # global index of the next output frame to emit


@dataclass
class StreamCache:
    """State of one streaming pass (one clip, one spatial tile) through a network.

    Make a fresh cache per clip; pass the same cache with every chunk of that clip, in order.
    """

    conv: dict[nn.Module, ConvStreamState] = field(default_factory=dict)
    # time upsamplers that already dropped the leading frame of their first chunk, and time
    # downsamplers whose shortcut already passed the clip's frame 0 on alone
    started: set[nn.Module] = field(default_factory=set)
    # frames a time downsampler's shortcut holds until their pair arrives: (B, C, 0 or 1, H, W)
    pending: dict[nn.Module, Tensor] = field(default_factory=dict)


class RMSNorm3d(nn.Module):
    """RMS normalization over channels of each voxel (never mixes frames or pixels)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        # x: (B, C, T, H, W); statistics in fp32 for low-precision inputs
        xf = x.float()
        rms = torch.rsqrt(xf.pow(2).mean(dim=1, keepdim=True) + self.eps)  # (B, 1, T, H, W)
        return (xf * rms).to(x.dtype) * self.weight.view(1, -1, 1, 1, 1)


class CausalConv3d(nn.Module):
    """3D convolution that sees only the current and past frames, and can stream in chunks.

    Time: ``kernel_t - 1`` zero frames are padded on the left, none on the right. With temporal
    stride ``s`` output ``j`` reads input frames ``j*s - (kernel_t - 1) .. j*s``, so T input frames
    give ``(T - 1) // s + 1`` outputs and output 0 reads frame 0 alone (plus zero padding).
    Space: symmetric zero padding of ``kernel // 2``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int] = 3,
        stride: int | tuple[int, int, int] = 1,
    ) -> None:
        super().__init__()
        kt, kh, kw = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
        st, sh, sw = (stride,) * 3 if isinstance(stride, int) else stride
        if kt < st:
            raise ValueError(
                f"temporal kernel {kt} is smaller than temporal stride {st}: frames would be "
                "skipped; use kernel_t >= stride_t"
            )
        self.kernel_t = kt
        self.stride_t = st
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size=(kt, kh, kw),
            stride=(st, sh, sw),
            padding=(0, kh // 2, kw // 2),
        )

    def initial_state(self, x: Tensor) -> ConvStreamState:
        """State before frame 0: ``kernel_t - 1`` zero frames at indices -(kernel_t - 1) .. -1."""
        B, C, _, H, W = x.shape
        pad = x.new_zeros(B, C, self.kernel_t - 1, H, W)  # (B, C, kt-1, H, W)
        return ConvStreamState(frames=pad, start=-(self.kernel_t - 1), next_out=0)

    def empty_output(self, x: Tensor) -> Tensor:
        B, _, _, H, W = x.shape
        (_, kh, kw), (_, sh, sw) = self.conv.kernel_size, self.conv.stride
        H_out = (H + 2 * (kh // 2) - kh) // sh + 1
        W_out = (W + 2 * (kw // 2) - kw) // sw + 1
        return x.new_zeros(B, self.conv.out_channels, 0, H_out, W_out)

    def _convolve(self, window: Tensor) -> Tensor:
        B, C, T, H, _ = window.shape
        small = B == 1 and B * C * T * H <= _ONEDNN_CONV3D_MIN_ELEMENTS
        rows_out = _output_rows(self.conv, H)
        if window.device.type == "cpu" and small and rows_out >= 2 and rows_out % 2 == 0:
            return conv3d_split_rows(window, self.conv)  # alone, it would take slow_conv3d
        return self.conv(window)

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        # x: (B, C, t, H, W), the next t frames of the clip
        state = cache.conv.get(self) if cache is not None else None
        if state is None:
            state = self.initial_state(x)
        k, s = self.kernel_t, self.stride_t
        buf = torch.cat([state.frames, x], dim=2)  # (B, C, n + t, H, W)
        end = state.start + buf.shape[2]  # one past the last global frame index available

        # emit every output j >= next_out whose window ends at j*s <= end - 1
        num_out = max(0, (end - 1) // s - state.next_out + 1)
        first = state.next_out * s - (k - 1) - state.start  # buf offset of the first window
        if num_out > 0:
            window = buf[:, :, first : first + (num_out - 1) * s + k]  # (B, C, (n_out-1)s+k, H, W)
            y = self._convolve(window)  # (B, C_out, num_out, H', W')
        else:
            y = self.empty_output(x)  # (B, C_out, 0, H', W'): no window is complete yet

        if cache is not None:
            next_out = state.next_out + num_out
            keep = next_out * s - (k - 1)  # global index of the first frame still needed
            tail = buf[:, :, keep - state.start :].clone()  # (B, C, <= k-1, H, W); kt >= s
            cache.conv[self] = ConvStreamState(frames=tail, start=keep, next_out=next_out)
        return y


class ResBlock(nn.Module):
    """Pre-norm residual block: (RMSNorm, SiLU, causal 3x3x3 conv) twice, 1x1x1 skip if needed."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm3d(in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = RMSNorm3d(out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.skip = (
            nn.Conv3d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        # x: (B, C_in, t, H, W)
        h = self.conv1(nn.functional.silu(self.norm1(x)), cache)  # (B, C_out, t, H, W)
        h = self.conv2(nn.functional.silu(self.norm2(h)), cache)  # (B, C_out, t, H, W)
        return self.skip(x) + h


def upsample_space(x: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B, C, T, 2H, 2W): nearest neighbour, each frame on its own."""
    return x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)


def mean_pairs_in_time(module: nn.Module, x: Tensor, cache: StreamCache | None) -> Tensor:
    """Causal 2x time pooling: frame 0 alone, then the mean of frames (2j - 1, 2j) as output j.

    The inverse grouping of :class:`Upsample` and the outputs a causal stride-2 convolution emits.
    With a cache, a frame whose pair is still to come waits in ``cache.pending[module]``.
    """
    # x: (B, C, t, H, W), the next t frames of the clip
    if cache is not None and module in cache.pending:
        x = torch.cat([cache.pending.pop(module), x], dim=2)
    first = x[:, :, :0]  # (B, C, 0, H, W)
    if x.shape[2] > 0 and (cache is None or module not in cache.started):
        first, x = x[:, :, :1], x[:, :, 1:]  # the clip's frame 0 is an output of its own
        if cache is not None:
            cache.started.add(module)
    pairs = x.shape[2] // 2
    if cache is not None and x.shape[2] % 2:
        cache.pending[module] = x[:, :, -1:]
    means = x[:, :, : 2 * pairs].unflatten(2, (pairs, 2)).mean(dim=3)  # (B, C, pairs, H, W)
    return torch.cat([first, means], dim=2)


class Downsample(nn.Module):
    """Halve H and W, and optionally T, with one causal stride-2 3x3x3 convolution.

    In time, T frames give ``(T - 1) // 2 + 1``: frame 0 alone, then one output per pair.
    ``shortcut=True`` adds the input averaged over the same groups (2x2 pixels, and frame 0 alone
    then pairs of frames) to the convolution, a residual path through the downsampling as in
    DC-AE's residual autoencoding (Chen et al., 2024), which speeds up early training.
    """

    def __init__(self, channels: int, temporal: bool, shortcut: bool = False) -> None:
        super().__init__()
        self.temporal = temporal
        self.shortcut = shortcut
        self.conv = CausalConv3d(channels, channels, 3, stride=(2 if temporal else 1, 2, 2))

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        # x: (B, C, t, H, W) -> (B, C, t', H/2, W/2)
        y = self.conv(x, cache)
        if not self.shortcut:
            return y
        skip = mean_pairs_in_time(self, x, cache) if self.temporal else x  # (B, C, t', H, W)
        return y + F.avg_pool3d(skip, kernel_size=(1, 2, 2))


class Upsample(nn.Module):
    """Double H and W, and optionally T (L frames -> 2L - 1), causally.

    Time: a causal conv makes 2C channels per frame, which become two frames of C channels each;
    the very first frame of the clip is dropped, so latent 0 gives frame 0 alone and latent
    ``l >= 1`` gives frames ``2l - 1`` and ``2l`` (the inverse of :class:`Downsample`).
    Space: nearest-neighbour 2x, then a causal 3x3x3 conv. ``shortcut=True`` adds the input
    repeated the same way (each latent frame to the frames it gives, each pixel to 2x2), the
    residual path that mirrors :class:`Downsample`'s.
    """

    def __init__(self, channels: int, temporal: bool, shortcut: bool = False) -> None:
        super().__init__()
        self.temporal = temporal
        self.shortcut = shortcut
        self.time_conv = CausalConv3d(channels, 2 * channels, 3) if temporal else None
        self.conv = CausalConv3d(channels, channels, 3)

    def upsample_time(self, x: Tensor, cache: StreamCache | None) -> Tensor:
        L = x.shape[2]
        y = self.time_conv(x, cache)  # (B, 2C, L, H, W)
        # (B, 2C, L, H, W) -> (B, C, 2L, H, W): latent l gives frames 2l and 2l+1
        y = rearrange(y, "b (two c) l h w -> b c (l two) h w", two=2)
        if cache is None or self not in cache.started:
            y = y[:, :, 1:]  # (B, C, 2L-1, H, W): the clip's first frame comes from one slot
            if cache is not None and L > 0:
                cache.started.add(self)
        return y

    def forward(self, x: Tensor, cache: StreamCache | None = None) -> Tensor:
        # x: (B, C, L, H, W) -> (B, C, 2L-1 or L, 2H, 2W)
        skip = x if self.shortcut else None
        if self.time_conv is not None:
            first = cache is None or self not in cache.started  # before upsample_time marks it
            x = self.upsample_time(x, cache)
            if skip is not None:  # each latent frame to the frames it gives, as x's
                skip = skip.repeat_interleave(2, dim=2)[:, :, 1 if first else 0 :]
        y = self.conv(upsample_space(x), cache)
        return y if skip is None else y + upsample_space(skip)
