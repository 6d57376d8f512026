"""Contact model vs the simulator: does the push -> velocity model predict the object the stroke
touches first and its measured post-contact velocity? Held-out episodes; writes
``OUT/contact_model.json`` and ``.md``.

    python benchmarks/contact_model.py --eval-data data/eval
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks_common import machine  # noqa: E402

from kinemask_ros.camera import CameraConfig, CameraModel  # noqa: E402
from kinemask_ros.contact import ContactModel  # noqa: E402
from kinemask_ros.push import PushStroke  # noqa: E402
from kinemask_ros.sim_bridge.dataset import load_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eval-data", default="data/eval")
    p.add_argument("--episodes", type=int, default=400)
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    d = load_dataset(a.eval_data, a.episodes)
    cm = ContactModel(CameraModel(CameraConfig(width=d["frames"].shape[3], height=d["frames"].shape[2])))
    tid_ok, err, rel, ang, speed_ratio, sticking = [], [], [], [], [], []
    for n in range(len(d["seeds"])):
        p_true = int(d["pushed_id"][n])
        pred = cm.predict(d["masks"][n, 0], PushStroke.from_array(d["stroke"][n]))
        tid_ok.append(pred.target_id == p_true)
        if not p_true or pred.target_id != p_true:
            continue
        vt = d["velocities_px"][n, 0, p_true - 1].astype(float)
        vp = pred.velocity_px.astype(float)
        if np.linalg.norm(vt) < 1e-6:
            continue
        err.append(np.linalg.norm(vp - vt))
        rel.append(np.linalg.norm(vp - vt) / np.linalg.norm(vt))
        if np.linalg.norm(vp) > 1e-6:
            speed_ratio.append(np.linalg.norm(vt) / np.linalg.norm(vp))
            da = np.degrees(np.arctan2(vt[1], vt[0]) - np.arctan2(vp[1], vp[0]))
            ang.append(abs((da + 180) % 360 - 180))
        sticking.append(pred.sticking)
    res = {"machine": machine(), "episodes": len(d["seeds"]), "target_id_accuracy": float(np.mean(tid_ok)),
           "velocity_error_px_per_frame": {"mean": float(np.mean(err)), "median": float(np.median(err))},
           "relative_velocity_error": {"mean": float(np.mean(rel)), "median": float(np.median(rel))},
           "direction_error_deg": {"mean": float(np.mean(ang)), "median": float(np.median(ang))},
           "measured_over_predicted_speed_median": float(np.median(speed_ratio)), "sticking_fraction": float(np.mean(sticking)),
           "mean_measured_speed_px_per_frame": float(np.mean([np.linalg.norm(v) for v in d["velocities_px"][:, 0].reshape(-1, 2) if np.linalg.norm(v) > 0]))}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "contact_model.json").write_text(json.dumps(res, indent=1))
    md = "\n".join([f"# Contact model vs simulator ({res['machine']})", "",
                    f"{res['episodes']} held-out episodes; velocities in px/frame at 32x32 (mean measured speed "
                    f"{res['mean_measured_speed_px_per_frame']:.2f}).", "",
                    "| metric | value |", "|---|---|",
                    f"| first-touched object correct | {res['target_id_accuracy']:.3f} |",
                    f"| velocity error mean / median [px/frame] | {err and np.mean(err):.3f} / {np.median(err):.3f} |",
                    f"| relative velocity error median | {np.median(rel):.3f} |",
                    f"| direction error mean / median [deg] | {np.mean(ang):.1f} / {np.median(ang):.1f} |",
                    f"| measured / predicted speed (median) | {res['measured_over_predicted_speed_median']:.3f} |",
                    f"| sticking contacts | {res['sticking_fraction']:.2f} |"]) + "\n"
    (out / "contact_model.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
