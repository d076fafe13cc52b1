"""The Human3.6M / VideoPose3D camera model: world→camera, distorted pinhole projection, screen normalisation.

Conventions (those of the published Human3.6M calibration as VideoPose3D stores it):

- ``orientation`` is a unit quaternion ``(w, x, y, z)`` rotating camera axes into world axes, so a world
  point goes to the camera frame as ``X_cam = qrot(conj(q), X_world - t)``.
- ``translation`` is the camera centre in the world frame; the calibration lists it in millimetres,
  :class:`Camera` keeps it in metres.
- Projection: ``XX = clip(X_cam[:2] / X_cam[2], -1, 1)``, radial ``1 + k1 r² + k2 r⁴ + k3 r⁶`` with
  ``r² = |XX|²``, tangential ``p1 XX_x + p2 XX_y``, ``uv = f ⊙ (XX (radial + tangential) + (p1, p2) r²) + c``.
- Screen normalisation maps x from ``[0, w]`` to ``[-1, 1]`` and y with the same scale:
  ``x / w * 2 - [1, h / w]``.

All functions take numpy arrays or torch tensors with any leading dims and return the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Camera:
    """One calibrated camera. Arrays are float64; ``translation`` is in metres."""

    id: str
    res_w: int
    res_h: int
    center: np.ndarray  # (2,) pixels
    focal_length: np.ndarray  # (2,) pixels
    radial_distortion: np.ndarray  # (3,) k1, k2, k3
    tangential_distortion: np.ndarray  # (2,) p1, p2
    orientation: np.ndarray  # (4,) w, x, y, z; camera → world
    translation: np.ndarray  # (3,) metres, camera centre in the world frame

    def __post_init__(self) -> None:
        shapes = {"center": 2, "focal_length": 2, "radial_distortion": 3, "tangential_distortion": 2,
                  "orientation": 4, "translation": 3}
        for name, size in shapes.items():
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (size,) or not np.isfinite(value).all():
                raise ValueError(f"camera {self.id}: {name} must be {size} finite numbers, "
                                 f"got {value.tolist()}")
            object.__setattr__(self, name, value)
        if self.res_w <= 0 or self.res_h <= 0:
            raise ValueError(f"camera {self.id}: resolution must be positive, got {self.res_w}x{self.res_h}")
        norm = float(np.linalg.norm(self.orientation))
        if abs(norm - 1.0) > 1e-4:
            raise ValueError(f"camera {self.id}: orientation quaternion must be unit, |q| = {norm:.6f}")


def _like(value: np.ndarray, ref: ArrayT) -> ArrayT:
    """Constant ``value`` (float64 numpy) as the array kind, dtype and device of ``ref``."""
    if isinstance(ref, torch.Tensor):
        return torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
    return np.asarray(value, dtype=np.result_type(ref.dtype, np.float32))


def _cross(a: ArrayT, b: ArrayT) -> ArrayT:
    if isinstance(a, torch.Tensor):
        return torch.linalg.cross(a, b, dim=-1)
    return np.cross(a, b)


def qrot(q: ArrayT, v: ArrayT) -> ArrayT:
    """Rotate vectors ``v (..., 3)`` by unit quaternions ``q (..., 4)`` = (w, x, y, z); ``q`` broadcasts.

    Uses ``v + 2 w (u × v) + 2 u × (u × v)`` with ``u`` the vector part, which equals ``q v q*``.
    """
    if q.shape[-1] != 4 or v.shape[-1] != 3:
        raise ValueError(f"qrot expects q (..., 4) and v (..., 3), got {tuple(q.shape)} and {tuple(v.shape)}")
    if isinstance(v, torch.Tensor):
        q = q.expand(*v.shape[:-1], 4)
    else:
        q = np.broadcast_to(q, v.shape[:-1] + (4,))
    w, u = q[..., :1], q[..., 1:]
    uv = _cross(u, v)
    return v + 2 * (w * uv + _cross(u, uv))


def qconj(q: ArrayT) -> ArrayT:
    """Conjugate ``(w, -x, -y, -z)`` of quaternions ``(..., 4)``: the inverse rotation for unit ``q``."""
    sign = _like(np.array([1.0, -1.0, -1.0, -1.0]), q)
    return q * sign


def world_to_camera(points: ArrayT, orientation: np.ndarray, translation: np.ndarray) -> ArrayT:
    """World points ``(..., 3)`` → camera frame; ``orientation`` (4,) camera→world, ``translation`` (3,) m."""
    q = _like(np.asarray(orientation, dtype=np.float64), points)
    t = _like(np.asarray(translation, dtype=np.float64), points)
    return qrot(qconj(q), points - t)


def camera_to_world(points: ArrayT, orientation: np.ndarray, translation: np.ndarray) -> ArrayT:
    """Inverse of :func:`world_to_camera`."""
    q = _like(np.asarray(orientation, dtype=np.float64), points)
    t = _like(np.asarray(translation, dtype=np.float64), points)
    return qrot(q, points) + t


def project_to_pixels(points_cam: ArrayT, camera: Camera) -> ArrayT:
    """Camera-frame points ``(..., 3)`` → pixels ``(..., 2)``, with radial and tangential distortion."""
    if points_cam.shape[-1] != 3:
        raise ValueError(f"project_to_pixels expects points (..., 3), got {tuple(points_cam.shape)}")
    f = _like(camera.focal_length, points_cam)
    c = _like(camera.center, points_cam)
    k = _like(camera.radial_distortion, points_cam)
    p = _like(camera.tangential_distortion, points_cam)
    xy = points_cam[..., :2] / points_cam[..., 2:]
    # Clipping to the unit square keeps the polynomial distortion from folding far-off points back in.
    xy = xy.clamp(-1, 1) if isinstance(xy, torch.Tensor) else np.clip(xy, -1, 1)
    r2 = (xy**2).sum(-1, keepdims=True) if isinstance(xy, np.ndarray) else (xy**2).sum(-1, keepdim=True)
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tangential = p[0] * xy[..., :1] + p[1] * xy[..., 1:]
    distorted = xy * (radial + tangential) + p * r2
    return f * distorted + c


def normalize_screen(pixels: ArrayT, res_w: int, res_h: int) -> ArrayT:
    """Pixels ``(..., 2)`` → normalised screen coordinates ``x / w * 2 - [1, h / w]`` (x in [-1, 1])."""
    if pixels.shape[-1] != 2:
        raise ValueError(f"normalize_screen expects (..., 2) coordinates, got {tuple(pixels.shape)}")
    return pixels / res_w * 2 - _like(np.array([1.0, res_h / res_w]), pixels)


def normalize_screen_official(pixels: np.ndarray, res_w: int, res_h: int) -> np.ndarray:
    """:func:`normalize_screen` rounded as the official HoT/VideoPose3D data code does, bit for bit.

    That code computes ``x / w * 2`` in the array's own dtype (float32 for the released 2D files), then
    subtracts ``[1, h / w]`` in float64 and stores the result back into the float32 array. Computing
    the whole expression in float64 and rounding once (:func:`normalize_screen`) differs by one float32
    step in most values; the paper protocol feeds the model the official inputs exactly.
    """
    if pixels.shape[-1] != 2:
        raise ValueError(f"normalize_screen_official expects (..., 2) coordinates, got {pixels.shape}")
    scaled = pixels / np.asarray(res_w, dtype=pixels.dtype) * np.asarray(2, dtype=pixels.dtype)
    return (scaled - np.array([1.0, res_h / res_w])).astype(pixels.dtype)


def denormalize_screen(coords: ArrayT, res_w: int, res_h: int) -> ArrayT:
    """Inverse of :func:`normalize_screen`: ``(x + [1, h / w]) * w / 2``."""
    if coords.shape[-1] != 2:
        raise ValueError(f"denormalize_screen expects (..., 2) coordinates, got {tuple(coords.shape)}")
    return (coords + _like(np.array([1.0, res_h / res_w]), coords)) * res_w / 2
