"""Tests for the synthetic dataset generator (sim_bridge/dataset.py): format, determinism, resume, CLI.

Datasets here are tiny (4-12 episodes, 4 per shard) so the whole file runs in a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kinemask_ros.sim_bridge import dataset as ds
from kinemask_ros.sim_bridge.dataset import (
    EVAL_SEED_OFFSET,
    FORMAT,
    KIND_COLLISION,
    KIND_MISS,
    DatasetError,
    GeneratorConfig,
    generate,
    load_dataset,
    load_manifest,
    load_shard,
    main,
)
from kinemask_ros.sim_bridge.scene import PALETTE, PUSHER_ID, SHAPES, SceneConfig

CFG = GeneratorConfig(num_episodes=8, episodes_per_shard=4, seed=0)


def quiet(messages: list[str] | None = None):
    return (lambda m: None) if messages is None else messages.append


def gen(cfg: GeneratorConfig, out: Path, workers: int = 1, messages: list[str] | None = None) -> dict:
    return generate(cfg, out, workers=workers, progress=False, log=quiet(messages))


def shard_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assert_shards_equal(a: Path, b: Path) -> None:
    x, y = shard_arrays(a), shard_arrays(b)
    assert x.keys() == y.keys()
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=f"{a.name}:{k}")
    # npz members carry a fixed zip timestamp, so the files are bit-identical too.
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def fingerprint(d: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in sorted(d.glob("shard_*"))}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """8 episodes in 2 shards, generated once with one worker."""
    out = tmp_path_factory.mktemp("ds") / "base"
    gen(CFG, out)
    return out


def copy_of(base: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(base, dst)  # copy2 keeps mtimes
    return dst


# ----------------------------------------------------------------------------- format
def test_manifest_fields(base: Path) -> None:
    m = load_manifest(base)
    assert m["format"] == FORMAT and m["version"] == ds.FORMAT_VERSION
    assert m["config"] == json.loads(json.dumps(CFG.to_dict()))
    assert GeneratorConfig.from_dict(m["config"]) == CFG
    assert [s["index"] for s in m["shards"]] == [0, 1]
    for s, start in zip(m["shards"], (0, 4)):
        assert s["file"] == f"shard_{s['index']:05d}.npz" and (base / s["file"]).is_file()
        assert s["seed_start"] == start and s["count"] == 4
        assert s["sha256"] == hashlib.sha256((base / s["file"]).read_bytes()).hexdigest()
        arr = shard_arrays(base / s["file"])
        assert s["collisions"] == int(arr["collided"].sum())
        assert s["misses"] == int((arr["kind"] == KIND_MISS).sum())
    st = m["stats"]
    assert st["episodes"] == 8 and st["last_run_workers"] == 1 and st["last_run_episodes_per_second"] > 0
    assert st["collision_episodes"] == sum(s["collisions"] for s in m["shards"])
    assert sorted(p.name for p in base.iterdir()) == ["manifest.json", "shard_00000.npz", "shard_00001.npz"]


def test_shard_arrays_shapes_and_dtypes(base: Path) -> None:
    sc = CFG.scene
    N, T, K, H, W = 4, sc.num_frames, sc.max_objects, sc.camera.height, sc.camera.width
    d = load_shard(base / "shard_00001.npz")
    expect = {
        "seeds": ((N,), np.int64),
        "kind": ((N,), np.uint8),
        "num_objects": ((N,), np.uint8),
        "frames": ((N, T, H, W, 3), np.uint8),
        "masks": ((N, T, H, W), np.uint8),
        "driver": ((N, T, H, W), np.uint8),
        "states": ((N, T, K, 6), np.float32),
        "centroids_px": ((N, T, K, 2), np.float32),
        "velocities_px": ((N, T, K, 2), np.float32),
        "contact_velocity": ((N, K, 2), np.float32),
        "object_shape": ((N, K), np.uint8),
        "object_color": ((N, K), np.uint8),
        "object_size": ((N, K, 2), np.float32),
        "object_mass": ((N, K), np.float32),
        "object_friction": ((N, K), np.float32),
        "stroke": ((N, 5), np.float32),
        "pusher_xy": ((N, T, 2), np.float32),
        "pusher_px": ((N, T, 2), np.float32),
        "pushed_id": ((N,), np.uint8),
        "collided": ((N,), np.bool_),
    }
    assert set(d) == set(expect) | {"meta"}
    for k, (shape, dtype) in expect.items():
        assert d[k].shape == shape and d[k].dtype == dtype, (k, d[k].shape, d[k].dtype)
    np.testing.assert_array_equal(d["seeds"], [4, 5, 6, 7])
    assert set(np.unique(d["driver"])) <= {0, 1} and d["driver"].any()
    for n in range(N):
        k = int(d["num_objects"][n])
        assert sc.min_objects <= k <= sc.max_objects
        assert set(np.unique(d["masks"][n])) <= {0, PUSHER_ID, *range(1, k + 1)}
        # Padding slots beyond num_objects are zero.
        for name in ("states", "centroids_px", "velocities_px"):
            assert np.all(d[name][n, :, k:] == 0), name
        assert np.all(d["object_mass"][n, k:] == 0) and np.all(d["object_mass"][n, :k] > 0)
        assert np.all(d["object_shape"][n, :k] < len(SHAPES)) and np.all(d["object_color"][n, :k] < len(PALETTE))
        assert int(d["pushed_id"][n]) <= k
        assert (d["kind"][n] == KIND_MISS) == (d["pushed_id"][n] == 0)
        assert (d["kind"][n] == KIND_COLLISION) == bool(d["collided"][n])
        # Frame 0 velocity: only the pushed object has one.
        moving = np.flatnonzero(np.any(d["velocities_px"][n, 0] != 0, axis=-1)) + 1
        assert set(moving.tolist()) <= {int(d["pushed_id"][n])}


def test_meta_json(base: Path) -> None:
    d = load_shard(base / "shard_00000.npz")
    assert isinstance(d["meta"], list) and len(d["meta"]) == 4
    for n, m in enumerate(d["meta"]):
        assert m["seed"] == int(d["seeds"][n])
        assert len(m["objects"]) == int(d["num_objects"][n])
        assert isinstance(m["text"], str) and m["text"].startswith("the ")
        if d["pushed_id"][n]:
            assert m["objects"][int(d["pushed_id"][n]) - 1] in m["text"]
            assert m["events"][0]["a"] == PUSHER_ID and m["events"][0]["b"] == int(d["pushed_id"][n])
        for e in m["events"]:
            assert set(e) == {"frame", "time", "a", "b"}
        hits = [e for e in m["events"] if PUSHER_ID not in (e["a"], e["b"])]
        assert bool(hits) == bool(d["collided"][n])
        for e in hits:  # a collision text names both objects
            assert m["objects"][e["a"] - 1] in m["text"] and m["objects"][e["b"] - 1] in m["text"]


def test_load_dataset(base: Path) -> None:
    d = load_dataset(base)
    np.testing.assert_array_equal(d["seeds"], np.arange(8))
    assert d["frames"].shape[0] == 8 and len(d["meta"]) == 8
    d5 = load_dataset(base, max_episodes=5)
    assert d5["frames"].shape[0] == 5 and len(d5["meta"]) == 5
    np.testing.assert_array_equal(d5["frames"], d["frames"][:5])


def test_collision_fraction_one_gives_all_collided(tmp_path: Path) -> None:
    cfg = GeneratorConfig(num_episodes=4, episodes_per_shard=4, seed=100, collision_fraction=1.0, miss_fraction=0.0)
    gen(cfg, tmp_path / "c")
    d = load_dataset(tmp_path / "c")
    assert np.all(d["collided"]) and np.all(d["kind"] == KIND_COLLISION)
    assert np.all(d["num_objects"] >= 2) and np.all(d["pushed_id"] >= 1)


def test_miss_fraction_one_gives_no_pushed_object(tmp_path: Path) -> None:
    cfg = GeneratorConfig(num_episodes=4, episodes_per_shard=4, seed=200, collision_fraction=0.0, miss_fraction=1.0)
    gen(cfg, tmp_path / "m")
    d = load_dataset(tmp_path / "m")
    assert np.all(d["pushed_id"] == 0) and np.all(d["kind"] == KIND_MISS) and not d["collided"].any()
    assert np.all(d["velocities_px"][:, 0] == 0) and np.all(d["contact_velocity"] == 0)
    assert all("misses" in m["text"] for m in d["meta"])


def test_eval_seeds_are_held_out() -> None:
    assert EVAL_SEED_OFFSET >= 1_000_000
    # A training run may end just below the offset and an eval run may start at it ...
    GeneratorConfig(num_episodes=10, seed=EVAL_SEED_OFFSET - 10)
    GeneratorConfig(num_episodes=10, seed=EVAL_SEED_OFFSET)
    # ... but one run may not straddle it.
    with pytest.raises(ValueError, match="EVAL_SEED_OFFSET"):
        GeneratorConfig(num_episodes=10, seed=EVAL_SEED_OFFSET - 5)


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_arrays(base: Path, tmp_path: Path) -> None:
    cfg = replace(CFG, num_episodes=4)  # shard 0 of the base dataset, regenerated
    gen(cfg, tmp_path / "again")
    assert_shards_equal(base / "shard_00000.npz", tmp_path / "again" / "shard_00000.npz")
    other = replace(cfg, seed=1)
    gen(other, tmp_path / "other")
    a, b = shard_arrays(base / "shard_00000.npz"), shard_arrays(tmp_path / "other" / "shard_00000.npz")
    # seed 1 is episode 1 of the base and episode 0 of the other
    np.testing.assert_array_equal(a["frames"][1], b["frames"][0])
    assert not np.array_equal(a["frames"][0], b["frames"][0])


def test_two_workers_give_identical_data(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "w2"
    m = gen(CFG, out, workers=2)
    assert m["stats"]["last_run_workers"] == 2
    assert [s["index"] for s in m["shards"]] == [0, 1]
    for name in ("shard_00000.npz", "shard_00001.npz"):
        assert_shards_equal(base / name, out / name)


# ----------------------------------------------------------------------------- resume
def test_resume_only_adds_new_shards(base: Path, tmp_path: Path) -> None:
    out = copy_of(base, tmp_path)
    before = fingerprint(out)
    msgs: list[str] = []
    m = gen(replace(CFG, num_episodes=12), out, messages=msgs)
    after = fingerprint(out)
    assert set(after) == {"shard_00000.npz", "shard_00001.npz", "shard_00002.npz"}
    for name, fp in before.items():
        assert after[name] == fp, f"{name} was rewritten"
    assert [s["index"] for s in m["shards"]] == [0, 1, 2] and m["stats"]["episodes"] == 12
    assert m["config"]["num_episodes"] == 12 and load_manifest(out)["config"]["num_episodes"] == 12
    np.testing.assert_array_equal(load_shard(out / "shard_00002.npz")["seeds"], [8, 9, 10, 11])
    assert any("12 episodes" in s and "this run 4 episodes" in s for s in msgs), msgs
    # Rerunning the same command is a no-op.
    msgs.clear()
    gen(replace(CFG, num_episodes=12), out, messages=msgs)
    assert fingerprint(out) == after and any("nothing to do" in s for s in msgs)


def test_resume_regenerates_short_last_shard(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "six"
    gen(replace(CFG, num_episodes=6), out)  # shard 1 holds seeds 4, 5 only
    assert load_manifest(out)["shards"][1]["count"] == 2
    before = fingerprint(out)
    msgs: list[str] = []
    m = gen(CFG, out, messages=msgs)  # 8 episodes: shard 1 must grow to 4
    assert [s["count"] for s in m["shards"]] == [4, 4]
    assert fingerprint(out)["shard_00000.npz"] == before["shard_00000.npz"]
    assert any("shard_00001.npz" in s and "regenerated" in s for s in msgs), msgs
    for name in ("shard_00000.npz", "shard_00001.npz"):
        assert_shards_equal(base / name, out / name)


def test_partial_shard_is_reported_and_regenerated(base: Path, tmp_path: Path) -> None:
    out = copy_of(base, tmp_path)
    # Simulate a run killed while writing shard 1: a .tmp file and no manifest entry.
    man = json.loads((out / "manifest.json").read_text())
    man["shards"] = [s for s in man["shards"] if s["index"] != 1]
    (out / "manifest.json").write_text(json.dumps(man))
    (out / "shard_00001.npz").rename(out / "shard_00001.npz.tmp")
    (out / "shard_00001.npz.tmp").write_bytes(b"truncated")
    before = fingerprint(out)["shard_00000.npz"]
    msgs: list[str] = []
    m = gen(CFG, out, messages=msgs)
    assert any("shard_00001.npz.tmp" in s for s in msgs), msgs
    assert not (out / "shard_00001.npz.tmp").exists()
    assert [s["index"] for s in m["shards"]] == [0, 1]
    assert fingerprint(out)["shard_00000.npz"] == before
    assert_shards_equal(base / "shard_00001.npz", out / "shard_00001.npz")


def test_interrupted_first_shard_can_be_resumed(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "killed"
    cfg = replace(CFG, num_episodes=4)
    real = ds._make_shard

    def killed(args):
        (Path(args[2]) / (ds.shard_name(args[1]) + ".tmp")).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ds, "_make_shard", killed)
    with pytest.raises(KeyboardInterrupt):
        gen(cfg, out)
    # The manifest is written before the first shard, so the directory is recognisably ours.
    assert (out / "manifest.json").exists() and load_manifest(out)["shards"] == []
    monkeypatch.setattr(ds, "_make_shard", real)
    msgs: list[str] = []
    m = gen(cfg, out, messages=msgs)
    assert any("shard_00000.npz.tmp" in s for s in msgs)
    assert [s["index"] for s in m["shards"]] == [0] and (out / "shard_00000.npz").exists()


def test_non_empty_dir_without_manifest_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my files")
    with pytest.raises(DatasetError, match="manifest"):
        gen(replace(CFG, num_episodes=4), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]  # nothing written
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(DatasetError, match="not a directory"):
        gen(replace(CFG, num_episodes=4), f)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"scene": replace(CFG.scene, num_frames=8)}, "scene.num_frames"),
        ({"scene": replace(CFG.scene, camera=replace(CFG.scene.camera, width=48))}, "scene.camera.width"),
        ({"collision_fraction": 0.2}, "collision_fraction"),
        ({"episodes_per_shard": 2}, "episodes_per_shard"),
        ({"seed": 3}, "seed"),
        ({"num_episodes": 4}, "num_episodes"),
    ],
)
def test_other_config_is_refused(base: Path, tmp_path: Path, change: dict, field: str) -> None:
    out = copy_of(base, tmp_path)
    before = fingerprint(out), (out / "manifest.json").read_text()
    with pytest.raises(DatasetError, match=rf"another configuration .*{field}"):
        gen(replace(CFG, **change), out)
    assert (fingerprint(out), (out / "manifest.json").read_text()) == before


def test_foreign_manifest_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": "something.else"}))
    with pytest.raises(DatasetError, match="format"):
        gen(replace(CFG, num_episodes=4), out)


def test_unlisted_shard_is_refused(base: Path, tmp_path: Path) -> None:
    out = copy_of(base, tmp_path)
    shutil.copy(out / "shard_00000.npz", out / "shard_00007.npz")
    with pytest.raises(DatasetError, match="shard_00007.npz is not listed"):
        gen(replace(CFG, num_episodes=12), out)
    assert not (out / "shard_00002.npz").exists()


def test_missing_listed_shard_is_refused(base: Path, tmp_path: Path) -> None:
    out = copy_of(base, tmp_path)
    (out / "shard_00001.npz").unlink()
    with pytest.raises(DatasetError, match="shard_00001.npz is listed"):
        gen(CFG, out)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="kinemask-generate"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_episodes": 0}, "num_episodes"),
        ({"seed": -1}, "seed"),
        ({"episodes_per_shard": 0}, "episodes_per_shard"),
        ({"collision_fraction": 1.5}, "collision_fraction"),
        ({"miss_fraction": float("nan")}, "miss_fraction"),
        ({"collision_fraction": 0.7, "miss_fraction": 0.5}, "miss_fraction"),
        ({"max_tries": 0}, "max_tries"),
        ({"scene": SceneConfig(max_objects=1)}, "max_objects"),
    ],
)
def test_generator_config_rejects_bad_values(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GeneratorConfig(**kwargs)


# ----------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(
    "args, field",
    [
        (["--frames", "1"], "num_frames"),
        (["--episodes", "-3"], "num_episodes"),
        (["--shard-size", "0"], "episodes_per_shard"),
        (["--width", "2"], "width"),
        (["--collision-fraction", "2"], "collision_fraction"),
        (["--min-objects", "3", "--max-objects", "2"], "min_objects"),
    ],
)
def test_cli_bad_values(tmp_path: Path, capsys, args: list[str], field: str) -> None:
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--no-progress", "--workers", "1", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kinemask-generate: error:") and field in err and "Traceback" not in err
    assert not out.exists()


def test_cli_refuses_foreign_dir(tmp_path: Path, capsys) -> None:
    (tmp_path / "x.txt").write_text("x")
    assert main(["--out", str(tmp_path), "--episodes", "4", "--no-progress"]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_cli_resume_and_preview(base: Path, tmp_path: Path, capsys) -> None:
    import imageio.v2 as imageio

    out = copy_of(base, tmp_path)
    before = fingerprint(out)
    rc = main(["--out", str(out), "--episodes", "8", "--shard-size", "4", "--seed", "0", "--workers", "1",
               "--no-progress", "--preview", "4"])
    assert rc == 0
    assert fingerprint(out) == before  # same settings as the API call: resumed, nothing regenerated
    printed = capsys.readouterr().out
    assert "nothing to do" in printed and "contact_sheet.png" in printed
    sheet = imageio.imread(out / "preview" / "contact_sheet.png")
    assert sheet.ndim == 3 and sheet.shape[2] == 3
    assert sheet.shape[0] > 4 * 32 * 4 and sheet.shape[1] > 6 * 32 * 4  # 4 rows x 6 tiles at 4x
    from PIL import Image

    # Pillow merges identical consecutive frames (objects at rest) and adds up their durations,
    # so check the frame size and the total play time: T frames at 8 fps.
    gif = imageio.mimread(out / "preview" / "episodes.gif")
    assert 2 <= len(gif) <= CFG.scene.num_frames and gif[0].shape[:2] == (2 + 32 * 4 + 2, 2 + 4 * (32 * 4 + 2))
    with Image.open(out / "preview" / "episodes.gif") as im:
        total_ms = 0
        for i in range(im.n_frames):
            im.seek(i)
            total_ms += im.info["duration"]
    assert total_ms == pytest.approx(CFG.scene.num_frames * 1000 / 8, abs=10 * CFG.scene.num_frames)
    texts = (out / "preview" / "texts.txt").read_text().splitlines()
    assert len(texts) == 4 and texts[0].startswith("0: the ")


def test_manifests_written_before_looks_existed_still_resume() -> None:
    from kinemask_ros.sim_bridge.dataset import _config_diff
    from kinemask_ros.sim_bridge.look import LookConfig

    old = {"scene": {"num_frames": 16}, "seed": 0}
    assert _config_diff(old, {"scene": {"num_frames": 16, "look": LookConfig().to_dict()}, "seed": 0}) == []
    assert _config_diff(old, {"scene": {"num_frames": 16, "look": LookConfig.randomized().to_dict()}, "seed": 0}) == ["scene.look"]
