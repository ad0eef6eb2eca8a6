"""videploy dataset / videploy train on the command line."""

from __future__ import annotations

import pytest

from videploy.cli import main


def test_dataset_writes_the_splits(tmp_path, capsys):
    assert main(["dataset", str(tmp_path / "d"), "--train", "3", "--val", "2", "--test", "0", "--seed", "1"]) == 0
    assert (tmp_path / "d" / "train.csv").read_text().count("\n") == 4
    assert (tmp_path / "d" / "val.csv").is_file() and not (tmp_path / "d" / "test.csv").exists()
    assert "labels" in capsys.readouterr().out


def test_train_help_teaches(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for word in ("path,label", "deep-feature", "--resume", "--weights", "random policy"):
        assert word in text


def test_train_needs_both_csvs(tmp_path, capsys):
    assert main(["train", "stam_actions", "-o", str(tmp_path), "--train", "x.csv"]) != 0
    assert "--val" in capsys.readouterr().err
