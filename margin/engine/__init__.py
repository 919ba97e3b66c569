"""The margin engine: pure numpy/scipy, no Django and nothing of the project imported.

Read it as a numerical library: `pricing` values options, `scenarios` builds valuation points,
`portfolio_margin` nets risk arrays by class and product group, `regt` pairs strategies,
`span` scans futures, `defi` values Uniswap v3 positions and checks oracle rounds, `var`
runs historical simulation. `portfolio` holds the normalised request every part reads and the
contract's name lists; `validation` is the one validator of it; `parameters` the typed, frozen
parameter sets. `reference` holds test oracles only (the binomial tree, whole-domain BS2002),
which nothing here imports; synthetic books and benches live outside, in `margin.bench`.
"""

ENGINE_VERSION = "2026.11.0"
