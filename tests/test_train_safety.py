"""experiments/train.py refuses what would waste a run, and loses no work when stopped.

Start-up checks (``_cli.parse``) are tested on the parse alone: each bad flag must exit with a
message naming the flag, what was expected and what came, before anything is compiled. Runs use
the tiny mlp (one compile family) in float32, as the command line runs.
"""

import os
import re
import pathlib
import sys

import jax
import pytest

pytest.importorskip("orbax.checkpoint")
pytest.importorskip("sklearn")
pytest.importorskip("tqdm")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

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
