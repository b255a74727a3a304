"""Experiments: plans (TOML lists of fit runs) and the comparison that runs and tabulates them."""
