"""Test session set-up: float64 on (and asserted), hypothesis profiles."""

import os

import jax
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)
assert jax.numpy.zeros(()).dtype == jax.numpy.float64, "x64 must be on: JAX would silently downcast"

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, database=None, max_examples=4, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=4, **_COMMON)
settings.register_profile("thorough", max_examples=200, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
