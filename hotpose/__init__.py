"""hotpose: Hourglass Tokenizer (HoT) for video 3D human pose estimation, as a Hydra + Lightning framework."""

__version__ = "0.1.0"
