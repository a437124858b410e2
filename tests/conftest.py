"""Test session set-up: float64 on (and asserted), hypothesis profiles, cheap XLA compiles."""

import os
import re

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


# One xdist work unit per registry entry. A layer's generated checks share compiles: the mutants,
# the true-rule control and the injected errors run the same op-by-op programs at the same samples
# (each eager op compiles once per shape and process), and float64 and hard_values share jitted
# programs. xdist's default "load" spread them over both workers, each compiling them all again;
# this scheduler keeps each layer's checks on one worker and hands out every other test alone, as
# "load" does. Which tests run, and how, is unchanged. (xdist's own ``--dist loadgroup`` would do
# it with marks, but it renames nodes through ``item._nodeid``, which pytest 9 no longer reads.)
_CHECK = re.compile(r"^tests/test_registry\.py::test_registry\[(?P<layer>.+?)-(?:float64|hard_values|dtype\[|"
                    r"sample\[|edge\[|error\[|mutant\[|true_rule_survives|injected_error)")


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None  # a --dist the user chose
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerPerLayer(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            found = _CHECK.match(nodeid)
            return f"layer:{found['layer']}" if found else nodeid

    return OneWorkerPerLayer(config, log)
