"""Tariffs: the model loaded from TOML, its compiled array form, the subscriber key table and
allowance state.
"""
