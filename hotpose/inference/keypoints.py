"""2D keypoint files and joint layouts: COCO-17 and BlazePose-33 → Human3.6M-17 (numpy only).

A keypoint track is ``points (t, 17, 2)`` pixels in H36M order (:mod:`hotpose.data.skeleton`), optional
``scores (t, 17)`` in [0, 1], a per-frame ``detected (t,)`` flag and the image size. Missing values are
NaN; :func:`hotpose.inference.lifting.fill_missing` fills them before lifting.

Mappings (tables in ``docs/inference.md``):

- **COCO-17 → H36M-17** (:func:`coco_to_h36m`): the recipe of the official HoT demo (shared by
  MotionAGFormer's and GAST-Net's demos), so official weights see the input their demo gives them.
  13 joints are copied; pelvis, spine, thorax and head are built from hips, shoulders, nose and eyes.
- **BlazePose-33 → H36M-17** (:func:`blazepose_to_h36m`): 12 joints copied; pelvis = hip midpoint,
  thorax = shoulder midpoint, spine = midpoint of pelvis and thorax, head top extrapolated along the
  mouth → eyes axis (works for any head orientation, unlike image-y offsets), joint 9 = the nose (or the
  thorax / head-top midpoint, the mini data's geometry).

Left and right are the subject's own sides in all three layouts, so no joint is swapped.
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hotpose.data.skeleton import NUM_JOINTS

log = logging.getLogger(__name__)

COCO_JOINT_NAMES: tuple[str, ...] = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
    "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)
BLAZEPOSE_JOINT_NAMES: tuple[str, ...] = (
    "nose", "l_eye_inner", "l_eye", "l_eye_outer", "r_eye_inner", "r_eye", "r_eye_outer", "l_ear", "r_ear",
    "mouth_l", "mouth_r", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
    "l_pinky", "r_pinky", "l_index", "r_index", "l_thumb", "r_thumb", "l_hip", "r_hip", "l_knee", "r_knee",
    "l_ankle", "r_ankle", "l_heel", "r_heel", "l_foot_index", "r_foot_index",
)
LAYOUT_JOINTS: dict[str, int] = {"h36m": NUM_JOINTS, "coco": 17, "blazepose": 33}
LAYOUTS = tuple(LAYOUT_JOINTS)

#: H36M joint ← COCO joint, for the 13 joints both layouts have.
COCO_TO_H36M_DIRECT: dict[int, int] = {
    1: 12, 2: 14, 3: 16, 4: 11, 5: 13, 6: 15, 9: 0, 11: 5, 12: 7, 13: 9, 14: 6, 15: 8, 16: 10,
}
#: H36M joint ← BlazePose landmark, for the 12 limb joints.
BLAZEPOSE_TO_H36M_DIRECT: dict[int, int] = {
    1: 24, 2: 26, 3: 28, 4: 23, 5: 25, 6: 27, 11: 11, 12: 13, 13: 15, 14: 12, 15: 14, 16: 16,
}
#: BlazePose landmarks in COCO-17 order (nose, eyes, ears, then the limbs).
BLAZEPOSE_TO_COCO: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
#: Head top = eye midpoint + HEAD_TOP_SCALE · (eye midpoint − mouth midpoint): eyes→crown ≈ 1.5–1.7 ×
#: mouth→eyes on adults; a heuristic, not a measured constant.
HEAD_TOP_SCALE = 1.5
NECK_NOSE_CHOICES = ("nose", "midpoint")


def _mean(points: np.ndarray, joints: list[int]) -> np.ndarray:
    return points[..., joints, :].mean(axis=-2)


def _check_joints(points: np.ndarray, joints: int, what: str) -> None:
    if points.ndim < 2 or points.shape[-2] != joints or points.shape[-1] != 2:
        raise ValueError(f"{what} expects points (..., {joints}, 2), got shape {tuple(points.shape)}")


def _check_scores(points: np.ndarray, scores: np.ndarray | None, what: str) -> None:
    if scores is not None and scores.shape != points.shape[:-1]:
        raise ValueError(f"{what}: scores must have shape {tuple(points.shape[:-1])} (one per joint), "
                         f"got {tuple(scores.shape)}")


def coco_to_h36m(points: np.ndarray, scores: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """COCO-17 ``(..., 17, 2)`` (+ scores ``(..., 17)``) → H36M-17, the official HoT demo's recipe.

    Synthesised joints (``m_s`` = shoulder midpoint, ``y_e`` = mean eye y, ``nose`` = COCO 0):

    - 0 pelvis = hip midpoint;
    - 7 spine = mean of both shoulders and both hips, then its x pushed away from mean(x0, x8) by twice
      its offset from it;
    - 8 thorax = ``m_s + (nose − m_s) / 3``, then ``y −= 2/3 · (y_e − y_nose)`` (down the image by 2/3 of
      the eye-to-nose height when upright);
    - 9 = the nose moved a quarter of the way to ``m_s``;
    - 10 head: x = mean x of eyes and ears, y = ``y_l_eye + y_r_eye − y_nose``.
    - Scores: direct joints keep theirs; 0 = mean of the hips', 8 = mean of the shoulders',
      7 = mean(new 0, new 8), 10 = mean of eyes' and ears'.
    """
    _check_joints(points, 17, "coco_to_h36m")
    _check_scores(points, scores, "coco_to_h36m")
    p = np.asarray(points, dtype=np.float64)
    out = np.zeros(p.shape[:-2] + (NUM_JOINTS, 2), dtype=np.float64)
    for h36m, coco in COCO_TO_H36M_DIRECT.items():
        out[..., h36m, :] = p[..., coco, :]
    shoulders = _mean(p, [5, 6])
    nose = p[..., 0, :]
    out[..., 0, :] = _mean(p, [11, 12])
    thorax = shoulders + (nose - shoulders) / 3
    out[..., 7, :] = _mean(p, [5, 6, 11, 12])
    out[..., 7, 0] += 2 * (out[..., 7, 0] - (out[..., 0, 0] + thorax[..., 0]) / 2)
    eye_y = (p[..., 1, 1] + p[..., 2, 1]) / 2
    thorax[..., 1] -= (eye_y - nose[..., 1]) * 2 / 3
    out[..., 8, :] = thorax
    out[..., 9, :] = nose - (nose - shoulders) / 4
    out[..., 10, 0] = p[..., 1:5, 0].mean(axis=-1)
    out[..., 10, 1] = p[..., 1, 1] + p[..., 2, 1] - nose[..., 1]
    out_scores = None
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        out_scores = np.zeros(s.shape[:-1] + (NUM_JOINTS,), dtype=np.float64)
        for h36m, coco in COCO_TO_H36M_DIRECT.items():
            out_scores[..., h36m] = s[..., coco]
        out_scores[..., 0] = s[..., [11, 12]].mean(axis=-1)
        out_scores[..., 8] = s[..., [5, 6]].mean(axis=-1)
        out_scores[..., 7] = (out_scores[..., 0] + out_scores[..., 8]) / 2
        out_scores[..., 10] = s[..., 1:5].mean(axis=-1)
        out_scores = out_scores.astype(np.float32)
    return out.astype(np.float32), out_scores


def blazepose_to_h36m(points: np.ndarray, scores: np.ndarray | None = None, neck_nose: str = "nose",
                      head_top_scale: float = HEAD_TOP_SCALE) -> tuple[np.ndarray, np.ndarray | None]:
    """BlazePose-33 ``(..., 33, 2)`` (+ visibilities ``(..., 33)``) → H36M-17.

    0 pelvis = mid-hips (23, 24); 8 thorax = mid-shoulders (11, 12); 7 spine = mean(0, 8);
    10 head top = ``E + head_top_scale · (E − M)`` with ``E`` = mid-eyes (2, 5), ``M`` = mid-mouth (9, 10);
    9 = the nose (``neck_nose="nose"``) or mean(8, 10) (``"midpoint"``). A synthesised joint's score is
    the mean of its sources' scores.
    """
    _check_joints(points, 33, "blazepose_to_h36m")
    _check_scores(points, scores, "blazepose_to_h36m")
    if neck_nose not in NECK_NOSE_CHOICES:
        raise ValueError(f"blazepose_to_h36m: neck_nose must be one of {NECK_NOSE_CHOICES}, got {neck_nose!r}")
    p = np.asarray(points, dtype=np.float64)
    out = np.zeros(p.shape[:-2] + (NUM_JOINTS, 2), dtype=np.float64)
    for h36m, blaze in BLAZEPOSE_TO_H36M_DIRECT.items():
        out[..., h36m, :] = p[..., blaze, :]
    out[..., 0, :] = _mean(p, [23, 24])
    out[..., 8, :] = _mean(p, [11, 12])
    out[..., 7, :] = (out[..., 0, :] + out[..., 8, :]) / 2
    eyes, mouth = _mean(p, [2, 5]), _mean(p, [9, 10])
    out[..., 10, :] = eyes + head_top_scale * (eyes - mouth)
    out[..., 9, :] = p[..., 0, :] if neck_nose == "nose" else (out[..., 8, :] + out[..., 10, :]) / 2
    out_scores = None
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        out_scores = np.zeros(s.shape[:-1] + (NUM_JOINTS,), dtype=np.float64)
        for h36m, blaze in BLAZEPOSE_TO_H36M_DIRECT.items():
            out_scores[..., h36m] = s[..., blaze]
        out_scores[..., 0] = s[..., [23, 24]].mean(axis=-1)
        out_scores[..., 8] = s[..., [11, 12]].mean(axis=-1)
        out_scores[..., 7] = (out_scores[..., 0] + out_scores[..., 8]) / 2
        out_scores[..., 10] = s[..., [2, 5, 9, 10]].mean(axis=-1)
        out_scores[..., 9] = s[..., 0] if neck_nose == "nose" else (out_scores[..., 8] + out_scores[..., 10]) / 2
        out_scores = out_scores.astype(np.float32)
    return out.astype(np.float32), out_scores


def to_h36m(points: np.ndarray, scores: np.ndarray | None, layout: str, neck_nose: str = "nose"
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Points ``(..., J, 2)`` of ``layout`` (``h36m``, ``coco`` or ``blazepose``) → H36M-17."""
    if layout == "h36m":
        _check_joints(points, NUM_JOINTS, "to_h36m(layout='h36m')")
        _check_scores(points, scores, "to_h36m")
        return (np.asarray(points, dtype=np.float32),
                None if scores is None else np.asarray(scores, dtype=np.float32))
    if layout == "coco":
        return coco_to_h36m(points, scores)
    if layout == "blazepose":
        return blazepose_to_h36m(points, scores, neck_nose=neck_nose)
    raise ValueError(f"unknown keypoint layout {layout!r}; expected one of {LAYOUTS}")


