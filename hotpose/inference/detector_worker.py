"""A 2D detector kept alive in another process (a detector environment), fed one frame at a time.

MediaPipe cannot share an environment with the training stack (docs/inference.md), and a live stream
cannot start one process per frame. :class:`DetectorWorker` starts
``python -m hotpose.inference.detector_worker --detector NAME`` once with the detector environment's
interpreter and then behaves as a local :class:`~hotpose.inference.detectors.PoseDetector`: each call sends
one RGB frame through the worker's stdin and reads the detection back from its stdout.

Protocol (little-endian, numpy + the standard library only, so the worker needs no torch):

- worker → client on start: one line ``HOTPOSE-DETECTOR 1 <layout> <joints>\\n``;
- client → worker per frame: ``uint32 height, uint32 width`` then ``height * width * 3`` bytes of RGB;
  ``0, 0`` asks the worker to exit;
- worker → client per frame: ``uint8`` status — 0 nobody found; 1 found, then ``joints * 2`` float32 pixels
  and ``joints`` float32 scores; 2 the detector failed, then ``uint32`` length and a UTF-8 message.

The worker writes the protocol to its original stdout and sends anything the detector prints to stderr.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hotpose.inference.detectors import Detection, build_detector

HELLO = "HOTPOSE-DETECTOR 1"
NOBODY, FOUND, FAILED = 0, 1, 2
_HEADER = struct.Struct("<II")


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise EOFError(f"expected {size} bytes, got {0 if data is None else len(data)}")
    return data


def serve(detector, requests: BinaryIO, replies: BinaryIO) -> int:
    """Answer frames from ``requests`` with ``detector``'s detections on ``replies`` until ``0, 0``;
    returns the number of frames served."""
    from hotpose.inference.keypoints import LAYOUT_JOINTS

    joints = LAYOUT_JOINTS[detector.layout]
    replies.write(f"{HELLO} {detector.layout} {joints}\n".encode())
    replies.flush()
    served = 0
    while True:
        try:
            height, width = _HEADER.unpack(_read_exactly(requests, _HEADER.size))
        except EOFError:
            return served  # the client went away
        if height == 0 and width == 0:
            return served
        rgb = np.frombuffer(_read_exactly(requests, height * width * 3), dtype=np.uint8).reshape(height, width, 3)
        try:
            found = detector(rgb)
            if found is not None:
                points = np.asarray(found.points, dtype="<f4").reshape(joints, 2)
                scores = np.asarray(found.scores, dtype="<f4").reshape(joints)
        except Exception as error:  # sent back as one message: the client raises it
            message = f"{type(error).__name__}: {error}".encode()
            replies.write(struct.pack("<BI", FAILED, len(message)) + message)
        else:
            if found is None:
                replies.write(struct.pack("<B", NOBODY))
            else:
                replies.write(struct.pack("<B", FOUND) + points.tobytes() + scores.tobytes())
        replies.flush()
        served += 1


class DetectorWorker:
    """A :class:`~hotpose.inference.detectors.PoseDetector` running in a long-lived process of ``python``.

    Args:
        python: the interpreter of the detector environment (``~`` expanded).
        detector: a detector name (``mediapipe``) or ``module:factory`` importable there.
        options: keyword arguments of the detector (numbers or booleans).
    """

    def __init__(self, python: str, detector: str = "mediapipe", **options: float | bool) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        command = [os.path.expanduser(python), "-m", "hotpose.inference.detector_worker", "--detector", detector]
        for key, value in options.items():
            command += ["--option", f"{key}={value}"]
        # the worker's stderr, read back for error messages; lives as long as the worker (closed in close())
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=self._stderr, env=env)
        except OSError as error:
            raise ValueError(f"detector.python {python!r} cannot be started: {error}") from None
        self.frames = 0
        line = self._process.stdout.readline().decode(errors="replace").split()
        if len(line) != 4 or " ".join(line[:2]) != HELLO:
            self.close()
            raise RuntimeError(f"detector worker {' '.join(command)} did not start: {self._tail()}")
        self.layout, self.joints = line[2], int(line[3])
        self.pid = self._process.pid

    def _tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return text[-2000:] or "(no output)"

    def __call__(self, rgb: np.ndarray) -> Detection | None:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"detector frames must be RGB (h, w, 3) uint8, got shape {rgb.shape}")
        try:
            self._process.stdin.write(_HEADER.pack(rgb.shape[0], rgb.shape[1]) + rgb.tobytes())
            self._process.stdin.flush()
            status = _read_exactly(self._process.stdout, 1)[0]
            self.frames += 1
            if status == NOBODY:
                return None
            if status == FAILED:
                (size,) = struct.unpack("<I", _read_exactly(self._process.stdout, 4))
                raise RuntimeError(f"detector failed on frame {self.frames - 1}: "
                                   f"{_read_exactly(self._process.stdout, size).decode(errors='replace')}")
            values = np.frombuffer(_read_exactly(self._process.stdout, self.joints * 12), dtype="<f4")
        except (BrokenPipeError, EOFError):
            raise RuntimeError(f"detector worker exited (code {self._process.poll()}): {self._tail()}") from None
        return Detection(values[:self.joints * 2].reshape(self.joints, 2).copy(), values[self.joints * 2:].copy())

    def close(self) -> None:
        """Ask the worker to exit (and stop it if it does not)."""
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            try:
                process.stdin.write(_HEADER.pack(0, 0))
                process.stdin.close()
                process.wait(timeout=10)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> DetectorWorker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _option(text: str) -> tuple[str, float | bool]:
    key, _, value = text.partition("=")
    if value in ("True", "False"):
        return key, value == "True"
    return key, float(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve a 2D pose detector over stdin/stdout (see the module)")
    parser.add_argument("--detector", default="mediapipe")
    parser.add_argument("--option", action="append", default=[], help="key=value detector option")
    args = parser.parse_args(argv)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # whatever the detector prints goes to stderr
    try:
        detector = build_detector(args.detector, **dict(_option(o) for o in args.option))
    except (ValueError, RuntimeError) as error:  # DetectorUnavailable too: one line for the client
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        served = serve(detector, sys.stdin.buffer, replies)
    finally:
        detector.close()
    print(f"detector worker: {served} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
