"""Load a model for inference from a hotpose checkpoint (Lightning or ``python -m hotpose.convert``).

The network is always built from the configuration stored in the checkpoint
(``hyper_parameters["model"]``: backbone, pruner, recoverer, pipeline) and loaded strictly, so weights
never meet a model of another variant (the official demo builds ``hot_mixste`` whatever it is given and
loads non-strictly, which silently breaks other weights). A file without that configuration (e.g. raw
official weights) is refused with the command that converts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotpose.checkpoints import CheckpointError, load_torch_file
from hotpose.models.hourglass import Hourglass

MODEL_KEYS = ("backbone", "pruner", "recoverer", "pipeline")
NET_PREFIX = "net."


@dataclass
class LoadedModel:
    """A network ready for inference and what the checkpoint says about it.

    Attributes:
        net: the :class:`~hotpose.models.hourglass.Hourglass`, in eval mode.
        config: the four model config groups as plain dicts.
        pipeline: ``seq2seq`` or ``seq2frame``.
        variant: the official variant name of a converted checkpoint, else None.
        path: where it was read from.
    """

    net: Hourglass
    config: dict[str, Any]
    pipeline: str
    variant: str | None
    path: Path

    @property
    def frames(self) -> int:
        return self.net.frames

    @property
    def in_channels(self) -> int:
        return self.net.in_channels

    def describe(self) -> str:
        backbone = self.config["backbone"].get("name", "?")
        stages = self.net.stages or "none"
        recoverer = type(self.net.recoverer).__name__ if self.net.recoverer is not None else "NoRecovery"
        variant = f", official variant {self.variant}" if self.variant else ""
        return (f"{backbone}, {self.frames} frames, {self.in_channels} input channels, pruning {stages}, "
                f"recoverer {recoverer}, {self.pipeline}{variant}")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict; CheckpointError when the file is missing, unreadable or not a hotpose checkpoint."""
    path = Path(path)
    checkpoint = load_torch_file(path)  # weights only: a checkpoint must not be able to run code
    model = (checkpoint.get("hyper_parameters") or {}).get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(model, dict) or any(k not in model for k in MODEL_KEYS):
        raise CheckpointError(
            f"{path}: not a hotpose checkpoint (no saved model configuration "
            f"hyper_parameters.model with {list(MODEL_KEYS)}). Official HoT weights must be converted first: "
            "python -m hotpose.convert --variant <official file name> --input <file> --output <file>.ckpt")
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path}: checkpoint has no state_dict")
    return checkpoint


def build_from_config(config: dict[str, Any]) -> Hourglass:
    """The network of a saved model configuration (the four groups and an optional output head)."""
    from hotpose.models.build import build_saved_model

    return build_saved_model(config)


def load_model(path: str | Path) -> LoadedModel:
    """Build the network the checkpoint describes and load its weights strictly (eval mode)."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    config = checkpoint["hyper_parameters"]["model"]
    try:
        net = build_from_config(config)
    except Exception as error:
        raise CheckpointError(f"{path}: the saved model configuration does not build: {error}") from error
    state = {k[len(NET_PREFIX):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(NET_PREFIX)}
    if not state:
        raise CheckpointError(f"{path}: state_dict has no '{NET_PREFIX}*' keys (not a HotposeModule checkpoint)")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        details = "; ".join(f"{name} {keys[:5]}{' ...' if len(keys) > 5 else ''}"
                            for name, keys in (("missing", missing), ("unexpected", unexpected),
                                               ("wrong shape", wrong)) if keys)
        raise CheckpointError(f"{path}: weights do not fit the saved model configuration: {details}")
    net.load_state_dict(state, strict=True)
    pipeline = config["pipeline"].get("name") or checkpoint["hyper_parameters"].get("pipeline", "seq2seq")
    return LoadedModel(net.eval(), config, str(pipeline), checkpoint.get("hotpose_variant"), path)
