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


def test_fit_then_evaluate_draem_on_the_builtin_data(builtin_root, tmp_path, capsys):
    model = tmp_path / "draem.pt"
    assert main(["fit", "draem", "--category", "brick", "--profile", "quick", "--root", str(builtin_root),
                 "--out", str(model)]) == 0
    assert model.is_file()
    capsys.readouterr()
    assert main(["evaluate", "draem", str(model), "--category", "brick", "--profile", "quick",
                 "--root", str(builtin_root)]) == 0
    import json
    results = json.loads(capsys.readouterr().out)
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max"):
        assert 0.0 <= results[key] <= 1.0


def test_digit_methods_are_refused_with_a_pointer():
    with pytest.raises(SystemExit, match="not trained on MVTec-layout images"):
        main(["fit", "anogan", "--category", "7", "--out", "x.pt"])
    with pytest.raises(SystemExit, match="unknown method 'patchcore'"):
        main(["fit", "patchcore", "--category", "brick", "--out", "x.pt"])


def test_fit_takes_hyper_parameter_overrides(builtin_root, tmp_path, capsys):
    from adlearn.methods import DRAEM

    model = tmp_path / "draem.pt"
    assert main(["fit", "draem", "--category", "grass", "--profile", "quick", "--root", str(builtin_root),
                 "--set", "steps=2", "--set", "lr_milestones=[0.5]", "--out", str(model)]) == 0
    detector = DRAEM.load(model)
    assert detector.hparams["steps"] == 2 and tuple(detector.hparams["lr_milestones"]) == (0.5,)
    assert len(detector.history) == 2
    with pytest.raises(SystemExit, match="unknown hyper-parameter"):
        main(["fit", "draem", "--category", "grass", "--profile", "quick", "--set", "stepz=2", "--out", str(model)])
    with pytest.raises(SystemExit, match="key=value"):
        main(["fit", "draem", "--category", "grass", "--profile", "quick", "--set", "steps", "--out", str(model)])


def test_fit_refuses_to_replace_an_existing_file_before_training(builtin_root, tmp_path):
    model = tmp_path / "draem.pt"
    model.write_bytes(b"keep me")
    arguments = ["fit", "draem", "--category", "grass", "--profile", "quick", "--root", str(builtin_root),
                 "--set", "steps=1", "--out", str(model)]
    with pytest.raises(SystemExit, match="already exists; choose another --out or add --overwrite"):
        main(arguments)
    assert model.read_bytes() == b"keep me"
    assert main(arguments + ["--overwrite"]) == 0
    assert model.stat().st_size > 1000


def test_fit_refuses_a_folder_as_out_before_training(builtin_root, tmp_path):
    with pytest.raises(SystemExit, match="is a folder; give a file name"):
        main(["fit", "draem", "--category", "grass", "--profile", "quick", "--root", str(builtin_root),
              "--out", str(tmp_path), "--overwrite"])


def test_methods_lists_the_registry(capsys):
    from adlearn import methods

    assert main(["methods"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert names == methods.available() and {"anogan", "draem", "feature_knn"} <= set(names)


def test_fit_then_evaluate_feature_knn_with_steps_flag(builtin_root, tmp_path, capsys):
    model = tmp_path / "knn.pt"
    assert main(["fit", "feature_knn", "--category", "washer", "--profile", "quick", "--root", str(builtin_root),
                 "--out", str(model), "--steps", "0"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "feature_knn", str(model), "--category", "washer", "--profile", "quick",
                 "--root", str(builtin_root)]) == 0
    import json
    assert json.loads(capsys.readouterr().out)["image_auroc"] > 0.8  # pretrained features find the drawn defects
