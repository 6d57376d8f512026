#!/usr/bin/env bash
# One-shot, idempotent set-up of kinemask_ros on Debian 12 / Python 3.11 (3.10-3.14 work too).
#
#   bash scripts/setup.sh            # quiet; a second run with nothing changed takes < 1 s
#   bash scripts/setup.sh --verbose  # show pip / cmake output
#   bash scripts/setup.sh --force    # redo every step
#
# Steps (each skipped when already done):
#   1. system build tools (cmake >= 3.20, g++, make, Python headers, venv) via apt-get, only if missing
#   2. the virtual environment .venv (override with KINEMASK_VENV=/path; interpreter with PYTHON=python3.X)
#   3. pip install -r requirements.txt -c constraints.txt, requirements-sam2.txt (no build isolation), then pip install --no-deps -e .
#   4. build the ROS 2 interfaces package msg/ (kinemask_ros_interfaces) with CMake and install
#      it into the venv prefix, so no environment variables are needed at run time
#   5. write the stamp file $VENV/.kinemask_setup_stamp (hashes of the inputs of steps 3 and 4)
# Step 3 is redone when requirements.txt, constraints.txt, setup.py or this script change; step 4
# when msg/ (or the dependencies) change.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VERBOSE=${KINEMASK_SETUP_VERBOSE:-0}
FORCE=0
for arg in "$@"; do
  case "$arg" in
    -v|--verbose) VERBOSE=1 ;;
    -f|--force) FORCE=1 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

VENV="${KINEMASK_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.kinemask_setup_stamp"
IFACE_MANIFEST="$VENV/.kinemask_interfaces_manifest.txt"
BUILD_DIR="$ROOT/build/interfaces"
LOG_DIR="$ROOT/build/setup-logs"
IFACE_PKG=kinemask_ros_interfaces

say() { echo "[setup] $*"; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

# Run a command; quiet mode keeps its output in a log file and shows the filtered tail on failure.
# pip here prints many "WARNING: Location '...' is ignored" lines for its local indexes: dropped.
run_logged() {
  local name="$1"; shift
  mkdir -p "$LOG_DIR"
  local log="$LOG_DIR/$name.log"
  if [ "$VERBOSE" = 1 ]; then
    local rc
    set +e
    "$@" 2>&1 | tee "$log" | { grep -v -E "^WARNING: Location '.*' is ignored" || true; }
    rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" = 0 ] || die "step '$name' failed with status $rc (full log: $log)"
  else
    if ! "$@" >"$log" 2>&1; then
      echo "---- last lines of $log ----" >&2
      grep -v -E "^WARNING: Location '.*' is ignored" "$log" | tail -n 40 >&2 || true
      echo "----" >&2
      die "step '$name' failed: $*"
    fi
  fi
}

hash_files() {  # sha256 over names and contents of the given files/folders (sorted), empty-safe
  local f
  for f in "$@"; do
    if [ -d "$f" ]; then
      find "$f" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    elif [ -e "$f" ]; then
      sha256sum "$f"
    else
      echo "missing $f"
    fi
  done | sha256sum | cut -d' ' -f1
}

DEPS_HASH="$(printf '%s\n%s\n' "$(hash_files requirements.txt requirements-sam2.txt constraints.txt setup.py package.xml scripts/setup.sh)" "$VENV $ROOT" | sha256sum | cut -d' ' -f1)"
IFACE_HASH="$(printf '%s\n%s\n' "$(hash_files msg requirements.txt constraints.txt scripts/setup.sh)" "$VENV" | sha256sum | cut -d' ' -f1)"

stamp_value() { [ -f "$STAMP" ] && sed -n "s/^$1=//p" "$STAMP" || true; }

iface_installed() { compgen -G "$VENV/lib/python3*/site-packages/$IFACE_PKG/msg/__init__.py" >/dev/null; }

# ---------------------------------------------------------------- fast path
if [ "$FORCE" = 0 ] && [ -x "$VENV/bin/python" ] \
   && [ "$(stamp_value deps)" = "$DEPS_HASH" ] && [ "$(stamp_value interfaces)" = "$IFACE_HASH" ] \
   && iface_installed && "$VENV/bin/python" -c '' 2>/dev/null; then
  say "up to date ($VENV)"
  exit 0
fi

T0=$SECONDS

# ---------------------------------------------------------------- 1. system packages
command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH; install Python 3.10+ (Debian 12: apt-get install python3) or set PYTHON=/path/to/python3.X"
"$PYTHON" - <<'EOF' || die "Python 3.10-3.14 is required ($PYTHON is $("$PYTHON" -V 2>&1)); set PYTHON=python3.X"
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 14) else 1)
EOF

