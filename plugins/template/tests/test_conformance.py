"""Run the conformance kit on this plugin: `pytest plugins/<county>`."""

import jsx_plugin_template
from jsxcore.testing.conformance import assert_plugin_conforms


def test_conforms() -> None:
    assert_plugin_conforms(jsx_plugin_template)
