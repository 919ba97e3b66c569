"""The margin engine: pure numpy/scipy, no Django and nothing of the project imported.

Read it as a numerical library: `pricing` values options, `scenarios` builds valuation points,
`portfolio_margin` nets risk arrays by class and product group, `regt` pairs strategies,
`span` scans futures, `defi` values Uniswap v3 positions and checks oracle rounds, `var`
runs historical simulation. `portfolio` holds the normalised request every part reads.
"""

ENGINE_VERSION = "2026.11.0"
