"""experiments/train.py: the README's main job (--compare-modes), bit-exact resume for every preset
and mode, damaged and mismatched checkpoints, run-to-run determinism, and 4 simulated devices
against one.

The script runs as its users run it, in float32: conftest turns x64 on for the whole session, so
every call here is inside ``jax.enable_x64(False)`` (an autouse fixture). Tiny models
(``--size tiny``) and a few steps keep this cheap; the straight and resumed runs of one
model and mode share one compiled step (``_setup.build`` is cached), so each pair compiles once.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

pytest.importorskip("orbax.checkpoint")
pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))  # the scripts import each other as python experiments/x.py does

import train  # noqa: E402
from _setup import setup_for  # noqa: E402
from presets import PRESETS  # noqa: E402
from _checkpoint import CheckpointError, CheckpointMismatch, Checkpoints  # noqa: E402

STEPS = 4


@pytest.fixture(autouse=True)
def float32_like_the_command_line():
    with jax.enable_x64(False):
        yield


def flags(model, mode="explicit", *extra):
    return ["--model", model, "--size", "tiny", "--mode", mode, "--steps", str(STEPS), "--batch-size", "8",
            "--log-every", "1", "--eval-every", str(STEPS), "--context", "8", "--quiet", *extra]


def run(*argv):
    return train.main(list(argv))


def final(result):
    (only,) = result["results"].values()
    return only["state"]


def trained(records):
    """The train and eval records (what both runs must agree on; the resume record is extra)."""
    return [r for r in records if r["event"] in ("train", "eval")]


def assert_bit_identical(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def straight_and_split(tmp_path, model, mode):
    straight = run(*flags(model, mode), "--log", str(tmp_path / "straight.jsonl"))
    ckpt = ["--ckpt-dir", str(tmp_path / "ck")]
    run(*flags(model, mode), *ckpt, "--stop-after", str(STEPS // 2), "--log", str(tmp_path / "split.jsonl"))
    split = run(*flags(model, mode), *ckpt, "--resume", "--log", str(tmp_path / "split.jsonl"))
    return straight, split


@pytest.mark.parametrize("mode", train.MODES)
@pytest.mark.parametrize("model", list(PRESETS))
def test_resume_is_bit_exact(tmp_path, model, mode):
    straight, split = straight_and_split(tmp_path, model, mode)
    assert_bit_identical(final(straight), final(split))     # params, batch-norm state, optimiser, key
    assert trained(straight["records"]) == trained(split["records"])   # every loss, bit for bit
    on_disk = [json.loads(line) for line in open(tmp_path / "split.jsonl")]
    assert trained(on_disk) == trained(straight["records"])
    assert [r["step"] for r in on_disk if r["event"] == "resume"] == [STEPS // 2]
    assert [r["step"] for r in trained(on_disk) if r["event"] == "train"] == list(range(1, STEPS + 1))


def test_the_readme_main_job_trains_the_mlp_in_three_modes_and_compares_their_gradients(capsys):
    """``train.py --model mlp --compare-modes`` (here its first 40 steps): the same start and batches
    in every mode, explicit and vjp bit for bit, auto within rounding, the table printed."""
    result = train.main(["--model", "mlp", "--compare-modes", "--steps", "40", "--log-every", "10", "--quiet"])
    out = capsys.readouterr().out
    rows = train.summary(result["records"], train.MODES)
    assert rows["explicit"]["loss"] == rows["vjp"]["loss"] and rows["explicit"]["step"] == 40
    assert abs(rows["auto"]["loss"] - rows["explicit"]["loss"]) < 1e-4
    assert rows["explicit"]["checks"] == 4
    for mode in ("explicit", "vjp"):
        assert 0 <= rows[mode]["agreement"] < 1e-4   # float32 rounding, on the gradient's scale
        assert f"{rows[mode]['agreement']:.1e}" in out
    assert rows["explicit"]["accuracy"] > 0.8
    for text in ("mode", "accuracy", "grad vs auto", "reference", f"{100 * rows['auto']['accuracy']:.2f}%"):
        assert text in out


def test_results_page_is_built_from_the_runs_records(tmp_path):
    """experiments/results.py: the measured-on line, the command, per preset the table of its log
    (lm: with the unigram and bigram baselines), the same numbers as the log's."""
    import results

    log = tmp_path / "lm.jsonl"
    train.main(flags("lm", "explicit", "--compare-modes", "--log", str(log)))
    out = tmp_path / "results.md"
    results.main(["--logs", str(log), "--out", str(out)])
    text = out.read_text()
    assert text.count("measured on: ") == 1 and f"jax {jax.__version__}" in text
    assert f"python experiments/results.py --logs {log} --out {out}" in text
    rows = train.summary(results.read_log(str(log)), train.MODES)
    assert f"| explicit | {STEPS} | {rows['explicit']['loss']:.4f} | {rows['explicit']['perplexity']:.3f} |" in text
    assert "| bigram baseline |" in text and f"{rows['vjp']['agreement']:.1e}" in text


