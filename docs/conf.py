"""Sphinx configuration: MyST markdown, MathJax 3 served from the site itself (no CDN), strict.

Build (one command, from the repository root, after ``pip install -e '.[docs]'``):

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
sys.path.insert(0, str(ROOT))

project = "jaxback"
author = "jaxback contributors"
copyright = "jaxback contributors"

extensions = [
    "myst_parser",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3.2.2 copied into _static: the site renders maths offline
    "jaxback_docs",            # docstring, derivative-table and generated API/model pages
]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "jaxback"
html_static_path = ["_static"]
html_css_files = ["jaxback.css"]
nitpicky = True
suppress_warnings = []
# textmacros: \_ and friends inside \texttt{...}, where the maths names the code's variables
mathjax3_config = {"loader": {"load": ["[tex]/textmacros"]}, "tex": {"packages": {"[+]": ["textmacros"]}}}
