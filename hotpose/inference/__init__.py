"""In-the-wild inference: 2D keypoints (a file or a video through a detector) → 3D poses, pictures, export.

Modules, one concern each:

- :mod:`~hotpose.inference.keypoints` — read keypoint files; COCO-17 and BlazePose-33 → H36M-17 (numpy only).
- :mod:`~hotpose.inference.detectors` — the detector interface, MediaPipe Pose, video reading (no torch,
  so it runs in a separate detector environment too).
- :mod:`~hotpose.inference.checkpoint` — a model from a hotpose or converted checkpoint, configured by it.
- :mod:`~hotpose.inference.detector_worker` — a detector kept alive in another process, one frame at a time.
- :mod:`~hotpose.inference.lifting` — any sequence length → one 3D pose per input frame.
- :mod:`~hotpose.inference.lifter` — the Python API (``hotpose.Lifter``, ``hotpose.load_model``).
- :mod:`~hotpose.inference.stream` — live lifting, one pushed frame at a time (``hotpose.PoseStream``).
- :mod:`~hotpose.inference.render` — side-by-side video / GIF and a PNG contact sheet.

This package ``__init__`` imports nothing, so the numpy-only modules stay importable without torch.
"""
