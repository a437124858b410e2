"""The documentation site: every Python block of its pages runs; the site builds strictly and its
maths renders in a real browser (only where the docs extra, and Chromium, are installed)."""

import importlib.util
import subprocess
import sys

import pytest

from _markdown import ROOT, python_blocks, run_or_compare

DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if not {"_build", "_generated"} & set(p.parts))
DOCS_EXTRA = ["sphinx", "myst_parser", "furo", "sphinx-mathjax-offline", "sympy"]


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_every_python_block_of_the_page_runs(page):
    run_or_compare(page, python_blocks(page), {})


def test_the_tutorial_has_code():
    assert len(python_blocks(DOCS / "tutorial.md")) >= 4


def _have_docs_extra() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in DOCS_EXTRA)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not _have_docs_extra():
        pytest.skip("docs extra not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                             str(DOCS), str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_site_builds_warning_free_with_every_page(site):
    for page in PAGES:
        html = site / page.relative_to(DOCS).with_suffix(".html")
        assert html.exists(), html
    api = (site / "_generated" / "api.html").read_text(encoding="utf-8")
    assert "jb.linear" in api and "jaxback.testing.check_vjp" in api
    models = (site / "_generated" / "models.html").read_text(encoding="utf-8")
    assert "jaxback._combinators" in models


def test_maths_renders_in_chromium(site, tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import check_docs_browser

    if check_docs_browser.find_browser() is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium)")
    code = check_docs_browser.main(["--no-build", "--html", str(site), "--screenshots", str(tmp_path)])
    assert code == 0
    assert len(list(tmp_path.glob("*.png"))) == len(check_docs_browser.PAGES)
