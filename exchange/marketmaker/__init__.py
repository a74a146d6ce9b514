"""The demo market maker: a pure quoting strategy (strategy.py), its user and cash (accounts.py) and the
loop that runs it as a client of the matcher (runner.py). See docs/ARCHITECTURE.md, "Demo market maker"."""
