"""Reference implementations used only as TEST ORACLES, apart from production pricing.

- ``binomial.binomial_american``: the Leisen-Reimer binomial tree, the "binomial limit" of
  METHODOLOGY.md section 1 that ``pricing.AMERICAN`` is tested against;
- ``bs2002.bs2002_value``: Bjerksund & Stensland (2002) on the whole domain, the engine's
  earlier American model, kept to show where it misses the tolerance.

Production code (the engine, the calculator, the live path) never imports this package;
tests/engine/test_layout.py walks the imports and fails if it does.
"""

from .binomial import binomial_american
from .bs2002 import bs2002_value

__all__ = ["binomial_american", "bs2002_value"]
