"""Sphinx configuration. The docs document (and doctest) the *installed* bnnslstm."""

import bnnslstm

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
exclude_patterns = ["_build"]
nitpicky = False

doctest_global_setup = """
import numpy as np
import bnnslstm as bl
np.set_printoptions(precision=4, suppress=True)
"""
