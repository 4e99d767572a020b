"""Plotly figure builders for the dashboard (arrays in, figures out).

Nothing here imports streamlit, so every figure can be built and tested
without a browser. ``palette`` holds the token colours, ``stages`` the
figures of the per-stage pages, ``diagnostics`` the ledger and findings
views.
"""

from chandra.figures.palette import PALETTE, token_color, token_colors

__all__ = ["PALETTE", "token_color", "token_colors"]