@dataclass
class KeypointTrack:
    """One person's 2D keypoints over a video, in H36M-17 order.

    Attributes:
        points: ``(t, 17, 2)`` float32 pixels (x right, y down); NaN where unknown.
        scores: ``(t, 17)`` float32 confidences, or None when the source had none.
        detected: ``(t,)`` bool, True where the frame had a detection.
        width, height: image size in pixels (the screen normalisation needs it).
        fps: frame rate when known.
        source_layout: the layout the keypoints came in (``h36m``, ``coco``, ``blazepose``).
    """

    points: np.ndarray
    scores: np.ndarray | None
    detected: np.ndarray
    width: int
    height: int
    fps: float | None = None
    source_layout: str = "h36m"

    def __post_init__(self) -> None:
        t = len(self.points)
        if self.points.ndim != 3 or self.points.shape[1:] != (NUM_JOINTS, 2) or t == 0:
            raise ValueError(f"keypoint track: points must be (t >= 1, {NUM_JOINTS}, 2), "
                             f"got {tuple(self.points.shape)}")
        if self.scores is not None and self.scores.shape != (t, NUM_JOINTS):
            raise ValueError(f"keypoint track: scores must be ({t}, {NUM_JOINTS}), got {tuple(self.scores.shape)}")
        if self.detected.shape != (t,):
            raise ValueError(f"keypoint track: detected must be ({t},), got {tuple(self.detected.shape)}")
        check_image_size(self.width, self.height)

    def __len__(self) -> int:
        return len(self.points)


