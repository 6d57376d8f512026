"""kinemask_ros: imagine the outcome of a push with a KineMask-style video world model."""

__version__ = "0.1.0"


def _stop_on_signals_if_node() -> None:
    """In node processes started by ``kinemask-graph`` (``KINEMASK_PARENT_PID`` set), catch SIGINT /
    SIGTERM before any import below: a Ctrl-C while a node was still importing killed it with a
    traceback (see :mod:`kinemask_ros.ros.entry`). Library and test processes keep their handlers."""
    import os

    if os.environ.get("KINEMASK_PARENT_PID", "").isdigit():
        from kinemask_ros.ros.entry import install_signal_handlers

        install_signal_handlers()


_stop_on_signals_if_node()


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
