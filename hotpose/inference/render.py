"""Pictures of an inference result: the 2D overlay beside the 3D skeleton, as MP4 / GIF and a PNG sheet.

Each picture has two panels: the video frame (or a blank canvas of the image size) with the 2D keypoints
given to the model, and the predicted 3D skeleton (camera frame drawn with x right, depth into the page,
up = −y). The subject's left side is blue, the right side red. Frames without a detection (filled 2D) are
drawn grey and dashed, and titled so.

One matplotlib figure is reused for all frames (its artists are updated, not rebuilt), which keeps
rendering at tens of frames per second. MP4 needs OpenCV (``cv2.VideoWriter``, codec ``mp4v``); GIF and
PNG use Pillow, which matplotlib already requires.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from hotpose.data.skeleton import JOINTS_LEFT, JOINTS_RIGHT, PARENTS

LEFT, RIGHT, CENTRE, MISSING = "tab:blue", "tab:red", "black", "0.6"
FORMATS = ("mp4", "gif")


def _bone_colours() -> list[tuple[int, str]]:
    bones = []
    for j, parent in enumerate(PARENTS):
        if parent < 0:
            continue
        colour = LEFT if j in JOINTS_LEFT else RIGHT if j in JOINTS_RIGHT else CENTRE
        bones.append((j, colour))
    return bones


def to_plot_axes(pose: np.ndarray) -> np.ndarray:
    """Camera-frame joints ``(..., 3)`` (x right, y down, z forward) → plot axes (x, depth, up)."""
    return np.stack([pose[..., 0], pose[..., 2], -pose[..., 1]], axis=-1)


class SideBySideRenderer:
    """Draws one frame at a time into a reused figure; ``render(...)`` returns RGB ``(H, W, 3)`` uint8.

    Args:
        width, height: the video's image size (pixels), for the 2D panel.
        size: figure height in inches (the width adds the 2D panel's aspect). ``dpi``: pixels per inch.
        radius: half extent of the 3D box in metres around the root.
    """

    def __init__(self, width: int, height: int, size: float = 4.0, dpi: int = 80, radius: float = 0.8) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.width, self.height = int(width), int(height)
        aspect = min(max(self.width / self.height, 0.5), 2.0)  # the 2D panel follows the video's shape
        self.figure = Figure(figsize=((aspect + 1) * size, size), dpi=dpi)
        FigureCanvasAgg(self.figure)  # an off-screen canvas, whatever pyplot's backend is
        split = aspect / (aspect + 1)
        self.axis_2d = self.figure.add_axes((0.005, 0.01, split - 0.01, 0.9))
        self.axis_3d = self.figure.add_axes((split, 0.0, 1 - split, 0.92), projection="3d")
        self.bones = _bone_colours()
        blank = np.full((self.height, self.width, 3), 235, dtype=np.uint8)
        self.image = self.axis_2d.imshow(blank, extent=(0, self.width, self.height, 0))
        self.axis_2d.set_xlim(0, self.width)
        self.axis_2d.set_ylim(self.height, 0)
        self.axis_2d.axis("off")
        self.lines_2d = [self.axis_2d.plot([], [], color=c, lw=2)[0] for _, c in self.bones]
        # dark joints: white ones cut small bones into what looks like the dashed "no detection" style
        self.points_2d = self.axis_2d.scatter(np.zeros(17), np.zeros(17), s=5, c="0.15", zorder=3)
        ax = self.axis_3d
        ax.set_xlim(-radius, radius)
        ax.set_ylim(-radius, radius)
        ax.set_zlim(-radius, radius)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=15, azim=-70)
        for setter in (ax.set_xticklabels, ax.set_yticklabels, ax.set_zticklabels):
            setter([])
        self.lines_3d = [ax.plot([], [], [], color=c, lw=2.5)[0] for _, c in self.bones]
        self.title = self.figure.suptitle("", fontsize=10)
        # what the panels are, and the colour key, which a single frame cannot tell by itself
        self.figure.text(0.01, 0.015, "2D keypoints given to the model", fontsize=7, color="0.3")
        self.figure.text(split, 0.015, f"3D prediction (root-relative, ±{radius:.1f} m)  left: blue, right: red",
                         fontsize=7, color="0.3")

    def render(self, keypoints_2d: np.ndarray, pose_3d: np.ndarray, image: np.ndarray | None = None,
               detected: bool = True, title: str = "", follow: bool = False) -> np.ndarray:
        """``keypoints_2d (17, 2)`` pixels, ``pose_3d (17, 3)`` metres → RGB picture of the figure.

        ``follow`` zooms the 2D panel on the person (:func:`person_box`) instead of the whole image.
        """
        if image is not None:
            self.image.set_data(image)
        x0, x1, y0, y1 = (person_box(keypoints_2d, self.width, self.height) if follow
                          else (0, self.width, 0, self.height))
        self.axis_2d.set_xlim(x0, x1)
        self.axis_2d.set_ylim(y1, y0)
        plot = to_plot_axes(pose_3d)
        for k, (j, colour) in enumerate(self.bones):
            parent = PARENTS[j]
            colour = colour if detected else MISSING
            style = "-" if detected else "--"
            for line in (self.lines_2d[k], self.lines_3d[k]):
                line.set_color(colour)
                line.set_linestyle(style)
            self.lines_2d[k].set_data(keypoints_2d[[parent, j], 0], keypoints_2d[[parent, j], 1])
            segment = plot[[parent, j]]
            self.lines_3d[k].set_data_3d(segment[:, 0], segment[:, 1], segment[:, 2])
        self.points_2d.set_offsets(keypoints_2d)
        self.title.set_text(title + ("" if detected else "  (no detection: 2D filled)"))
        self.figure.canvas.draw()
        return np.asarray(self.figure.canvas.buffer_rgba())[..., :3].copy()


def person_box(keypoints_2d: np.ndarray, width: int, height: int, margin: float = 0.35
               ) -> tuple[float, float, float, float]:
    """``(x0, x1, y0, y1)``: the keypoints' bounding box grown by ``margin`` of its size, widened to the
    image's aspect ratio (so the panel is filled), and moved inside the image where it fits."""
    lo, hi = np.nanmin(keypoints_2d, axis=0), np.nanmax(keypoints_2d, axis=0)
    centre, size = (lo + hi) / 2, (hi - lo) * (1 + 2 * margin)
    half_h = max(size[1], size[0] * height / width, 0.05 * height) / 2
    half_w = half_h * width / height
    half_w, half_h = min(half_w, width / 2), min(half_h, height / 2)
    cx = float(np.clip(centre[0], half_w, width - half_w))
    cy = float(np.clip(centre[1], half_h, height - half_h))
    return cx - half_w, cx + half_w, cy - half_h, cy + half_h


def write_animation(pictures: Iterable[np.ndarray], path: str | Path, fps: float) -> Path:
    """RGB pictures → ``path`` (``.mp4`` through OpenCV, ``.gif`` through Pillow)."""
    path = Path(path)
    kind = path.suffix.lower().lstrip(".")
    if kind not in FORMATS:
        raise ValueError(f"animation {path}: unsupported format {kind!r}; use one of {FORMATS}")
    if not fps or fps <= 0:
        raise ValueError(f"animation {path}: fps must be positive, got {fps!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "gif":
        from PIL import Image

        frames = [Image.fromarray(p) for p in pictures]
        if not frames:
            raise ValueError(f"animation {path}: no pictures")
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0)
        return path
    try:
        import cv2
    except ImportError:
        raise ValueError(f"animation {path}: MP4 needs OpenCV (pip install opencv-python-headless); "
                         "or ask for a .gif") from None
    writer = None
    try:
        for picture in pictures:
            if writer is None:
                h, w = picture.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
                if not writer.isOpened():
                    raise ValueError(f"animation {path}: OpenCV cannot open an mp4v writer here")
            writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise ValueError(f"animation {path}: no pictures")
    return path


def contact_sheet(pictures: Sequence[np.ndarray], path: str | Path, columns: int = 2) -> Path:
    """Equal-sized RGB pictures → one PNG grid of ``columns`` columns."""
    from PIL import Image

    if not pictures:
        raise ValueError(f"contact sheet {path}: no pictures")
    h, w = pictures[0].shape[:2]
    columns = max(1, min(columns, len(pictures)))
    rows = -(-len(pictures) // columns)
    sheet = np.full((rows * h, columns * w, 3), 255, dtype=np.uint8)
    for i, picture in enumerate(pictures):
        r, c = divmod(i, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = picture
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(path, optimize=True)
    return path


def sheet_frames(length: int, count: int) -> list[int]:
    """``count`` frame numbers spread evenly over ``[0, length)`` (all of them when fewer)."""
    if length <= count:
        return list(range(length))
    return np.linspace(0, length - 1, count).round().astype(int).tolist()