def check_image_size(width: Any, height: Any, where: str = "") -> tuple[int, int]:
    """``(width, height)`` as positive ints; ValueError naming the problem otherwise."""
    suffix = f" ({where})" if where else ""
    if width is None or height is None:
        raise ValueError(f"image size unknown{suffix}: pass width= and height= (pixels) or store "
                         "'width' and 'height' in the keypoint file")
    try:
        w, h = float(width), float(height)
    except (TypeError, ValueError):
        raise ValueError(f"image size must be numbers{suffix}, got width={width!r}, height={height!r}") from None
    if not (np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0 and w.is_integer() and h.is_integer()):
        raise ValueError(f"image size must be positive whole pixels{suffix}, got width={width!r}, "
                         f"height={height!r}")
    return int(w), int(h)


def layout_of(joints: int, layout: str | None, where: str) -> str:
    """The layout of keypoints with ``joints`` per frame: ``layout`` if given (checked), else 33 →
    BlazePose; 17 is ambiguous (H36M or COCO) and must be said."""
    if layout is not None:
        if layout not in LAYOUT_JOINTS:
            raise ValueError(f"{where}: unknown layout {layout!r}; expected one of {LAYOUTS}")
        if LAYOUT_JOINTS[layout] != joints:
            raise ValueError(f"{where}: layout {layout!r} has {LAYOUT_JOINTS[layout]} joints, the keypoints "
                             f"have {joints}")
        return layout
    if joints == 33:
        return "blazepose"
    if joints == 17:
        raise ValueError(f"{where}: 17 joints can be H36M or COCO order; pass layout=h36m or layout=coco "
                         "(or store 'layout' in the file)")
    raise ValueError(f"{where}: {joints} joints per frame; supported are 17 (h36m, coco) and 33 (blazepose)")


