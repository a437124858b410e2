"""experiments/train.py refuses what would waste a run, and loses no work when stopped.

Start-up checks (``_cli.parse``) are tested on the parse alone: each bad flag must exit with a
message naming the flag, what was expected and what came, before anything is compiled. Runs use
the tiny mlp (one compile family) in float32, as the command line runs.
"""

import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

pytest.importorskip("orbax.checkpoint")
pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
sys.path.insert(0, str(ROOT))  # experiments.checkpoint, as users import it from the repository root

import train  # noqa: E402


@pytest.fixture(autouse=True)
def float32_like_the_command_line():
    with jax.enable_x64(False):
        yield


def tiny(*extra, steps=4):
    return ["--model", "mlp", "--size", "tiny", "--steps", str(steps), "--batch-size", "8", "--log-every", "1",
            "--eval-every", str(steps), "--quiet", *extra]


def refused(capsys, argv, message):
    """``train.parse(argv)`` exits with status 2 and ``message`` (a regex) in its error."""
    with pytest.raises(SystemExit) as stop:
        train.parse(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


# 1. output paths ---------------------------------------------------------------------------------
def test_a_ckpt_dir_that_is_a_file_is_refused_at_start_up(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    refused(capsys, tiny("--ckpt-dir", str(tmp_path / "f")), r"--ckpt-dir .*/f: is a file, not a directory")
    refused(capsys, tiny("--ckpt-dir", str(tmp_path / "f" / "ck")), r"--ckpt-dir .*cannot create the directory: "
                                                                    r".*/f is a file")


def test_plots_and_log_paths_that_cannot_be_written_are_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    refused(capsys, tiny("--plots", str(tmp_path / "f")), r"--plots .*/f: is a file, not a directory")
    refused(capsys, tiny("--log", str(tmp_path)), r"--log .*: is a directory; give a file name")
    refused(capsys, tiny("--log", str(tmp_path / "f" / "log.jsonl")), r"--log .*cannot create the file: .*/f is a file")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        refused(capsys, tiny("--log", str(locked / "log.jsonl")), r"--log .*cannot create the file: .*locked is not "
                                                                  r"writable")
    args = train.parse(tiny("--log", str(tmp_path / "new" / "log.jsonl"), "--plots", str(tmp_path / "p"),
                            "--ckpt-dir", str(tmp_path / "ck")))   # missing directories are created later
    assert args.log.endswith("log.jsonl")


# 2. SIGINT / SIGTERM -----------------------------------------------------------------------------
def start_and_signal(argv, log, signum):
    """Start train.py ``argv`` in a fresh process; send ``signum`` once ``log`` has a train record."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "train.py"), *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (log.exists() and '"event": "train"' in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def trained(records):
    return [r for r in records if r["event"] in ("train", "eval")]


def read(log):
    return [json.loads(line) for line in open(log)]


LONG = 3000  # enough tiny steps that the signal lands mid-run (a step takes about a millisecond)


def test_ctrl_c_saves_the_current_step_and_the_resumed_run_is_bit_exact(tmp_path):
    log, ck = tmp_path / "split.jsonl", tmp_path / "ck"
    argv = tiny("--ckpt-dir", str(ck), "--ckpt-every", "100000", "--log", str(log), steps=LONG)
    rc, out, err = start_and_signal(argv, log, signal.SIGINT)
    assert rc == 128 + signal.SIGINT, out + err
    stopped = [r["step"] for r in read(log) if r["event"] == "train"][-1]
    assert 1 <= stopped < LONG
    assert f"SIGINT: stopped after step {stopped}, saved to {ck / str(stopped)}. Continue with:" in err
    assert "experiments/train.py --model mlp" in err and err.rstrip().endswith("--resume")
    assert sorted(p.name for p in ck.iterdir()) == [str(stopped)]
    train.main(argv + ["--resume"])
    straight = train.main(tiny("--log", str(tmp_path / "straight.jsonl"), steps=LONG))
    assert trained(read(log)) == trained(straight["records"])   # every loss and the evaluation, bit for bit


def test_sigterm_without_a_ckpt_dir_says_nothing_is_saved(tmp_path):
    log = tmp_path / "log.jsonl"
    rc, out, err = start_and_signal(tiny("--log", str(log), steps=LONG), log, signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, out + err
    stopped = [r["step"] for r in read(log) if r["event"] == "train"][-1]
    assert f"SIGTERM: stopped after step {stopped}; nothing is saved (no --ckpt-dir)." in err


# 3. hyperparameters and a non-finite loss --------------------------------------------------------
@pytest.mark.parametrize("flag, value, message", [
    ("--lr", "-1", r"--lr must be a positive finite number; got -1.0"),
    ("--lr", "0", r"--lr must be a positive finite number; got 0.0"),
    ("--lr", "nan", r"--lr must be a positive finite number; got nan"),
    ("--lr", "inf", r"--lr must be a positive finite number; got inf"),
    ("--weight-decay", "-1e-4", r"--weight-decay must be a finite number >= 0; got -0.0001"),
    ("--weight-decay", "nan", r"--weight-decay must be a finite number >= 0; got nan"),
    ("--seed", "-1", r"--seed must be >= 0"),
])
def test_non_positive_or_non_finite_hyperparameters_are_refused(capsys, flag, value, message):
    refused(capsys, tiny(f"{flag}={value}"), message)   # --lr=-1: argparse reads -1e-4 alone as a flag


def test_warmup_outside_warmup_cosine_or_its_range_is_refused(capsys):
    refused(capsys, tiny("--warmup", "3"), r"--warmup applies to --schedule warmup-cosine only; this run's schedule "
                                           r"is constant")
    refused(capsys, tiny("--schedule", "warmup-cosine", "--warmup", "4"), r"--warmup must be in \[0, --steps 4\); got 4")
    refused(capsys, tiny("--schedule", "warmup-cosine", "--warmup", "-1"), r"--warmup must be in \[0, --steps 4\)")
    assert train.parse(tiny("--schedule", "warmup-cosine", "--warmup", "3")).warmup == 3


def test_a_non_finite_loss_stops_with_a_checkpoint_of_the_last_finite_step(tmp_path, capsys):
    """lr 1e30: the loss of step 2 is finite (huge), the update overflows, step 3's loss is NaN."""
    from _checkpoint import Checkpoints
    from _setup import setup_for

    ck, log = tmp_path / "ck", tmp_path / "log.jsonl"
    argv = tiny("--lr", "1e30", "--ckpt-dir", str(ck), "--log", str(log), steps=20)
    with pytest.raises(SystemExit) as stop:
        train.main(argv)
    assert stop.value.code == 1
    losses = [r["loss"] for r in read(log) if r["event"] == "train"]
    assert all(map(math.isfinite, losses[:-1])) and not math.isfinite(losses[-1]) and len(losses) < 20
    bad = len(losses)
    err = capsys.readouterr().err
    good = int(re.search(r"saved the state after step (\d+), the newest with finite parameters", err).group(1))
    assert bad - 2 <= good < bad    # the update of the last finite loss may have overflowed already
    assert (f"the loss of step {bad} is nan (learning rate 1e+30): training stopped, every later step would be nan "
            f"too; saved the state after step {good}, the newest with finite parameters, to {ck / str(good)}" in err)
    setup = setup_for(train.parse(argv), "explicit")
    saved, meta = Checkpoints(str(ck), keep=3).restore_latest(setup.start, setup.names)
    assert int(saved.step) == good and meta["data_position"] == good
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(saved.params))


# 4. devices, batch size, context, resume with other flags ----------------------------------------
def test_too_many_devices_is_named_before_the_batch_size(capsys):
    n = len(jax.devices())
    refused(capsys, tiny("--devices", str(n + 2)), rf"--devices {n + 2}: only {n} device\(s\) visible \(cpu\). On CPU, "
                                                   rf"set XLA_FLAGS=--xla_force_host_platform_device_count={n + 2}")


def test_a_batch_larger_than_the_data_set_or_an_empty_context_is_refused(capsys):
    refused(capsys, tiny("--batch-size", "100000"), r"--batch-size 100000 is larger than the digits training set "
                                                    r"\(1347 examples\)")
    refused(capsys, ["--model", "lm", "--context", "0"], r"--context must be at least 1; got 0")
    refused(capsys, tiny("--stop-after", "0"), r"--stop-after must be at least 1; got 0")
    refused(capsys, tiny("--process-id", "0"), r"--coordinator, --num-processes and --process-id need --distributed")


def test_resume_with_other_flags_names_the_changes_and_needs_allow_config_change(tmp_path, capsys):
    ck = ["--ckpt-dir", str(tmp_path / "ck")]
    train.main(tiny(*ck, "--stop-after", "2"))
    with pytest.raises(SystemExit, match=r"checkpoint .*/ck/2 was written with other flags: --lr 0.1 -> 0.05, "
                                         r"--steps 4 -> 6. Resume with its flags, or pass --allow-config-change"):
        train.main(tiny(*ck, "--resume", "--lr", "0.05", steps=6))
    done = train.main(tiny(*ck, "--resume", "--lr", "0.05", "--allow-config-change", steps=6))
    (resume,) = [r for r in done["records"] if r["event"] == "resume"]
    assert resume["changed"] == ["--lr 0.1 -> 0.05", "--steps 4 -> 6"]
    assert "with changed flags: --lr 0.1 -> 0.05, --steps 4 -> 6" in capsys.readouterr().out
    assert [r["step"] for r in done["records"] if r["event"] == "train"][-1] == 6
    assert train.main(tiny(*ck, "--resume", "--lr", "0.05", steps=6))["records"]  # the new flags are now its own


# 5. your own data: --data FILE.npz ---------------------------------------------------------------
def blobs(rng, n, shape, classes=3):
    """``n`` rows of ``shape`` around one centre per class: learnable in a few steps."""
    y = np.arange(n) % classes
    return (rng.normal(size=(n, *shape)) + 3 * y.reshape(-1, *[1] * len(shape))).astype(np.float32), y


def test_own_npz_data_trains_the_mlp_and_the_cnn(tmp_path):
    rng = np.random.default_rng(0)
    x, y = blobs(rng, 40, (5,))
    np.savez(tmp_path / "rows.npz", x=x, y=y)                        # no test split: a quarter held out
    done = train.main(tiny("--data", str(tmp_path / "rows.npz"), "--lr", "0.5", steps=30))
    start = [r for r in done["records"] if r["event"] == "start"][0]
    assert start["data"] == dict(data=str(tmp_path / "rows.npz"), train=30, test=10, classes=3, split="random 75/25",
                                 split_seed=0)
    assert [r for r in done["records"] if r["event"] == "eval"][-1]["accuracy"] > 0.5
    xi, yi = blobs(rng, 24, (6, 6, 1))
    xt, yt = blobs(rng, 9, (6, 6, 1))
    np.savez(tmp_path / "images.npz", x=xi, y=yi.astype(np.uint8), x_test=xt, y_test=yt)
    argv = ["--model", "cnn", "--size", "tiny", "--data", str(tmp_path / "images.npz"), "--steps", "2",
            "--batch-size", "8", "--quiet"]
    done = train.main(argv)
    start = [r for r in done["records"] if r["event"] == "start"][0]
    assert (start["data"]["train"], start["data"]["test"], start["data"]["split"]) == (24, 9, "given")
    assert final_eval(done)["step"] == 2


def final_eval(done):
    return [r for r in done["records"] if r["event"] == "eval"][-1]


GOOD = dict(x=np.zeros((8, 3), np.float32), y=np.arange(8) % 2)


@pytest.mark.parametrize("arrays, message", [
    (dict(x=GOOD["x"]), r"expected the arrays x, y \(and optionally x_test, y_test\); missing y \(the file has x\)"),
    (dict(GOOD, labels=GOOD["y"]), r"expected the arrays x, y .*; unknown labels \(the file has labels, x, y\)"),
    (dict(GOOD, x_test=GOOD["x"]), r"x_test and y_test come together"),
    (dict(GOOD, x=GOOD["x"].reshape(8, 3, 1, 1)), r"x must be \(N, D\) rows for --model mlp; got shape \(8, 3, 1, 1\)"),
    (dict(GOOD, x=GOOD["x"].astype(complex)), r"x must hold real numbers .*; got dtype complex128"),
    (dict(GOOD, x=np.full((8, 3), np.nan)), r"x has 24 non-finite values"),
    (dict(GOOD, y=GOOD["y"].astype(np.float32)), r"y must hold integer class ids; got dtype float32"),
    (dict(GOOD, y=GOOD["y"][:5]), r"y must have shape \(8,\), one class id per row of x; got \(5,\)"),
    (dict(GOOD, y=GOOD["y"] - 1), r"y must hold class ids >= 0; got -1"),
    (dict(GOOD, y=np.zeros(8, int)), r"y has a single class \(0\)"),
    (dict(GOOD, x_test=np.zeros((2, 4)), y_test=np.zeros(2, int)), r"x_test must have x's per-example shape \(3,\); "
                                                                    r"got \(4,\)"),
    (dict(GOOD, x_test=np.zeros((2, 3)), y_test=np.array([0, 5])), r"y_test has class 5, but y's classes are 0 .. 1"),
])
def test_bad_npz_data_is_refused_naming_the_array(tmp_path, capsys, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    refused(capsys, tiny("--data", str(tmp_path / "d.npz")), r"--data .*d.npz: " + message)


def test_npz_data_needs_a_classifier_preset_and_a_readable_file(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", **GOOD)
    refused(capsys, ["--model", "lm", "--data", str(tmp_path / "d.npz")], r"--data FILE.npz is for --model mlp or "
                                                                          r"cnn; --model lm trains on stdlib")
    refused(capsys, ["--model", "cnn", "--data", str(tmp_path / "d.npz")], r"x must be \(N, H, W, C\) images")
    refused(capsys, tiny("--data", str(tmp_path / "none.npz")), r"--data .*none.npz: no such file")
    (tmp_path / "junk.npz").write_text("not a zip")
    refused(capsys, tiny("--data", str(tmp_path / "junk.npz")), r"--data .*junk.npz: cannot be read as an .npz")
    refused(capsys, tiny("--data", "mnist"), r"--data must be one of copy, digits, stdlib or a FILE.npz; got 'mnist'")


# 6. save / load outside train.py -----------------------------------------------------------------
def test_save_and_load_restore_the_params_and_state_namedtuples(tmp_path):
    from experiments.checkpoint import load, save   # the documented import, from the repository root

    done = train.main(["--model", "cnn", "--size", "tiny", "--steps", "2", "--batch-size", "8", "--quiet"])
    ts = done["results"]["explicit"]["state"]
    save(str(tmp_path / "m"), ts.params, ts.state)
    params, state = load(str(tmp_path / "m"))
    for mine, theirs in ((params, ts.params), (state, ts.state)):
        assert jax.tree_util.tree_structure(mine) == jax.tree_util.tree_structure(theirs)  # NamedTuples and all
        for a, b in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(theirs)):
            assert np.asarray(a).dtype == np.asarray(b).dtype
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    save(str(tmp_path / "plain"), {"w": np.arange(3.0), "rest": [None, (np.int32(2),)]})
    assert load(str(tmp_path / "plain"))[1] is None
    with pytest.raises(FileExistsError, match="exists; give a new directory"):
        save(str(tmp_path / "m"), params)
    with pytest.raises(FileNotFoundError, match="has no structure.json"):
        load(str(tmp_path))


# 8. --distributed: two processes of 2 CPU devices each against one process of 4 ------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_distributed_processes_log_what_one_process_of_four_devices_logs(tmp_path):
    argv = tiny("--devices", "4", steps=3)
    script = [sys.executable, str(ROOT / "experiments" / "train.py")]

    def env(count):
        flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={count}"
        return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags.strip())

    one = subprocess.run(script + argv + ["--log", str(tmp_path / "one.jsonl")], env=env(4), capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stdout + one.stderr
    coordinator = f"127.0.0.1:{free_port()}"   # loopback only
    procs = [subprocess.Popen(script + argv + ["--log", str(tmp_path / f"p{i}.jsonl"), "--distributed",
                                               "--coordinator", coordinator, "--num-processes", "2",
                                               "--process-id", str(i)],
                              env=env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
    assert (tmp_path / "p0.jsonl").read_text() == (tmp_path / "one.jsonl").read_text()   # every loss, bit for bit
    assert not (tmp_path / "p1.jsonl").exists()   # one writer
    assert len([r for r in read(tmp_path / "one.jsonl") if r["event"] == "train"]) == 3


# 7. plots -----------------------------------------------------------------------------------------
def test_plots_draw_the_evaluation_loss_a_smoothed_loss_and_dw_only_where_there_are_weights(tmp_path):
    import _plots

    assert _plots.smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])   # bias-corrected: no pull to 0
    assert _plots.smooth([1.0, 3.0]) == pytest.approx([1.0, (0.09 + 0.3) / 0.19])
    argv = ["--model", "cnn", "--size", "tiny", "--steps", "4", "--batch-size", "8", "--log-every", "1",
            "--eval-every", "2", "--quiet", "--plots", str(tmp_path)]
    done = train.main(argv)
    assert {p.name for p in tmp_path.iterdir()} == {"training.png", "backward_flow.png"}
    args, records = train.parse(argv), done["records"]
    result = done["results"]["explicit"]
    fig = _plots.training(str(tmp_path / "t.png"), args, ["explicit"], records, result["setup"].dataset.info, "accuracy")
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    losses = [r["loss"] for r in records if r["event"] == "train"]
    assert list(lines["explicit: per-batch loss"].get_ydata()) == losses
    assert list(lines["explicit: smoothed (EMA 0.9)"].get_ydata()) == _plots.smooth(losses)
    evals = [r for r in records if r["event"] == "eval"]
    assert list(lines["explicit: evaluation loss"].get_xdata()) == [2, 4]
    assert list(lines["explicit: evaluation loss"].get_ydata()) == [r["loss"] for r in evals]
    fig = _plots.backward_flow(str(tmp_path / "f.png"), args, result["flows"])
    top, bottom = fig.axes
    assert len(top.get_xticklabels()) == 7                                   # every layer has a dL/dX
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["[6].linear", "[1].batch_norm", "[0].conv2d"]
    assert all(len(line.get_ydata()) == 3 for line in bottom.get_lines())
