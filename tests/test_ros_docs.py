"""Interfaces and docs cannot drift from the code: the option lists in the ``.action`` / ``.msg``
comments and the parameter tables of docs/ros2.md are read and compared with the code."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from kinemask_ros.ros.config import NODE_CONFIGS, PLANNER_METHODS, PlannerNodeConfig, SegmentationNodeConfig, SimBridgeNodeConfig, WorldModelNodeConfig
from kinemask_ros.ros.config import _AdmissionFields, _CameraFields, _ContactFields, _ScoreFields

REPO = Path(__file__).resolve().parents[1]
SECTIONS = {"segmentation": SegmentationNodeConfig, "world_model": WorldModelNodeConfig, "planner": PlannerNodeConfig,
            "sim_bridge": SimBridgeNodeConfig}
SHARED = (_CameraFields, _ScoreFields, _ContactFields, _AdmissionFields)


def _split_top(cell: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets and quotes."""
    out, depth, quote, cur = [], 0, False, ""
    i = 0
    while i < len(cell):
        ch = cell[i]
        if ch == '"':
            quote = not quote
        elif not quote and ch in "[(":
            depth += 1
        elif not quote and ch in "])":
            depth -= 1
        if not quote and depth == 0 and cell.startswith(sep, i):
            out.append(cur)
            cur = ""
            i += len(sep)
            continue
        cur += ch
        i += 1
    return [x.strip() for x in out + [cur]]


def parameter_tables() -> dict[str, dict[str, object]]:
    """Section ("shared", "segmentation", ...) -> parameter -> documented default ("as above" kept as a string)."""
    text = (REPO / "docs" / "ros2.md").read_text()
    body = text[text.index("## Parameters"):]
    body = body[: body.index("\n## ", 5)]
    tables: dict[str, dict[str, object]] = {}
    section = None
    for line in body.splitlines():
        m = re.match(r"^\*\*(\w+)\*\*\s*$", line)
        if m:
            section = m.group(1)
        elif line.startswith("Shared groups"):
            section = "shared"
        elif line.startswith("| `") and section:
            name_cell, default_cell = [c.strip() for c in line.strip().strip("|").split("|")][:2]
            names = re.findall(r"`([a-z_*]+)`", name_cell)
            sep = " / " if " / " in name_cell else ","
            defaults = _split_top(default_cell, sep) if len(names) > 1 else [default_cell]
            if default_cell == "as above":
                defaults = ["as above"] * len(names)
            assert len(defaults) == len(names), f"{section}: {line}"
            for n, d in zip(names, defaults):
                tables.setdefault(section, {})[n] = d if d == "as above" else yaml.safe_load(d)
    return tables


def _norm(v):
    if isinstance(v, tuple):
        return [float(x) for x in v]
    if isinstance(v, list):
        return [float(x) for x in v]
    if isinstance(v, bool) or isinstance(v, str):
        return v
    return float(v)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_parameter_tables_match_the_configs(section):
    tables = parameter_tables()
    cls = SECTIONS[section]
    default = cls()
    shared = tables["shared"]
    own = tables[section]
    documented = dict(own)
    for base in SHARED:
        if issubclass(cls, base):
            for f in fields(base):
                if f.name in shared:
                    documented.setdefault(f.name, shared[f.name])
    if "camera_*" in documented:  # "`camera_*` | as above"
        documented.pop("camera_*")
        for f in fields(_CameraFields):
            documented.setdefault(f.name, shared[f.name])
    names = {f.name for f in fields(cls)}
    assert set(documented) == names, f"{section}: undocumented {sorted(names - set(documented))}, stale {sorted(set(documented) - names)}"
    for n in names:
        got = _norm(getattr(default, n))
        want = documented[n]
        assert _norm(want) == pytest.approx(got) if not isinstance(got, (str, bool)) else want == got, f"{section}.{n}: docs {want!r}, code {got!r}"


def _options(path: str, field: str) -> list[str]:
    for line in (REPO / "msg" / path).read_text().splitlines():
        code, _, comment = line.partition("#")
        if code.split() and code.split()[-1] == field:
            return re.findall(r'"([a-z_]+)"', comment)
    raise AssertionError(f"{field} not in {path}")


def test_interface_option_lists_match_the_code():
    from kinemask_ros.decision import FEEDBACK_STAGES
    from kinemask_ros.planning import PLANNERS

    assert set(PLANNER_METHODS) == set(PLANNERS)
    assert sorted(_options("action/PlanPush.action", "planner")) == sorted(PLANNER_METHODS)
    assert sorted(_options("msg/ScoredCandidateArray.msg", "planner")) == sorted(PLANNER_METHODS)
    assert _options("action/PlanPush.action", "stage") == list(FEEDBACK_STAGES)


def test_every_node_config_has_a_docs_section():
    tables = parameter_tables()
    assert set(SECTIONS.values()) == set(NODE_CONFIGS.values())
    assert set(SECTIONS) <= set(tables)
