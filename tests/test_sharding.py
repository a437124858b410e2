"""Sharded batches over 4 host devices, in a subprocess (the device count is fixed at JAX start)."""

import os
import subprocess
import sys

from jaxback.testing._sharding import ONE_PER_FAMILY


def test_hand_rules_under_a_sharded_batch_match_one_device():
    """One entry per family, each at one setting (``_sharding.ONE_PER_FAMILY``), not all 31 flagged
    entries at all settings (90 s of compiles here). What sharding can break is how a rule's ops meet
    the batch axis, and the partitioner treats a hand rule as ordinary JAX ops; the chosen entries
    cover every way they meet it in jaxback: sums over the batch (linear's w_bar), a batch mean
    (the loss), a scatter-add across devices (embedding), a PRNG key (dropout), batch statistics
    (batch_norm), per-example scores with masks (attention), windows (conv2d), a scan (lstm) and the
    structural nodes (fan_in_concat). Elementwise layers, pools and the norms over features are
    per-example maps like those here. ``python -m jaxback.testing._sharding`` checks every entry."""
    flags = " ".join([os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=4"]).strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-m", "jaxback.testing._sharding", "--one-per-family"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    ok = [line.split("  ")[0] for line in done.stdout.splitlines() if line.endswith("ok over 4 devices")]
    assert ok == [name for name, _ in ONE_PER_FAMILY], done.stdout
