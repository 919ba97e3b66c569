import pytest


@pytest.fixture(autouse=True)
def _demo_settings(settings):
    """The demo's published password and its seed work only under the demo settings
    (`make demo` sets PMARGIN_DEMO=1); these tests are the demo."""
    settings.DEMO = True
