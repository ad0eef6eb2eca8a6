"""Placeholder."""
def from_official_config(path, **overrides):
    raise NotImplementedError
