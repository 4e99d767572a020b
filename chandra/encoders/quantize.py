"""Dynamic int8 quantisation of a transformers audio model for the CPU."""

from __future__ import annotations

from typing import Any

from chandra.errors import EncoderError, first_line

__all__: list[str] = []


def _quantize_int8(model: Any) -> tuple[Any, dict]:
    """Dynamic int8 quantisation of a transformers audio model, for the CPU.

    Every ``Conv1d`` that is a plain sliding linear map (one group, no
    padding or dilation, an input window of at least 32 values: the
    feature encoder's layers after the first) is replaced by that linear
    map over its unfolded input windows, then every ``Linear`` gets int8
    weights and per-batch int8 activations
    (``torch.ao.quantization.quantize_dynamic``). Returns the model and the
    counts of what was quantised.
    """
    import warnings

    import torch

    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:  # torch.ao.quantization is deprecated upstream
        raise EncoderError(f"quantize='int8' needs torch.ao.quantization.quantize_dynamic, which torch "
                           f"{torch.__version__} lacks ({first_line(exc)}); use quantize='none'") from exc
    if "fbgemm" not in torch.backends.quantized.supported_engines and \
            "x86" not in torch.backends.quantized.supported_engines:
        raise EncoderError("quantize='int8' needs torch's x86 (fbgemm) quantised kernels, which this build "
                           f"lacks (engines: {', '.join(torch.backends.quantized.supported_engines)})")
    convs = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _unfoldable(child):
                setattr(parent, name, _WindowLinear(child))
                convs += 1
    linears = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to torchao on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model, {"linear": linears - convs, "conv_as_linear": convs}


def _unfoldable(module: Any) -> bool:
    import torch

    return (isinstance(module, torch.nn.Conv1d) and module.groups == 1 and module.padding in (0, (0,))
            and module.dilation == (1,) and module.padding_mode == "zeros"
            and module.in_channels * module.kernel_size[0] >= 32)


def _window_linear_class():
    import torch

    class WindowLinear(torch.nn.Module):
        """A ``Conv1d`` (one group, no padding) as a ``Linear`` over its input windows.

        Each window is divided by its largest magnitude before the linear map
        and the output multiplied back (exact in real arithmetic): the front
        end's activations follow the loudness of the music (a quiet frame's
        values are ~1/1000 of the loudest), and a dynamically quantised
        linear map scales its input per tensor, which would round quiet
        frames to zero. Per window, every frame keeps its 8 bits.

        The windows are read frame-major (a window is ``kernel`` consecutive
        frames of ``channels`` values, so on a channels-last input it is one
        contiguous run of memory) and the weights are ordered to match: the
        only pass over the windows is the one that scales them. The output is
        channels-last too (returned as a ``(batch, channels, frames)`` view),
        so the next layer's windows need no copy either.
        """

        def __init__(self, conv):
            super().__init__()
            c_out, c_in, k = conv.weight.shape
            self.kernel, self.stride, self.channels = int(k), int(conv.stride[0]), int(c_in)
            self.linear = torch.nn.Linear(c_in * k, c_out, bias=False)
            with torch.no_grad():
                # (out, in, k) -> (out, k, in): frame-major windows
                self.linear.weight.copy_(conv.weight.permute(0, 2, 1).reshape(c_out, k * c_in))
            self.bias = None if conv.bias is None else torch.nn.Parameter(conv.bias.detach().clone())

        def forward(self, x):
            frames = x.transpose(1, 2)  # (batch, time, channels)
            if not frames.is_contiguous():
                frames = frames.contiguous()
            batch, time, channels = frames.shape
            k, s = self.kernel, self.stride
            n = (time - k) // s + 1
            low, high = torch.aminmax(frames, dim=2)
            peak = torch.maximum(high, low.neg())  # largest magnitude per frame, (batch, time)
            scale = torch.nn.functional.max_pool1d(peak.unsqueeze(1), k, s).squeeze(1)[:, :n]
            scale = scale.clamp_min(1e-30).unsqueeze(2)  # per window, (batch, n, 1)
            windows = frames.as_strided((batch, n, k * channels), (time * channels, s * channels, 1))
            out = self.linear(windows / scale)  # one pass: scaled windows, contiguous
            out = out * scale if self.bias is None else torch.addcmul(self.bias, out, scale)
            return out.transpose(1, 2)

    return WindowLinear


def _WindowLinear(conv: Any) -> Any:
    global _WINDOW_LINEAR
    if _WINDOW_LINEAR is None:
        _WINDOW_LINEAR = _window_linear_class()
    return _WINDOW_LINEAR(conv)


_WINDOW_LINEAR = None
