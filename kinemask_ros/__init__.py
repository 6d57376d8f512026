"""kinemask_ros: imagine the outcome of a push with a KineMask-style video world model."""

__version__ = "0.1.0"
