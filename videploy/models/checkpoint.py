"""Placeholder."""
def load_checkpoint(model, source):
    raise NotImplementedError
