"""Gymnasium environments (``KineMaskPush-v0`` is registered when ``kinemask_ros`` is imported)."""

from .push_env import ENV_ID, KineMaskPushEnv, PushEnvConfig

__all__ = ["ENV_ID", "KineMaskPushEnv", "PushEnvConfig"]
