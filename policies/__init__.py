"""Planners and baseline policies (installed as kinemask_ros.policies)."""