KEYPOINT_KEYS = ("keypoints", "reconstruction")


def _read_file(path: Path) -> dict[str, Any]:
    """The raw fields of a keypoint file: ``keypoints`` plus whatever metadata it stores."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return {"keypoints": np.load(path, allow_pickle=False)}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files}
        key = next((k for k in KEYPOINT_KEYS if k in fields), None)
        if key is None:
            raise ValueError(f"{path}: no keypoint array; expected one of the keys {list(KEYPOINT_KEYS)}, "
                             f"found {sorted(fields)}")
        fields["keypoints"] = fields.pop(key)
        return {k: (v.item() if v.ndim == 0 else v) for k, v in fields.items()}
    if suffix == ".json":
        data = json.loads(path.read_text())
        if isinstance(data, list):
            data = {"keypoints": data}
        if not isinstance(data, dict) or "keypoints" not in data:
            raise ValueError(f"{path}: a keypoint json is a list of frames or an object with 'keypoints'")
        return dict(data)
    raise ValueError(f"{path}: unsupported keypoint file type {suffix!r}; use .npz, .npy or .json")


def _origin_frames_missing(array: np.ndarray, where: str | Path) -> np.ndarray:
    """Frames whose every joint is at exactly (0, 0) -- OpenPose-style files' "no person" marker -- as NaN.

    Counted as detections they would pull a whole window towards the image corner.
    """
    origin = (array[..., 0] == 0) & (array[..., 1] == 0)
    empty = origin.all(axis=1)
    if empty.any():
        array = array.copy()
        array[empty, :, :2] = np.nan
        log.warning("%s: %d of %d frames have every keypoint at (0, 0), the 'no person' marker of OpenPose-style "
                    "files; they are treated as missing", where, int(empty.sum()), len(array))
    stray = int(origin[~empty].sum())
    if stray:
        log.warning("%s: %d single keypoints at exactly (0, 0) in frames with a person (OpenPose's marker of a "
                    "joint it did not find?) are used as given; set them to NaN to mark them unknown", where, stray)
    return array


def load_keypoints(path: str | Path, layout: str | None = None, width: int | None = None,
                   height: int | None = None, person: int = 0, neck_nose: str = "nose") -> KeypointTrack:
    """Read a keypoint file and convert it to an H36M-17 :class:`KeypointTrack`.

    The keypoint array is ``(t, J, 2)`` pixels, ``(t, J, 3)`` with confidences as the third channel, or
    ``(m, t, J, c)`` with a person axis (``person`` picks one). Optional fields (npz keys / json members):
    ``scores (t, J)``, ``width``, ``height``, ``layout``, ``fps``, ``detected (t,)``. Arguments given here
    override the file's. NaN values mark unknown joints; a frame is ``detected`` when all its joints are
    finite (and the file's ``detected`` says so).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"keypoint file {str(path)!r} does not exist")
    try:
        fields = _read_file(path)
    except ValueError as error:
        if str(path) in str(error):
            raise
        # numpy / json parse errors: truncated or foreign files, pickled object arrays
        raise ValueError(f"{path}: cannot be read as a keypoint file ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: cannot be read as a keypoint file ({error})") from None
    fps = fields.get("fps")
    return track_from_array(
        fields["keypoints"], layout=layout if layout is not None else fields.get("layout"),
        width=width if width is not None else fields.get("width"),
        height=height if height is not None else fields.get("height"), scores=fields.get("scores"),
        detected=fields.get("detected"), person=person, neck_nose=neck_nose,
        fps=None if fps is None else float(fps), where=str(path))


def track_from_array(keypoints: Any, layout: str | None, width: Any, height: Any, scores: Any = None,
                     detected: Any = None, person: int = 0, neck_nose: str = "nose", fps: float | None = None,
                     where: str = "keypoints") -> KeypointTrack:
    """An H36M-17 :class:`KeypointTrack` from a keypoint array of any supported layout.

    ``keypoints`` is ``(t, J, 2)`` pixels, ``(t, J, 3)`` with confidences as the third channel, or
    ``(m, t, J, c)`` with a person axis (``person`` picks one); ``scores (t, J)`` overrides the third
    channel; ``detected (t,)`` marks frames without a detection (their points become NaN). ``layout`` is
    checked against the joint count (17 joints must say ``h36m`` or ``coco``; 33 means BlazePose). Errors
    name ``where`` (the file, or the caller's argument).
    """
    try:
        array = np.asarray(keypoints, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: keypoints are not a numeric array of equal-sized frames") from None
    if array.ndim == 4:
        if not 0 <= person < array.shape[0]:
            raise ValueError(f"{where}: person={person} but the file has {array.shape[0]} people")
        array = array[person]
    if array.ndim != 3 or array.shape[-1] not in (2, 3) or array.shape[0] == 0:
        raise ValueError(f"{where}: keypoints must be (t, joints, 2|3) or (people, t, joints, 2|3) with t >= 1, "
                         f"got shape {array.shape}")
    if np.isinf(array).any():
        raise ValueError(f"{where}: keypoints contain infinite values; mark unknown joints with NaN")
    t, joints = array.shape[:2]
    layout = layout_of(joints, layout, where)
    w, h = check_image_size(width, height, where)
    frame_scores = array[..., 2] if array.shape[-1] == 3 else None
    if scores is not None:
        frame_scores = np.asarray(scores, dtype=np.float64)
        if frame_scores.ndim == 3:
            frame_scores = frame_scores[person]
        if frame_scores.shape != (t, joints):
            raise ValueError(f"{where}: scores must be ({t}, {joints}), got {frame_scores.shape}")
    array = _origin_frames_missing(array, where)
    finite = array[..., :2][np.isfinite(array[..., :2])]
    if finite.size and np.abs(finite).max() <= 2.0 and max(w, h) > 4:
        raise ValueError(f"{where}: every keypoint lies within [-2, 2] in a {w}x{h} image, so they look normalised "
                         "already; keypoint files hold pixel coordinates")
    points, mapped_scores = to_h36m(array[..., :2], frame_scores, layout, neck_nose=neck_nose)
    found = np.isfinite(points).all(axis=(1, 2))
    if detected is not None:
        flags = np.asarray(detected).astype(bool).reshape(-1)
        if flags.shape != (t,):
            raise ValueError(f"{where}: detected must have one flag per frame ({t}), got {flags.shape}")
        found &= flags
        points[~flags] = np.nan
    return KeypointTrack(points, mapped_scores, found, w, h, fps, layout)


def save_keypoints(path: str | Path, points: np.ndarray, scores: np.ndarray | None, width: int, height: int,
                   layout: str, detected: np.ndarray | None = None, fps: float | None = None) -> Path:
    """Write a keypoint npz that :func:`load_keypoints` reads back (any layout)."""
    fields: dict[str, Any] = {"keypoints": np.asarray(points, dtype=np.float32), "width": int(width),
                              "height": int(height), "layout": layout}
    if scores is not None:
        fields["scores"] = np.asarray(scores, dtype=np.float32)
    if detected is not None:
        fields["detected"] = np.asarray(detected, dtype=bool)
    if fps is not None:
        fields["fps"] = float(fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **fields)
    return path
