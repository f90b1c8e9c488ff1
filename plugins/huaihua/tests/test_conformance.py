"""The conformance kit county developers run, applied to this plugin."""

import jsx_plugin_huaihua
from jsxcore.testing.conformance import assert_plugin_conforms


def test_conforms() -> None:
    assert_plugin_conforms(jsx_plugin_huaihua)
