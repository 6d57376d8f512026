"""The launch files, read with ``ast`` (``launch``/``launch_ros`` are not installable from pip):
every executable is a console script of setup.py, every parameter is a field of that node's
config and passes its validation, and ``kinemask-graph`` starts the same nodes with the same
parameters."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from kinemask_ros.ros.config import NODE_CONFIGS, config_replace, field_types
from kinemask_ros.ros.graph import GRAPHS, Graph, graph_parameters, parse_set

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = {"sim": REPO / "launch" / "kinemask_sim.launch.py", "camera": REPO / "launch" / "kinemask_camera.launch.py"}


def console_scripts() -> dict[str, str]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            eps = ast.literal_eval(node.value)
            return {s.split("=")[0].strip(): s.split("=")[1].strip() for s in eps["console_scripts"]}
    raise AssertionError("setup.py has no entry_points")


def launch_nodes(path: Path) -> list[dict]:
    """Every ``Node(...)`` call: executable, name, parameter names/values, remapped topics."""
    tree = ast.parse(path.read_text(), filename=str(path))
    dicts: dict[str, ast.Dict] = {}
    lists: dict[str, ast.AST] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if isinstance(node.value, ast.Dict):
                dicts[node.targets[0].id] = node.value
            else:
                lists[node.targets[0].id] = node.value
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node"):
            continue
        kw = {k.arg: k.value for k in node.keywords}
        assert "package" not in kw, "nodes are started by console-script name (package=None), see the launch file docstring"
        info = {"executable": ast.literal_eval(kw["executable"]), "name": ast.literal_eval(kw["name"]), "params": {}, "dynamic": set(), "remaps": []}
        for item in kw.get("parameters", ast.List(elts=[])).elts:
            d = dicts[item.id] if isinstance(item, ast.Name) else item
            assert isinstance(d, ast.Dict), f"{path.name}: parameters must be dicts"
            for k, v in zip(d.keys, d.values):
                key = ast.literal_eval(k)
                try:
                    info["params"][key] = ast.literal_eval(v)
                except ValueError:
                    info["dynamic"].add(key)  # a launch substitution (checkpoint / device)
        if "remappings" in kw:
            rem = kw["remappings"]
            rem = lists.get(rem.id, rem) if isinstance(rem, ast.Name) else rem
            info["remaps"] = [ast.literal_eval(t.elts[0]) for t in rem.elts]
        out.append(info)
    return out


@pytest.mark.parametrize("mode", sorted(LAUNCH_FILES))
def test_launch_file_executables_and_parameters(mode):
    path = LAUNCH_FILES[mode]
    compile(path.read_text(), str(path), "exec")
    scripts = console_scripts()
    nodes = launch_nodes(path)
    assert nodes, f"{path.name} starts no Node"
    for n in nodes:
        exe = n["executable"]
        assert exe in scripts, f"{path.name}: executable {exe!r} is not a console script in setup.py"
        module, func = scripts[exe].split(":")
        assert callable(getattr(importlib.import_module(module), func)), f"{scripts[exe]} is not importable"
        cls = NODE_CONFIGS[exe]
        known = set(field_types(cls))
        for name in set(n["params"]) | n["dynamic"]:
            assert name in known, f"{path.name}: {n['name']} has parameter {name!r}, not declared by {cls.__name__} ({sorted(known)})"
        config_replace(cls(), n["params"])  # values pass the node's validation


@pytest.mark.parametrize("mode", sorted(LAUNCH_FILES))
def test_kinemask_graph_matches_launch_file(mode):
    nodes = launch_nodes(LAUNCH_FILES[mode])
    assert [(n["executable"], n["name"]) for n in nodes] == [(s.executable, s.name) for s in GRAPHS[mode]]
    params = graph_parameters(mode, checkpoint="", device="cpu")
    for n, spec in zip(nodes, GRAPHS[mode]):
        expected = dict(n["params"])
        expected.update({k: {"checkpoint": "", "device": "cpu"}[k] for k in n["dynamic"]})
        assert params[spec.name] == expected, f"{mode}: kinemask-graph parameters of {spec.name} differ from the launch file"
        assert spec.takes_model == bool(n["dynamic"])
        assert spec.remap_camera == ("camera/image_raw" in n["remaps"]) or mode == "sim"


def test_graph_command_line_and_validation(tmp_path):
    g = Graph("camera", checkpoint="runs/x", overrides=parse_set(["planner.num_candidates=32", "segmentation.target_label=blue"]),
              camera_topic="/cam/image", workdir=tmp_path)
    cmds = g.commands()
    assert set(cmds) == {"segmentation", "world_model", "planner"}
    assert "camera/image_raw:=/cam/image" in cmds["planner"] and "camera/image_raw:=/cam/image" in cmds["segmentation"]
    assert "__node:=world_model" in cmds["world_model"]
    import json

    doc = json.loads((tmp_path / "kinemask_camera_params.yaml").read_text())
    assert doc["planner"]["ros__parameters"]["num_candidates"] == 32
    assert doc["planner"]["ros__parameters"]["checkpoint"] == "runs/x"
    loop = Graph("sim", close_loop=True, workdir=tmp_path / "loop")
    assert "sim/execute_push:=planner/best_push" in loop.commands()["sim_bridge"] and loop.params["planner"]["replan"] == "on_goal"
    with pytest.raises(ValueError, match="needs the simulator"):
        Graph("camera", close_loop=True)
    with pytest.raises(ValueError, match="num_candidates"):
        Graph("sim", overrides={"planner": {"num_candidates": 0}})
    with pytest.raises(ValueError, match="not in the sim graph"):
        Graph("sim", overrides={"nosuchnode": {"x": 1}})
    with pytest.raises(ValueError, match="NODE.PARAM=VALUE"):
        parse_set(["planner_num_candidates=3"])


def test_kinemask_graph_print_runs():
    r = subprocess.run([sys.executable, "-m", "kinemask_ros.ros.graph", "--print", "--set", "planner.iterations=2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "kinemask-planner-node" in r.stdout and '"iterations": 2' in r.stdout
    r = subprocess.run([sys.executable, "-m", "kinemask_ros.ros.graph", "--print", "--set", "planner.method=bogus"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "method" in r.stderr
