"""Engine benches (``make bench``, ``python -m margin.bench``) and their one synthetic book.

``book``: the reproducible synthetic book (portfolio-margin and historical-VaR views of the
same draws); ``runs``: the benches, each printing JSON lines. Nothing here is engine library
code, and no production path imports it.
"""
