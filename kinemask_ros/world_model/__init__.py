"""KineMask-style world model: a track denoiser (fast, for ranking) and a video denoiser (for pictures).

See ``docs/world_model.md`` for the design, the paper-symbol table and the measured numbers.
"""

from .config import WorldModelConfig
from .networks import TrackDenoiser, VideoDenoiser

__all__ = ["WorldModelConfig", "TrackDenoiser", "VideoDenoiser"]
