import subprocess
import sys

import pytest

from adlearn.cli import build_parser, main


def test_profiles_lists_all_three(capsys):
    assert main(["profiles"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["quick", "book", "paper"]


def test_data_build_writes_an_mvtec_layout(tmp_path, capsys):
    root = tmp_path / "builtin"
    assert main(["data", "build", "--root", str(root)]) == 0
    assert str(root) in capsys.readouterr().out
    assert (root / "brick" / "train" / "good").is_dir()
    assert any((root / "washer" / "ground_truth").rglob("*_mask.png"))


def test_bad_arguments_exit_with_usage():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fit", "draem"])  # --category and --out are required


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "adlearn", "profiles"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "paper" in result.stdout
