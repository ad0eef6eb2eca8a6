"""Reusable backbones and blocks with official state-dict key names."""
