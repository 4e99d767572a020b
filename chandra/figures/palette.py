"""A deterministic 64-colour palette for gesture tokens.

Token ``k`` always gets the same colour on every page and in every run, so a
colour learnt on the vocabulary page means the same token in the feature
scatter. The colours are generated, not listed: hues step by the golden
angle (so neighbouring token ids differ strongly in hue) and four lightness /
saturation tiers separate tokens whose hues come close. All 64 are distinct.
"""

from __future__ import annotations

import colorsys

__all__ = ["N_COLORS", "PALETTE", "EMPTY_COLOR", "MISSING_COLOR", "STATUS_COLORS", "SPECTROGRAM_COLORSCALE",
           "TOKEN_SYMBOLS", "token_color", "token_colors", "token_symbol"]

N_COLORS = 64
_GOLDEN_ANGLE = 0.381966011250105  # 1 - 1/phi, as a fraction of the hue circle
# (lightness, saturation) tiers, cycled every token so consecutive ids also
# differ in brightness.
_TIERS = ((0.50, 0.80), (0.68, 0.72), (0.36, 0.85), (0.58, 0.50))


def _make_palette(n: int) -> tuple[str, ...]:
    colours = []
    for k in range(n):
        hue = (0.02 + k * _GOLDEN_ANGLE) % 1.0
        light, sat = _TIERS[k % len(_TIERS)]
        r, g, b = colorsys.hls_to_rgb(hue, light, sat)
        colours.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return tuple(colours)


#: 64 hex colours; ``PALETTE[k]`` is token ``k``'s colour.
PALETTE: tuple[str, ...] = _make_palette(N_COLORS)
#: Colour of a token that no record uses (histograms, grids).
EMPTY_COLOR = "#d62728"
#: Colour of records without a token.
MISSING_COLOR = "#9e9e9e"
#: Pipeline-strip colours by stage status.
STATUS_COLORS = {
    "not run": "#bdbdbd",
    "running": "#1f77b4",
    "done": "#2ca02c",
    "stale": "#ff9f1c",
    "failed": "#d62728",
    "cancelled": "#8c564b",
}


#: Magma-like scale for spectrograms. Plotly's own "Magma" starts at
#: ``#000004``, which Streamlit's frontend treats as a theme placeholder
#: (``#000001``..``#000030``) and repaints purple; this copy starts just off it.
SPECTROGRAM_COLORSCALE = [
    [0.0, "#05040f"], [0.111, "#180f3d"], [0.222, "#440f76"], [0.333, "#721f81"], [0.444, "#9e2f7f"],
    [0.556, "#cd4071"], [0.667, "#f1605d"], [0.778, "#fd9668"], [0.889, "#feca8d"], [1.0, "#fcfdbf"],
]


def token_color(token: int | None) -> str:
    """Colour of one token id (ids beyond 63 wrap around); grey for None or -1."""
    if token is None or int(token) < 0:
        return MISSING_COLOR
    return PALETTE[int(token) % N_COLORS]


#: Marker shapes by palette round: tokens 0-63 are circles, 64-127 squares, ...
#: so two tokens that share a colour (k and k + 64) still look different.
TOKEN_SYMBOLS = ("circle", "square", "diamond", "triangle-up")


def token_symbol(token: int | None) -> str:
    """Marker shape of a token in scatters (changes each time the colours wrap)."""
    if token is None or int(token) < 0:
        return TOKEN_SYMBOLS[0]
    return TOKEN_SYMBOLS[(int(token) // N_COLORS) % len(TOKEN_SYMBOLS)]


def token_colors(n_tokens: int) -> list[str]:
    """Colours of tokens ``0 .. n_tokens - 1``."""
    return [token_color(k) for k in range(int(n_tokens))]
