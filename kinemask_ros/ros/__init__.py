"""ROS 2 front of kinemask_ros: thin nodes that convert messages and call the pure core.

Modules (only those named ``*_node``, ``common`` and ``messages`` import rclpy):

* :mod:`~kinemask_ros.ros.config` - one typed config dataclass per node (= its ROS parameters);
* :mod:`~kinemask_ros.ros.messages` - message <-> numpy / core-type conversion;
* :mod:`~kinemask_ros.ros.common` - QoS profiles, parameter declaration/validation, ``main`` helper;
* :mod:`~kinemask_ros.ros.segmentation_node`, :mod:`~kinemask_ros.ros.world_model_node`,
  :mod:`~kinemask_ros.ros.planner_node` - the nodes; the simulator bridge lives in
  :mod:`kinemask_ros.sim_bridge.bridge_node`;
* :mod:`~kinemask_ros.ros.graph` - ``kinemask-graph``: the node graph from a pip environment.

See ``docs/ros2.md``.
"""