need_apt=()
cmake_ok() {
  command -v cmake >/dev/null || return 1
  local v; v="$(cmake --version | sed -n '1s/[^0-9]*\([0-9]*\.[0-9]*\).*/\1/p')"
  [ "$(printf '%s\n3.20\n' "$v" | sort -V | head -n1)" = "3.20" ]
}
cmake_ok || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
command -v make >/dev/null || need_apt+=(make)
"$PYTHON" -c 'import os, sysconfig, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
  || need_apt+=(python3-dev)
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
fi
# keep only packages dpkg does not already report as installed (a tool may be missing from PATH
# for another reason, in which case installing would not help: say so instead)
missing=()
for p in "${need_apt[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    case "$p" in
      cmake) say "Debian's cmake is older than 3.20; will use pip's cmake in the venv" ;;
      python3-dev) die "python3-dev is installed but $PYTHON has no Python.h; install the headers for $("$PYTHON" -V 2>&1) or set PYTHON=/usr/bin/python3" ;;
      python3-venv) die "python3-venv is installed but '$PYTHON -m venv' is unusable; set PYTHON=/usr/bin/python3" ;;
      *) die "'$p' is installed but not on PATH" ;;
    esac
  else
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing system packages: ${missing[*]} (no apt-get here: install them by hand)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing system packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}"
    SUDO="sudo"
  fi
  say "installing system packages: ${missing[*]}"
  run_logged apt-update $SUDO apt-get update
  run_logged apt-install env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

# ---------------------------------------------------------------- 2. virtual environment
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
  say "creating virtual environment $VENV"
  rm -rf "$VENV"
  run_logged venv "$PYTHON" -m venv "$VENV"
  rm -f "$STAMP"
fi
VPY="$VENV/bin/python"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# ---------------------------------------------------------------- 3. Python dependencies
if [ "$FORCE" = 1 ] || [ "$(stamp_value deps)" != "$DEPS_HASH" ]; then
  say "installing Python dependencies (a few minutes on a fresh venv: torch is large)"
  t=$SECONDS
  run_logged pip-requirements "$VPY" -m pip install -r requirements.txt -c constraints.txt
  # sam2 ships as source only; building it against the torch already in the venv takes seconds,
  # while pip's default isolated build would fetch a second torch into a temporary environment.
  run_logged pip-sam2 "$VPY" -m pip install --no-build-isolation -c constraints.txt -r requirements-sam2.txt
  run_logged pip-project "$VPY" -m pip install --no-deps -e .
  # the optional PushT extra (setup.py extras_require["pusht"]), so CI runs tests/test_pusht.py
  run_logged pip-pusht "$VPY" -m pip install -c constraints.txt "gym-pusht==0.1.8"
  if ! cmake_ok; then
    run_logged pip-cmake "$VPY" -m pip install -c constraints.txt "cmake>=3.20"
    hash -r
  fi
  "$VPY" -m pip check >"$LOG_DIR/pip-check.log" 2>&1 || {
    cat "$LOG_DIR/pip-check.log" >&2; die "pip check found broken requirements (see above)"; }
  "$VPY" -c 'import torch, torchvision, diffusers, rclpy' 2>"$LOG_DIR/import-check.log" || {
    tail -n 20 "$LOG_DIR/import-check.log" >&2; die "core imports fail after pip install (see above)"; }
  say "Python dependencies ready ($((SECONDS - t)) s)"
  # record progress so that a failure in step 4 does not redo step 3
  mkdir -p "$(dirname "$STAMP")"
  printf 'deps=%s\ninterfaces=%s\n' "$DEPS_HASH" "$(stamp_value interfaces)" >"$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
