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
        """

        def __init__(self, conv):
            super().__init__()
            c_out, c_in, k = conv.weight.shape
            self.kernel, self.stride = int(k), int(conv.stride[0])
            self.linear = torch.nn.Linear(c_in * k, c_out, bias=False)
            with torch.no_grad():
                self.linear.weight.copy_(conv.weight.reshape(c_out, c_in * k))
            self.bias = None if conv.bias is None else torch.nn.Parameter(conv.bias.detach().clone())

        def forward(self, x):
            batch, channels, _ = x.shape
            windows = x.unfold(2, self.kernel, self.stride)  # (batch, channels, frames, kernel)
            windows = windows.permute(0, 2, 1, 3).reshape(batch, windows.shape[2], channels * self.kernel)
            scale = windows.abs().amax(dim=2, keepdim=True).clamp_min(1e-30)
            out = self.linear(windows / scale) * scale
            if self.bias is not None:
                out = out + self.bias
            return out.transpose(1, 2)

    return WindowLinear


def _WindowLinear(conv: Any) -> Any:
    global _WINDOW_LINEAR
    if _WINDOW_LINEAR is None:
        _WINDOW_LINEAR = _window_linear_class()
    return _WINDOW_LINEAR(conv)


_WINDOW_LINEAR = None
