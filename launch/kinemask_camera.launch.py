"""kinemask graph for a real camera (no simulator): segmentation -> planner, plus the world-model
service node. Give the planner a goal on ``goal`` (geometry_msgs/PointStamped, frame "table") or
send a PlanPush action goal to ``plan_push``.

    ros2 launch kinemask_camera.launch.py camera_topic:=/camera/color/image_raw

The planner's camera_* parameters must describe the real camera's pose over the table (see
docs/ros2.md). Needs a full ROS 2 install; in a pip-only environment use
``kinemask-graph --mode camera --camera-topic ...`` (same nodes and parameters, checked by
tests/test_ros_launch.py).
"""

# Parameters per node (names = fields of the node's config in kinemask_ros/ros/config.py).
SEGMENTATION_PARAMS = {"rate_hz": 15.0, "target_label": "red"}
WORLD_MODEL_PARAMS = {"autostart": True, "max_batch": 256, "num_samples": 2, "num_inference_steps": 8}
PLANNER_PARAMS = {"method": "cem", "num_candidates": 64, "iterations": 3, "num_samples": 2, "replan": "on_goal", "rollout_top_k": 3,
                  "camera_fov_deg": 15.19, "camera_eye": [0.0, 0.0, 1.5], "camera_target": [0.0, 0.0, 0.0], "camera_up": [0.0, 1.0, 0.0]}


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
    camera = [("camera/image_raw", LaunchConfiguration("camera_topic"))]
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", default_value="", description="world-model checkpoint directory ('' = embedded)"),
        DeclareLaunchArgument("device", default_value="cpu", description="cpu, cuda, cuda:N or auto"),
        DeclareLaunchArgument("camera_topic", default_value="camera/image_raw", description="sensor_msgs/Image topic of the camera"),
        Node(executable="kinemask-segmentation-node", name="segmentation", parameters=[SEGMENTATION_PARAMS], remappings=camera, output="screen"),
        Node(executable="kinemask-world-model-node", name="world_model", parameters=[WORLD_MODEL_PARAMS, model], output="screen"),
        Node(executable="kinemask-planner-node", name="planner", parameters=[PLANNER_PARAMS, model], remappings=camera, output="screen"),
    ])
