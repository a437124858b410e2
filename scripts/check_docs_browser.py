"""Build the docs site and check, in headless Chromium, that its maths rendered.

    python scripts/check_docs_browser.py --screenshots DIR [--no-build] [--html docs/_build/html]

For the tutorial and two derivation pages: Chromium loads the page from disk (MathJax is served by
the site itself, no network), runs its scripts, and dumps the DOM. The check asserts that MathJax
replaced every maths element of the page with a rendered ``mjx-container`` and that no raw TeX
(``$$``, ``\\frac``, ``\\begin``, ``\\[``) is left in the visible text outside code blocks; then it
saves a full-width screenshot of each page. Exit status 1 on any failure. Needs Debian's
``chromium`` package (``apt-get install chromium``); nothing else beyond the ``docs`` extra.
"""

from __future__ import annotations

import argparse
import html
import pathlib
import re
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = ["tutorial.html", "layers/linear.html", "layers/activations.html"]
RAW_TEX = ["$$", "\\frac", "\\begin", "\\["]
BROWSERS = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]


def find_browser() -> str | None:
    """The first Chromium-like executable on PATH, or None."""
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def build(html_dir: pathlib.Path) -> None:
    """The documented one-command build, strict (-W)."""
    subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                    str(ROOT / "docs"), str(html_dir)], check=True)


def _chromium(browser: str, *args: str) -> str:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--virtual-time-budget=15000", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout


def visible_text(dom: str) -> str:
    """The page's text without scripts, styles, code blocks and rendered maths."""
    for tag in ["script", "style", "pre", "code", "mjx-container", "mjx-assistive-mml"]:
        dom = re.sub(rf"<{tag}\b.*?</{tag}>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


def math_sources(page: pathlib.Path) -> int:
    """How many maths elements the built page holds (Sphinx marks them ``class="math..."``)."""
    return len(re.findall(r'class="math notranslate', page.read_text(encoding="utf-8")))


def check_page(browser: str, page: pathlib.Path, screenshot: pathlib.Path | None, label: str) -> list[str]:
    """Problems found on ``page`` (empty when the maths rendered); saves ``screenshot``."""
    dom = _chromium(browser, "--dump-dom", page.as_uri())
    rendered, expected = dom.count("<mjx-container"), math_sources(page)
    problems = []
    if expected == 0:
        problems.append(f"{label}: no maths elements in the built page")
    if rendered < expected:
        problems.append(f"{label}: {rendered} rendered mjx-container elements for {expected} maths elements")
    text = visible_text(dom)
    problems += [f"{label}: raw {tex!r} left in the text" for tex in RAW_TEX if tex in text]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        _chromium(browser, f"--screenshot={screenshot}", "--window-size=1400,2200", page.as_uri())
        if not screenshot.exists() or screenshot.stat().st_size == 0:
            problems.append(f"{label}: no screenshot written to {screenshot}")
    print(f"{label}: {rendered} rendered of {expected} maths elements"
          + (f", screenshot {screenshot}" if screenshot else ""))
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=pathlib.Path, default=ROOT / "docs" / "_build" / "html")
    parser.add_argument("--screenshots", type=pathlib.Path, default=None)
    parser.add_argument("--no-build", action="store_true", help="check an existing build")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("no Chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    if not args.no_build:
        build(args.html)
    problems = []
    for name in PAGES:
        shot = args.screenshots / name.replace("/", "_").replace(".html", ".png") if args.screenshots else None
        problems += check_page(browser, args.html / name, shot, name)
    for p in problems:
        print("FAIL", p, file=sys.stderr)
    print("maths rendered on every page" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
