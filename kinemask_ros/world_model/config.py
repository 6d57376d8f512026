"""One typed config for the world model; saved with every checkpoint."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

CONDITIONING_MODES = ("velocity", "driver", "both")


class VideoClipFields:
    """Derived sizes shared by the video model configs (needs ``num_frames``, ``video_frame_stride``
    and ``conditioning`` fields)."""

    @property
    def video_frames(self) -> int:
        """Frames ``0, s, 2s, ...`` of an episode the video model sees (frame 0 = the input)."""
        return len(range(0, self.num_frames, self.video_frame_stride))

    @property
    def uses_velocity(self) -> bool:
        return self.conditioning in ("velocity", "both")

    @property
    def uses_driver(self) -> bool:
        return self.conditioning in ("driver", "both")


@dataclass(frozen=True)
class WorldModelConfig(VideoClipFields):
    """Sizes and conditioning of the embedded world model.

    Attributes:
        height, width: model resolution (pixels).
        num_frames: frames of a track rollout ``T`` (frame 0 = input).
        video_frame_stride: the video model sees frames ``0, s, 2s, ...`` (``T_video = ceil(T / s)``).
        max_objects: object slots ``K`` (instance ids ``1..K``).
        v_max: velocity-mask normalisation [px/frame at stride 1] (DESIGN §3).
        track_scale: tracks are divided by this [px] before diffusion.
        conditioning: "velocity" (KineMask V), "driver" (InterDyn D) or "both".
        text_dim: size of the text embedding (0 = no text conditioning).
        video_channels: UNet widths per level.
        track_dim: transformer width of the track denoiser; track_layers: its depth.
    """

    height: int = 32
    width: int = 32
    num_frames: int = 16
    video_frame_stride: int = 2
    max_objects: int = 4
    v_max: float = 4.0
    track_scale: float = 8.0
    conditioning: str = "velocity"
    text_dim: int = 0
    video_channels: tuple[int, ...] = (32, 64, 64)
    track_dim: int = 128
    track_layers: int = 3

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 8 or v % 4:
                raise ValueError(f"WorldModelConfig.{name} must be an int >= 8 divisible by 4, got {v!r}")
        if not isinstance(self.num_frames, int) or self.num_frames < 2:
            raise ValueError(f"WorldModelConfig.num_frames must be an int >= 2, got {self.num_frames!r}")
        if not isinstance(self.video_frame_stride, int) or not 1 <= self.video_frame_stride < self.num_frames:
            raise ValueError(f"WorldModelConfig.video_frame_stride must be in [1, num_frames), got {self.video_frame_stride!r}")
        if not isinstance(self.max_objects, int) or not 1 <= self.max_objects <= 8:
            raise ValueError(f"WorldModelConfig.max_objects must be in [1, 8], got {self.max_objects!r}")
        for name in ("v_max", "track_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"WorldModelConfig.{name} must be > 0, got {v!r}")
        if self.conditioning not in CONDITIONING_MODES:
            raise ValueError(f"WorldModelConfig.conditioning must be one of {CONDITIONING_MODES}, got {self.conditioning!r}")
        if not isinstance(self.text_dim, int) or self.text_dim < 0:
            raise ValueError(f"WorldModelConfig.text_dim must be an int >= 0, got {self.text_dim!r}")
        if not self.video_channels or any((not isinstance(c, int)) or c < 8 or c % 8 for c in self.video_channels):
            raise ValueError(f"WorldModelConfig.video_channels must be ints >= 8 divisible by 8, got {self.video_channels!r}")
        if not isinstance(self.track_dim, int) or self.track_dim < 16 or self.track_dim % 4:
            raise ValueError(f"WorldModelConfig.track_dim must be an int >= 16 divisible by 4, got {self.track_dim!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["video_channels"] = list(self.video_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "WorldModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown WorldModelConfig fields {sorted(unknown)}: the checkpoint was made by another version")
        d = dict(d)
        if "video_channels" in d:
            d["video_channels"] = tuple(d["video_channels"])
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "WorldModelConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
