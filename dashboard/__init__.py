"""Streamlit helpers for chandra's dashboard (``app.py`` and ``pages/``).

Only this package and the pages import streamlit; the computations and
figures they show live in :mod:`chandra`.
"""
