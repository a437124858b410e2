"""Write the training results page, docs/results.md: every preset trained in the three modes.

    python experiments/results.py                      # each preset's own step count (slow on CPU)
    python experiments/results.py --max-steps 1000     # at most 1000 steps each (the page says which)
    python experiments/results.py --logs a.jsonl ...   # tables from train.py --compare-modes --log files

Each preset runs as ``train.py --model NAME --compare-modes --seed 0`` (in this process); the
page gets the command that made it and per preset, under one "measured on" line
(``benchmarks/_bench.py``: CPU, cores, versions, date), the table ``train.py`` prints: per mode its final evaluation and the
gradient agreement with auto along the explicit run (for lm, the unigram and bigram baselines).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

import train
from presets import PRESETS

# the measured pages' one header format (benchmarks/_bench.py), shared with the benchmarks
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from _bench import table, write_page  # noqa: E402

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "results.md")
WHAT = {"mlp": "the digits MLP", "cnn": "the digits CNN", "lm": "the byte-level transformer on the stdlib",
        "copy-attention": "the copy task, attention", "copy-lstm": "the copy task, an LSTM"}


def run_preset(name: str, max_steps, seed: int, logs: str) -> list:
    """The log records of ``train.py --model name --compare-modes``, at most ``max_steps`` steps
    (the schedules span the steps run); the log is kept as ``logs/name.jsonl`` (for ``--logs``)."""
    steps = PRESETS[name]["steps"] if max_steps is None else min(max_steps, PRESETS[name]["steps"])
    return train.main(["--model", name, "--compare-modes", "--seed", str(seed), "--steps", str(steps), "--quiet",
                       "--log", os.path.join(logs, f"{name}.jsonl")])["records"]


def read_log(path: str) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f]


def section(records: list) -> str:
    """One preset's heading, configuration line and table (markdown), from its log records."""
    start = next(r for r in records if r["event"] == "start")
    config, info = start["config"], start["data"]
    rows = train.summary(records, train.MODES)
    if not rows or any(r["agreement"] is None for m, r in rows.items() if m != "auto"):
        raise SystemExit(f"results: the log of {config['model']} is not a finished --compare-modes run.")
    metrics = [k for k in rows["explicit"] if k not in ("event", "mode", "step", "loss", "agreement", "worst_step",
                                                         "checks")]
    worst = rows["explicit"]["worst_step"]
    loss_there = next(r["loss"] for r in records if r["event"] == "train" and r["mode"] == "explicit"
                      and r["step"] == worst)
    header, *lines = train.table(rows, metrics, info)
    body = [table(header, lines)]
    return "\n".join([
        f"## {config['model']}: {WHAT.get(config['model'], config['model'])}", "",
        f"{config['steps']} steps of {config['optimizer']} (lr {config['lr']:g}, {config['schedule']}, weight decay "
        f"{config['weight_decay']:g}), batch {config['batch_size']}, size {config['size']}, seed {config['seed']}; "
        f"grad vs auto: the worst of {rows['explicit']['checks']} checks along the explicit run, at step {worst} "
        f"(the explicit run's training loss there: {loss_there:.3g}).", "", *body])


INTRO = (
    "Each preset is `experiments/train.py --model NAME --compare-modes`: the three gradient modes from the "
    "same start over the same batches; eval metric on the test / validation set after the last step; grad vs "
    "auto = max|g - g_auto| / max|g_auto| over all weights, at the same parameters and batch. Where a run has "
    "solved its task (a training loss near 0), that is float32's rounding of the cross-entropy's gradient "
    "p - onehot, a difference 1 - p ~ loss: its relative error is about eps / loss, eps = 1.2e-7.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", choices=list(PRESETS), default=list(PRESETS))
    parser.add_argument("--max-steps", type=int, default=None,
                        help="at most this many steps per preset. Default: each preset's own.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logs", nargs="+", default=None, help="build the tables from these logs instead.")
    parser.add_argument("--out", default=PAGE)
    parser.add_argument("--keep-logs", metavar="DIR", default=os.path.join("experiments", "out", "results"),
                        help="where the runs' logs go. Default: experiments/out/results.")
    args = parser.parse_args(argv)
    logs = ([read_log(p) for p in args.logs] if args.logs
            else [run_preset(name, args.max_steps, args.seed, args.keep_logs) for name in args.presets])
    command = " ".join(["python experiments/results.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    print(write_page(args.out, "Training results", command, [INTRO, *(section(records) for records in logs)]))


if __name__ == "__main__":
    main()
