"""Sharded batches over 4 host devices, in a subprocess (the device count is fixed at JAX start)."""

import os
import subprocess
import sys


def test_hand_rules_under_a_sharded_batch_match_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-m", "jaxback.testing._sharding"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok over 4 devices" in done.stdout