def test_transformer_is_the_lm_preset():
    assert train.parse(["--model", "transformer"]).model == "lm"
    with pytest.raises(SystemExit):
        train.parse(["--model", "lm", "--data", "digits"])


def damage(ckpt_dir, step):
    """Truncate every array data file of checkpoint ``step`` to half its length."""
    files = [p for p in (ckpt_dir / str(step) / "state").rglob("*") if p.is_file() and "/d/" in str(p)]
    assert files, list((ckpt_dir / str(step)).rglob("*"))
    for p in files:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    straight = run(*flags("cnn"))
    ckpt_dir = tmp_path / "ck"
    run(*flags("cnn"), "--ckpt-dir", str(ckpt_dir), "--ckpt-every", "1", "--stop-after", "3")
    damage(ckpt_dir, 3)
    with pytest.warns(RuntimeWarning, match=rf"checkpoint {ckpt_dir / '3'} is damaged"):
        resumed = run(*flags("cnn"), "--ckpt-dir", str(ckpt_dir), "--resume")
    assert [r["step"] for r in resumed["records"] if r["event"] == "resume"] == [2]
    assert_bit_identical(final(straight), final(resumed))
    assert sorted(p.name for p in ckpt_dir.iterdir() if p.name[0].isdigit()) == ["1", "2", "3.damaged", "4"]


def test_unreadable_meta_is_damage_and_all_damaged_is_an_error(tmp_path):
    ckpt_dir = tmp_path / "ck"
    run(*flags("mlp"), "--ckpt-dir", str(ckpt_dir), "--ckpt-every", "1", "--keep", "2", "--stop-after", "3")
    assert sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit()) == [2, 3]   # --keep 2
    (ckpt_dir / "3" / "meta" / "metadata").write_text("{not json")
    damage(ckpt_dir, 2)
    with pytest.warns(RuntimeWarning), pytest.raises(CheckpointError, match=r"/3 is damaged.*meta.*/2 is damaged"):
        run(*flags("mlp"), "--ckpt-dir", str(ckpt_dir), "--resume")


def saved(tmp_path, model, *extra, cast=None):
    """A checkpoint of ``model``'s starting state (its params cast to ``cast`` if given)."""
    args = train.parse(flags(model, "explicit", *extra))
    setup = setup_for(args, "explicit")
    state = setup.start
    if cast is not None:
        state = state._replace(params=jax.tree_util.tree_map(lambda a: np.asarray(a).astype(cast), state.params))
    ckpt = Checkpoints(str(tmp_path / "ck"), keep=2)
    ckpt.save(0, state, setup.names, dict(data_position=0))
    ckpt.close()
    return tmp_path / "ck"


def restore_as(ckpt_dir, model, *extra):
    args = train.parse(flags(model, "explicit", *extra))
    setup = setup_for(args, "explicit")
    return Checkpoints(str(ckpt_dir), keep=2).restore_latest(setup.start, setup.names)


def test_a_checkpoint_of_another_model_names_the_first_differing_path(tmp_path):
    ckpt_dir = saved(tmp_path, "mlp")
    with pytest.raises(CheckpointMismatch, match=rf"checkpoint {ckpt_dir / '0'} does not fit this run: the tree "
                                                 r"differs at leaf 0: the checkpoint has params.serial\[0\].linear.w, "
                                                 r"this run has params.serial\[0\].conv2d.w"):
        restore_as(ckpt_dir, "cnn")


