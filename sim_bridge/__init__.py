"""Physics scene, synthetic dataset generator and the ROS 2 simulator bridge (installed as
``kinemask_ros.sim_bridge``)."""

from .scene import ObjectSpec, SceneConfig, TabletopScene, Episode, PUSHER_ID

__all__ = ["ObjectSpec", "SceneConfig", "TabletopScene", "Episode", "PUSHER_ID"]
