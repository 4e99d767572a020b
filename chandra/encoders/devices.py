"""Where a neural encoder runs and how many chunks go through one forward pass."""

from __future__ import annotations

from typing import Any

from chandra.errors import EncoderError

__all__ = ["DEVICES", "QUANTIZE_MODES", "resolve_device"]

#: Where a neural encoder runs: "auto" = a CUDA GPU when torch sees one (and
#: the model is not quantised), else the CPU.
DEVICES = ("auto", "cpu", "cuda")
#: Neural encoder precision: "none" (float32) or "int8" (dynamic int8
#: quantisation of the linear maps, CPU only; see :class:`Wav2Vec2Encoder`).
QUANTIZE_MODES = ("none", "int8")
#: Transient memory of one chunk second through a wav2vec2-base-size model
#: (float32 activations of the convolutional front end dominate; measured on
#: CPU as ~0.5 GB per extra 20 s chunk), used to size batches on a GPU.
_BYTES_PER_CHUNK_SECOND = 25e6
_MAX_GPU_BATCH = 32


def resolve_device(device: str = "auto", *, quantize: str = "none") -> str:
    """The torch device a neural encoder will run on.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"} or "cuda:N"
    quantize : {"none", "int8"}
        int8 models run on the CPU, so ``"auto"`` resolves to ``"cpu"``.

    Returns
    -------
    str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises
    ------
    EncoderError
        ``cuda`` asked for but torch sees no usable CUDA device (a CPU-only
        torch build, no driver, or no such GPU index): said plainly rather
        than falling back to the CPU behind the user's back.
    """
    import torch

    if device == "cpu" or (device == "auto" and quantize == "int8"):
        return "cpu"
    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if not available:
        why = ("this torch is a CPU-only build" if torch.version.cuda is None
               else "torch finds no CUDA GPU or driver")
        raise EncoderError(f"device {device!r} was asked for, but {why} (torch {torch.__version__}); "
                           "use device='cpu' or 'auto'")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise EncoderError(f"device {device!r} was asked for, but torch sees {torch.cuda.device_count()} "
                           "CUDA GPU(s)")
    return device


def _batch_for(device: str, chunk_seconds: float, conv_dim: Any) -> int:
    """Chunks per forward pass for a device: 2 on the CPU; on a GPU, what fits in half its free memory."""
    if not device.startswith("cuda"):
        return 2
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    width = float(conv_dim[0]) / 512.0 if len(conv_dim) else 1.0
    per_chunk = _BYTES_PER_CHUNK_SECOND * chunk_seconds * width
    return int(max(1, min(_MAX_GPU_BATCH, (0.5 * free) // per_chunk)))
