"""Test helper: the integrated-gradients steps of the LUR tests."""

from __future__ import annotations

STEPS = 8  # any number of steps must match captum; few keep the tests short
