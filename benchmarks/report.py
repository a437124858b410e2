"""Regenerate the README's benchmark section: run the benchmarks at their default sizes and write
their tables (with date and machine) between the README's ``<!-- benchmarks:start -->`` and
``<!-- benchmarks:end -->`` markers.

    python benchmarks/report.py [--readme README.md] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import re

import attention_scaling
import train_steps

START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", default=os.path.join(os.path.dirname(__file__), "..", "README.md"))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    steps = train_steps.report(*train_steps.run("all", args.rounds), args.rounds)
    memory, timing = attention_scaling.run(8192, 2048, 5)
    attention_scaling.plot(memory, os.path.join(os.path.dirname(__file__), "out", "attention_scaling.png"))
    body = "\n\n".join([steps, attention_scaling.report(memory, timing, 5),
                        "![attention temp memory vs T](benchmarks/out/attention_scaling.png)"])
    with open(args.readme) as f:
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"report: {args.readme} has no {START} ... {END} section")
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{body}\n{END}", text, flags=re.S)
    with open(args.readme, "w") as f:
        f.write(text)
    print(body)


if __name__ == "__main__":
    main()
