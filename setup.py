"""kinemask_ros: imagine pushes with a KineMask-style video world model, rank them, plan over ROS 2."""

from setuptools import setup

setup(
    name="kinemask_ros",
    version="0.1.0",
    description="ROS 2 world-model plugin: imagine, score and rank robot pushes with a KineMask video diffusion model",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[
        "kinemask_ros",
        "kinemask_ros.envs",
        "kinemask_ros.world_model",
        "kinemask_ros.ros",
        "kinemask_ros.segmentation",
        "kinemask_ros.policies",
        "kinemask_ros.sim_bridge",
    ],
    package_dir={
        "kinemask_ros": "kinemask_ros",
        "kinemask_ros.policies": "policies",
        "kinemask_ros.sim_bridge": "sim_bridge",
    },
    package_data={"kinemask_ros": ["checkpoints/*/*.json", "checkpoints/*/*.md", "checkpoints/*/*.png",
                                   "checkpoints/*/*/*.json", "checkpoints/*/*/*.safetensors"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/kinemask_ros"]),
        ("share/kinemask_ros", ["package.xml"]),
    ],
    install_requires=[
        "numpy>=1.26",
        "torch==2.14.1",
        "torchvision==0.29.1",
        "diffusers>=0.42,<0.43",
        "safetensors>=0.4",
        "gymnasium>=1.0",
        "pybullet>=3.2.6",
        "imageio>=2.30",
        "pillow>=10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={"pusht": ["gym-pusht==0.1.8"]},  # PushT adapter/benchmark (pulls pymunk<7, pygame, shapely, opencv-python)
    entry_points={
        "console_scripts": [
            "kinemask-generate = kinemask_ros.sim_bridge.dataset:main",
            "kinemask-train = kinemask_ros.world_model.train:main",
            "kinemask-generate-objects = kinemask_ros.sim_bridge.object_dataset:main",
            "kinemask-train-objects = kinemask_ros.world_model.objects:main",
            "kinemask-train-latent = kinemask_ros.world_model.latent:main",
            "kinemask-demo = kinemask_ros.demo:main",
            "kinemask-segmentation-node = kinemask_ros.ros.entry:segmentation_node",
            "kinemask-world-model-node = kinemask_ros.ros.entry:world_model_node",
            "kinemask-planner-node = kinemask_ros.ros.entry:planner_node",
            "kinemask-sim-bridge-node = kinemask_ros.ros.entry:sim_bridge_node",
            "kinemask-graph = kinemask_ros.ros.graph:main",
            "kinemask-record = kinemask_ros.ros.entry:recorder_node",
            "kinemask-export-onnx = kinemask_ros.world_model.onnx_backend:main",
        ],
    },
)