def test_another_shape_dtype_or_optimiser_is_refused(tmp_path):
    ckpt_dir = saved(tmp_path / "a", "mlp")
    with pytest.raises(CheckpointMismatch, match=r"params.serial\[0\].linear.w: the checkpoint has shape \(64, 8\), "
                                                 r"this run expects \(64, 64\)"):
        restore_as(ckpt_dir, "mlp", "--size", "small")
    ckpt_dir = saved(tmp_path / "b", "mlp", cast=np.float16)
    with pytest.raises(CheckpointMismatch, match=r"params.serial\[0\].linear.w: the checkpoint has dtype float16, "
                                                 r"this run expects float32"):
        restore_as(ckpt_dir, "mlp")
    ckpt_dir = saved(tmp_path / "c", "mlp", "--optimizer", "adam")
    with pytest.raises(CheckpointMismatch, match=r"the tree differs at leaf \d+: the checkpoint has opt_state"):
        restore_as(ckpt_dir, "mlp", "--optimizer", "sgd")
    assert restore_as(ckpt_dir, "mlp", "--optimizer", "adam") is not None    # the right flags restore


def test_existing_checkpoints_need_resume(tmp_path):
    ckpt_dir = saved(tmp_path, "mlp")
    with pytest.raises(SystemExit, match="already holds checkpoints .*pass --resume"):
        run(*flags("mlp"), "--ckpt-dir", str(ckpt_dir))


def test_same_flags_give_identical_logs_run_to_run(tmp_path):
    argv = flags("cnn", "explicit", "--log", str(tmp_path / "in_process.jsonl"))
    run(*argv)
    argv[-1] = str(tmp_path / "subprocess.jsonl")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "train.py"), *argv], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "in_process.jsonl").read_text() == (tmp_path / "subprocess.jsonl").read_text()


FOUR_DEVICES = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import jax, numpy as np, train
assert len(jax.devices()) == 4, jax.devices()
out = {}
for model in ("cnn",):  # batch norm: statistics over the whole, split batch
    for devices in (1, 4):
        argv = ["--model", model, "--size", "tiny", "--mode", "explicit", "--steps", "4", "--batch-size", "8",
                "--log-every", "1", "--context", "8", "--quiet", "--devices", str(devices)]
        result = train.main(argv)
        ts = result["results"]["explicit"]["state"]
        losses = [r["loss"] for r in result["records"] if r["event"] == "train"]
        setup = result["results"]["explicit"]["setup"]
        batch = train.global_batch(setup, 0, 8)
        hlo = setup.step.lower(ts, batch).compile().as_text()
        out[f"{model}/{devices}"] = dict(losses=losses, all_reduce="all-reduce" in hlo,
            replicated=all(leaf.sharding.is_fully_replicated for leaf in jax.tree_util.tree_leaves(ts)),
            split=all(leaf.sharding.spec == jax.sharding.PartitionSpec("data") and len(leaf.sharding.device_set) == devices
                      for leaf in jax.tree_util.tree_leaves(batch)),
            params=[np.asarray(l).tolist() for l in jax.tree_util.tree_leaves(ts.params)])
print("RESULT " + json.dumps(out))
"""


def test_four_simulated_devices_match_one(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", FOUR_DEVICES, str(ROOT / "experiments")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout.split("RESULT ", 1)[1])
    eps = np.finfo(np.float32).eps
    for model in ("cnn",):
        one, four = out[f"{model}/1"], out[f"{model}/4"]
        assert four["replicated"] and four["split"] and four["all_reduce"]   # state replicated, batch split
        assert not one["all_reduce"]
        # float32 sums in another order: measured within 1 ulp over these 4 steps; allow 8
        np.testing.assert_allclose(four["losses"], one["losses"], rtol=8 * eps, atol=0)
        for a, b in zip(four["params"], one["params"]):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=8 * eps, atol=8 * eps)
