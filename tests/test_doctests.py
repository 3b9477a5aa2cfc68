"""The ``Examples:`` in the docstrings of the public types, losses and render ops run."""

from __future__ import annotations

import doctest
import importlib

import pytest

DOCUMENTED_MODULES = ("recon.types", "recon.losses", "recon.render", "recon.render.mesh_renderer",
                      "recon.render.texture")


@pytest.mark.parametrize("name", DOCUMENTED_MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (see above)"
