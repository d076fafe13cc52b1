"""``python -m hotpose.bench stream``: its statistics by hand and one quick run of the machinery."""

from __future__ import annotations

import numpy as np
import pytest

from hotpose import bench
from hotpose.benchmarks import stream


def test_percentile_is_nearest_rank() -> None:
    values = np.arange(1.0, 21.0)
    assert stream.percentile(values, 95) == 19.0 and stream.percentile(values, 50) == 10.0
    assert stream.percentile(np.array([4.0]), 95) == 4.0


def test_quick_run_times_every_row(capsys, tmp_path) -> None:
    assert "stream" in bench.available()
    out = tmp_path / "s.json"
    code = bench.main(["stream", "--quick", "--models", "HoT w. MixSTE", "--threads", "1", "--windows", "1",
                       "--detector-frames", "4", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "| HoT w. MixSTE | 27 | 1 | 1 | 0 |" in text and "| HoT w. MixSTE | 27 | 1 | 14 | 0 |" in text
    assert "frame hand-over to the worker" in text
    import json

    rows = json.loads(out.read_text())["rows"]
    assert [r["stride"] for r in rows] == [1, 14]
    assert [r["timed_frames"] for r in rows] == [1, 14] and all(r["windows"] == 1 for r in rows)
    assert all(r["frames_per_second"] > 0 and r["latency_p95_ms"] >= r["latency_median_ms"] for r in rows)


def test_unknown_model_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown model"):
        stream.model_overrides("NoSuchNet", quick=False)
