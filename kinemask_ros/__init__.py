"""kinemask_ros: imagine the outcome of a push with a KineMask-style video world model."""

__version__ = "0.1.0"


def _register_envs() -> None:
    """Register the Gymnasium envs (idempotent: importing twice or reloading is harmless)."""
    try:
        from gymnasium.envs.registration import register, registry
    except ImportError:  # pragma: no cover - gymnasium is a hard dependency, but keep the core importable
        return
    if "KineMaskPush-v0" not in registry:
        register(id="KineMaskPush-v0", entry_point="kinemask_ros.envs.push_env:KineMaskPushEnv", max_episode_steps=8)
    if "KineMaskImagined-v0" not in registry:
        register(id="KineMaskImagined-v0", entry_point="kinemask_ros.envs.imagined_env:KineMaskImaginedEnv", max_episode_steps=8)


_register_envs()
