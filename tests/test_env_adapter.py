"""The planar-push adapter protocol on our own tabletop env (and PushT when gym-pusht is installed)."""

from __future__ import annotations

import numpy as np
import pytest

from kinemask_ros.camera import CameraModel
from kinemask_ros.envs.adapter import AdapterSpec, PlanarPushAdapter, PlaneCamera, TabletopAdapter, UnreachableStroke
from kinemask_ros.push import PushStroke


@pytest.fixture(scope="module")
def tabletop():
    ad = TabletopAdapter(seed=0)
    yield ad
    ad.close()


def test_tabletop_adapter_protocol_and_observation(tabletop):
    assert isinstance(tabletop, PlanarPushAdapter)
    obs = tabletop.reset(seed=1)
    H, W = obs.instance_mask.shape
    assert obs.rgb.shape == (H, W, 3) and obs.rgb.dtype == np.uint8
    k = len(obs.object_ids)
    assert k >= 1 and obs.poses.shape == (k, 3) and tabletop.spec.object_ids == obs.object_ids
    assert tabletop.spec.units == "m"
    # the camera model maps each object's pose into its own mask pixels
    for i, oid in enumerate(obs.object_ids):
        u, v = np.floor(obs.camera.project(obs.poses[i, :2])).astype(int)
        assert obs.instance_mask[v, u] == oid
    # and agrees with the env's pinhole camera on the poses' plane
    cm = CameraModel(tabletop.env.config.scene.camera)
    xy = np.array([[0.05, -0.03], [-0.1, 0.12]])
    z = tabletop.env.config.scene.object_height / 2
    assert np.allclose(obs.camera.project(xy), cm.project_table(xy, z), atol=1e-6)


def test_tabletop_get_set_state_reproduces_a_stroke(tabletop):
    tabletop.reset(seed=2)
    pose = tabletop.poses()[tabletop.env.target - 1]
    stroke = PushStroke(float(pose[0]) - 0.06, float(pose[1]), 0.0, 0.08, 0.3)
    s = tabletop.get_state()
    a = tabletop.execute(stroke)
    tabletop.set_state(s)
    assert np.array_equal(tabletop.poses(), a.before)
    b = tabletop.execute(stroke)
    assert np.array_equal(a.after, b.after)
    assert a.track.shape[1:] == (len(a.before), 3) and a.env_steps == 1
    assert np.linalg.norm(a.after - a.before, axis=1).max() > 1e-3  # the push moved something


def test_tabletop_refuses_strokes_out_of_bounds(tabletop):
    tabletop.reset(seed=3)
    before = tabletop.poses()
    with pytest.raises(UnreachableStroke, match="length"):
        tabletop.execute(PushStroke(0.0, 0.0, 0.0, 0.5, 0.3))
    assert np.array_equal(tabletop.poses(), before)
    with pytest.raises(ValueError, match="size"):
        tabletop.camera(999)


def test_plane_camera_and_spec_validation():
    cam = PlaneCamera.scaling(64, 64, 0.125)
    assert np.allclose(cam.project(np.array([256.0, 128.0])), [32.0, 16.0])
    assert np.allclose(cam.unproject(cam.project(np.array([[1.0, 2.0], [3.0, 4.0]]))), [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="invertible"):
        PlaneCamera(8, 8, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="units"):
        AdapterSpec("x", "inch", (0, 0), (1, 1), 0.1, ())


def test_pusht_is_an_adapter_too():
    pytest.importorskip("gym_pusht")
    from kinemask_ros.envs.pusht import PushTAdapter

    ad = PushTAdapter(render=False)
    assert isinstance(ad, PlanarPushAdapter)
    obs = ad.reset(seed=0)
    assert obs.poses.shape == (1, 3) and ad.spec.units == "px" and ad.spec.goal is not None
    ad.close()
