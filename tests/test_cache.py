"""One cache root for everything videploy can rebuild, moved by one variable."""

from __future__ import annotations

from pathlib import Path

from videploy.cache import cache_root


def test_videploy_cache_wins_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDEPLOY_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("VIDEPLOY_CACHE")
    assert cache_root() == tmp_path / "xdg" / "videploy"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == Path(tmp_path / "home" / ".cache" / "videploy")


def test_the_test_session_never_writes_to_the_users_cache():
    # conftest points VIDEPLOY_CACHE at pytest's temp dir, for this process and its subprocesses
    assert ".cache" not in cache_root().parts