fi

# ---------------------------------------------------------------- 4. ROS 2 interfaces (msg/)
if [ "$FORCE" = 1 ] || [ "$(stamp_value interfaces)" != "$IFACE_HASH" ] || ! iface_installed; then
  say "building ROS 2 interfaces $IFACE_PKG (about a minute on 2 cores)"
  t=$SECONDS
  # Trap 1: the message wheels' exported CMake files name the wheel-build host's Python and numpy
  # include dirs (/opt/python/cp3XX-.../include); point them at this interpreter's (idempotent).
  "$VPY" - "$VENV" <<'EOF' || die "could not patch the rosidl_generator_py CMake exports"
import glob, os, re, sys, sysconfig
import numpy
venv = sys.argv[1]
py_inc, np_inc = sysconfig.get_paths()["include"], numpy.get_include()
pat = re.compile(r'(INTERFACE_INCLUDE_DIRECTORIES ")([^"]*)(")')
def fix(m):
    out = []
    for d in m.group(2).split(";"):
        if d and not os.path.isdir(d) and not d.startswith("${"):
            if "numpy" in d:
                d = np_inc
            elif re.search(r"include/python3\.\d+", d):
                d = py_inc
        out.append(d)
    return m.group(1) + ";".join(out) + m.group(3)
n = 0
for f in glob.glob(os.path.join(venv, "share", "*", "cmake", "export_*__rosidl_generator_pyExport.cmake")):
    s = open(f).read()
    t = pat.sub(fix, s)
    if t != s:
        open(f, "w").write(t)
        n += 1
if n:
    print(f"[setup] pointed {n} rosidl_generator_py CMake export(s) at this Python/numpy")
EOF
  # Remove what a previous build installed (interfaces may have been renamed or deleted).
  if [ -f "$IFACE_MANIFEST" ]; then
    while IFS= read -r f; do
      case "$f" in "$VENV"/*) rm -f "$f" ;; esac
    done <"$IFACE_MANIFEST"
    rm -rf "$VENV"/lib/python3*/site-packages/"$IFACE_PKG" "$VENV/share/$IFACE_PKG" "$VENV/include/$IFACE_PKG"
  fi
  rm -rf "$BUILD_DIR"
  # Trap 2: AMENT_PREFIX_PATH must name the venv at configure time ("No 'rosidl_typesupport_c' found").
  export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  run_logged cmake-configure cmake -S "$ROOT/msg" -B "$BUILD_DIR" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VPY" -DPYTHON_EXECUTABLE="$VPY"
  run_logged cmake-build cmake --build "$BUILD_DIR" -j "$(nproc 2>/dev/null || echo 2)"
  run_logged cmake-install cmake --install "$BUILD_DIR"
  cp "$BUILD_DIR/install_manifest.txt" "$IFACE_MANIFEST"
  "$VPY" -c "import $IFACE_PKG.msg, $IFACE_PKG.srv, $IFACE_PKG.action; $IFACE_PKG.msg.PushStroke()" \
    2>"$LOG_DIR/interfaces-import.log" || {
    tail -n 20 "$LOG_DIR/interfaces-import.log" >&2; die "$IFACE_PKG was built but does not import (see above)"; }
  say "ROS 2 interfaces installed into $VENV ($((SECONDS - t)) s)"
fi

printf 'deps=%s\ninterfaces=%s\n' "$DEPS_HASH" "$IFACE_HASH" >"$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
say "done in $((SECONDS - T0)) s; python: $VPY"
