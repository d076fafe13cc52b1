"""A small Human3.6M-format folder (VideoPose3D npz files) for the paper-protocol harness.

``build_h36m_folder(root)`` writes ``data_3d_h36m.npz`` (32 joints per frame, world frame, metres),
``data_2d_h36m_gt.npz`` and ``data_2d_h36m_cpn_ft_h36m_dbb.npz`` (17 joints, pixels, one array per
camera) for all seven subjects and all 15 actions, with short sequences (the test subjects get a second
take of some actions, ``"Eating 1"``). The 2D files list each subject's actions in another order than
the 3D file, and some 2D sequences run a frame or two past the motion capture, as Human3.6M's do.

Everything comes from integer draws of ``np.random.RandomState`` (a frozen stream) turned into floats
by exactly rounded operations, then projected through the shipped calibration and snapped to 1/16
pixel, so the folder is the same on every machine. :func:`folder_digest` fingerprints the arrays; the
official numbers in ``tests/fixtures/paper/official_numbers.json`` were computed on the folder with
the digest recorded there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from hotpose.data.camera import project_to_pixels, world_to_camera
from hotpose.data.sources import H36M_KEPT_JOINTS, load_cameras

ACTIONS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
           "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether")
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
SEED = 20240604
SYMMETRY = [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]

# A standing pose on Human3.6M's 32-joint skeleton, millimetres, Z up. The 15 joints VideoPose3D drops
# (feet, hands, duplicates) sit on a neighbour, as many of them do in the real files.
_KEPT_TEMPLATE_MM = {
    0: (0, 0, 900), 1: (-130, 0, 900), 2: (-130, 20, 480), 3: (-130, 0, 70), 6: (130, 0, 900),
    7: (130, 20, 480), 8: (130, 0, 70), 12: (0, 10, 1130), 13: (0, 0, 1380), 14: (0, 60, 1480),
    15: (0, 20, 1600), 17: (170, 0, 1350), 18: (200, 30, 1080), 19: (210, 80, 830), 25: (-170, 0, 1350),
    26: (-200, 30, 1080), 27: (-210, 80, 830),
}
_DROPPED_ON = {4: 3, 5: 3, 9: 8, 10: 8, 11: 0, 16: 13, 20: 19, 21: 19, 22: 19, 23: 19, 24: 13, 28: 27,
               29: 27, 30: 27, 31: 27}


def _template() -> np.ndarray:
    pose = np.zeros((32, 3), dtype=np.int64)
    for joint, xyz in _KEPT_TEMPLATE_MM.items():
        pose[joint] = xyz
    for joint, on in _DROPPED_ON.items():
        pose[joint] = pose[on]
    return pose


def _takes(rng: np.random.RandomState, subject: str) -> list[str]:
    names = []
    for action in ACTIONS:
        names.append(action)
        if subject in TEST_SUBJECTS and rng.randint(0, 3) == 0:
            names.append(f"{action} 1")
    return names


def _motion(rng: np.random.RandomState, frames: int) -> np.ndarray:
    """``(frames, 32, 3)`` float32 metres: the template turned by a quarter-turn multiple, walked about
    the capture centre and jittered per joint, all in integer millimetres."""
    pose = _template()
    for _ in range(rng.randint(0, 4)):  # yaw by 90 degrees: (x, y) -> (-y, x), exact in integers
        pose[:, [0, 1]] = np.stack([-pose[:, 1], pose[:, 0]], axis=1)
    root = rng.randint(-600, 601, size=(1, 1, 3)) * np.array([1, 1, 0])
    walk = np.cumsum(rng.randint(-15, 16, size=(frames, 1, 3)), axis=0) * np.array([1, 1, 0])
    jitter = np.cumsum(rng.randint(-9, 10, size=(frames, 32, 3)), axis=0)
    jitter[:, list(_DROPPED_ON)] = jitter[:, list(_DROPPED_ON.values())]
    millimetres = pose[None] + root + walk + np.clip(jitter, -120, 120)
    return millimetres.astype(np.float32) / np.float32(1000.0)


def _pixels(world: np.ndarray, camera, rng: np.random.RandomState, frames_2d: int, noise: bool) -> np.ndarray:
    kept = world[:, list(H36M_KEPT_JOINTS)].astype(np.float64)
    pixels = project_to_pixels(world_to_camera(kept, camera.orientation, camera.translation), camera)
    extra = frames_2d - len(pixels)  # detections past the motion capture: hold the last pose
    pixels = np.concatenate([pixels, np.repeat(pixels[-1:], extra, axis=0)])
    sixteenths = np.round(pixels * 16)
    if noise:
        sixteenths = sixteenths + rng.randint(-40, 41, size=sixteenths.shape)
    return (sixteenths / 16).astype(np.float32)


def _save(path: Path, **arrays: object) -> None:
    np.savez_compressed(path, **{k: np.array(v, dtype=object) for k, v in arrays.items()})


def build_h36m_folder(root: str | Path) -> Path:
    """Write the three npz files into ``root`` (created) and return it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cameras = load_cameras()
    rng = np.random.RandomState(SEED)
    positions_3d: dict[str, dict[str, np.ndarray]] = {}
    gt: dict[str, dict[str, list[np.ndarray]]] = {}
    cpn: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject in (*TRAIN_SUBJECTS, *TEST_SUBJECTS):
        takes = _takes(rng, subject)
        positions_3d[subject], views_gt, views_cpn = {}, {}, {}
        for take in takes:
            frames = rng.randint(4, 16) if subject in TEST_SUBJECTS else 4
            world = _motion(rng, frames)
            positions_3d[subject][take] = world
            views_gt[take], views_cpn[take] = [], []
            for camera in cameras[subject]:
                frames_2d = frames + (rng.randint(0, 3) if subject in TEST_SUBJECTS else 0)
                views_gt[take].append(_pixels(world, camera, rng, frames_2d, noise=False))
                views_cpn[take].append(_pixels(world, camera, rng, frames_2d, noise=True))
        # the 2D files list the actions in another order than the 3D file
        order = [takes[i] for i in rng.permutation(len(takes))]
        gt[subject] = {take: views_gt[take] for take in order}
        cpn[subject] = {take: views_cpn[take] for take in order}
    meta = {"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": SYMMETRY}
    _save(root / "data_3d_h36m.npz", positions_3d=positions_3d)
    _save(root / "data_2d_h36m_gt.npz", positions_2d=gt, metadata=meta)
    _save(root / "data_2d_h36m_cpn_ft_h36m_dbb.npz", positions_2d=cpn, metadata=meta)
    return root


def folder_digest(root: str | Path) -> str:
    """sha256 over every array of the folder, in file order (names, shapes and bytes)."""
    digest = hashlib.sha256()
    for name in ("data_3d_h36m.npz", "data_2d_h36m_gt.npz", "data_2d_h36m_cpn_ft_h36m_dbb.npz"):
        with np.load(Path(root) / name, allow_pickle=True) as npz:
            data = npz["positions_3d" if "3d" in name else "positions_2d"].item()
        for subject, actions in data.items():
            for action, value in actions.items():
                for array in (value if isinstance(value, list) else [value]):
                    digest.update(f"{name}/{subject}/{action}/{array.shape}/{array.dtype}".encode())
                    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
