"""Helpers for the ROS 2 process tests: an isolated DDS environment, a tiny random-init world
model checkpoint, spinning helpers and a rosbags type store for our messages."""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ros_env(log_dir: Path, domain_id: int | None = None) -> dict:
    """Environment for node subprocesses: own random domain, loopback discovery, logs in log_dir."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else random.randint(110, 200))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_LOG_DIR"] = str(log_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    env["OMP_NUM_THREADS"] = "1"
    bindir = str(Path(sys.executable).parent)
    if bindir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    log_dir.mkdir(parents=True, exist_ok=True)
    return env


def make_tiny_checkpoint(root: Path, video: bool = True) -> Path:
    """A random-init world model in the checkpoint layout (world_model_config.json, track/, video/)."""
    import torch

    from kinemask_ros.world_model.config import WorldModelConfig
    from kinemask_ros.world_model.networks import TrackDenoiser, VideoDenoiser, video_cond_channels

    torch.manual_seed(0)
    mc = WorldModelConfig(height=32, width=32, num_frames=16, video_frame_stride=2, max_objects=4, conditioning="both",
                          video_channels=(8, 8), track_dim=32, track_layers=1)
    root.mkdir(parents=True, exist_ok=True)
    mc.save(root / "world_model_config.json")
    TrackDenoiser(height=mc.height, width=mc.width, num_frames=mc.num_frames, max_objects=mc.max_objects,
                  conditioning=mc.conditioning, text_dim=0, dim=mc.track_dim, layers=mc.track_layers).save_pretrained(root / "track")
    if video:
        VideoDenoiser(max_objects=mc.max_objects, cond_channels=video_cond_channels(mc.max_objects, mc.conditioning),
                      channels=mc.video_channels).save_pretrained(root / "video")
    return root


def wait_for(predicate, timeout_s: float = 30.0, period_s: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(period_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def typestore():
    """rosbags type store (ROS 2 Kilted) with kinemask_ros_interfaces registered from msg/*.msg."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for f in sorted((REPO / "msg" / "msg").glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"kinemask_ros_interfaces/msg/{f.stem}"))
    store.register(types)
    return store
