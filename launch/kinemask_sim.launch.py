"""Whole kinemask graph with the PyBullet simulator: sim bridge -> segmentation -> planner, plus the
world-model service node.

    ros2 launch kinemask_sim.launch.py                     # from this folder, with ROS 2 sourced
    ros2 launch kinemask_sim.launch.py checkpoint:=/path/to/run device:=cuda

Needs a full ROS 2 install (launch, launch_ros) and kinemask_ros installed in the Python that
ROS uses (its console scripts on PATH: the nodes are started by executable name). In a pip-only
environment use ``kinemask-graph`` instead: it starts the same nodes with the same parameters
(kept equal by tests/test_ros_launch.py).
"""

# Parameters per node (names = fields of the node's config in kinemask_ros/ros/config.py).
SIM_BRIDGE_PARAMS = {"rate_hz": 30.0, "image_width": 32, "image_height": 32, "seed": 0, "reset_on_done": True}
SEGMENTATION_PARAMS = {"rate_hz": 30.0}
WORLD_MODEL_PARAMS = {"autostart": True, "max_batch": 256, "num_samples": 2, "num_inference_steps": 8}
PLANNER_PARAMS = {"method": "cem", "num_candidates": 64, "iterations": 3, "num_samples": 2, "replan": "every_frame", "rollout_top_k": 3}


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node
    from launch_ros.parameter_descriptions import ParameterValue

    model = {
        "checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
        "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
    }
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", default_value="", description="world-model checkpoint directory ('' = embedded)"),
        DeclareLaunchArgument("device", default_value="cpu", description="cpu, cuda, cuda:N or auto"),
        Node(executable="kinemask-sim-bridge-node", name="sim_bridge", parameters=[SIM_BRIDGE_PARAMS], output="screen"),
        Node(executable="kinemask-segmentation-node", name="segmentation", parameters=[SEGMENTATION_PARAMS], output="screen"),
        Node(executable="kinemask-world-model-node", name="world_model", parameters=[WORLD_MODEL_PARAMS, model], output="screen"),
        Node(executable="kinemask-planner-node", name="planner", parameters=[PLANNER_PARAMS, model], output="screen"),
    ])
