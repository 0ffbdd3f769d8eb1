"""Sphinx configuration. The docs document (and doctest) the *installed* bnnslstm."""

import os
import sys

# ``python -m sphinx ... docs`` run from the repository root puts the root on sys.path,
# where the unbuilt bnnslstm/ source tree would shadow the installed package: drop it.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _ROOT]

import bnnslstm  # noqa: E402

autodoc_mock_imports = []  # the optional dependencies: the API page documents their modules
for _optional in ("torch", "onnx"):  # without them installed
    try:
        __import__(_optional)
    except ImportError:
        autodoc_mock_imports.append(_optional)

project = "bnnslstm"
author = "the bnnslstm developers"
copyright = "2026, the bnnslstm developers"
release = bnnslstm.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
exclude_patterns = ["_build"]
nitpicky = False


def _cache_regions_table(app):
    """The training-cache page's table of regions, drawn from the one table the plan lays the
    cache out by (bnnslstm._cache.REGIONS): a page cannot disagree with the code."""
    from docutils import nodes
    from docutils.parsers.rst import Directive
    from docutils.statemachine import StringList

    from bnnslstm._cache import HEADER_BYTES, REGIONS

    class CacheRegions(Directive):
        def run(self):
            lines = [".. list-table::", "   :header-rows: 1", "",
                     "   * - region", "     - logical shape", "     - content",
                     "     - size in bytes",
                     "   * - header", "     -",
                     "     - magic ``BNNSLSTM``, format version (u32), data type (u32), "
                     "capacity (u64), SHA-256 fingerprint (32 bytes), one byte of the hash of "
                     "each parameter group (7 bytes)",
                     f"     - {HEADER_BYTES}"]
            for name, width, apart, content in REGIONS:
                w = f"{width}H" if width > 1 else "H"
                shape, size = ((f"[T][B][D][{w}]", f"T*B*D*{w}*e") if apart
                               else ("[T][B][D*H]", "T*B*D*H*e"))
                lines += [f"   * - ``{name}[l]``", f"     - ``{shape}``", f"     - {content}",
                          f"     - ``{size}``"]
            node = nodes.section()
            self.state.nested_parse(StringList(lines), self.content_offset, node)
            return node.children

    app.add_directive("cache-regions", CacheRegions)


def setup(app):
    _cache_regions_table(app)


doctest_global_setup = """
import numpy as np
import bnnslstm as bl
np.set_printoptions(precision=4, suppress=True)
try:
    import torch  # the examples that need PyTorch have ':skipif: torch is None'
except ImportError:
    torch = None
"""
