"""Test session set-up: float64 on (and asserted), hypothesis profiles, cheap XLA compiles."""

import os

# Compiles are most of the suite's time (hundreds of small programs per layer, each compiled once),
# and most of a CPU compile is LLVM optimising loops over a few elements. The checks compare values
# within each dtype's tolerance (or bit for bit, two programs of one session), which no optimisation
# level changes; so the session compiles with LLVM's optimisations off (the subprocesses the tests
# start inherit it). Set XLA_FLAGS yourself to choose another level.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()

import jax  # noqa: E402  (after XLA_FLAGS: the CPU backend reads it when it starts)
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_enable_x64", True)
assert jax.numpy.zeros(()).dtype == jax.numpy.float64, "x64 must be on: JAX would silently downcast"

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, database=None, max_examples=4, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=4, **_COMMON)
settings.register_profile("thorough", max_examples=200, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
