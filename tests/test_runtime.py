import numpy as np
import pytest
import torch

from adlearn.runtime import describe_run, pick_device, seed_everything


def test_seed_everything_repeats_all_generators():
    gen = seed_everything(123)
    first = (torch.rand(3), np.random.rand(3), torch.rand(2, generator=gen))
    gen = seed_everything(123)
    second = (torch.rand(3), np.random.rand(3), torch.rand(2, generator=gen))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_seed_must_be_an_int():
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything(1.5)


def test_pick_device_defaults_to_an_available_device():
    device = pick_device()
    assert device.type in {"cpu", "cuda", "mps"}
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when CUDA is missing")
def test_asking_for_missing_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        pick_device("cuda")


def test_describe_run_names_profile_device_and_data():
    line = describe_run("book", "cpu", "built-in brick")
    assert line.startswith("profile: book | device: cpu (")
    assert line.endswith("| data: built-in brick")


def test_trained_model_path_changes_with_the_hyper_parameters(tmp_path):
    from adlearn.methods.draem import DRAEM
    from adlearn.notebook import trained_model_path

    book = trained_model_path(DRAEM.from_profile("book"), "draem_book_grass", root=tmp_path)
    assert book.parent == tmp_path / "checkpoints"
    assert book.name.startswith("draem_book_grass_") and book.suffix == ".pt"
    assert trained_model_path(DRAEM.from_profile("book"), "draem_book_grass", root=tmp_path) == book  # repeatable
    wider = trained_model_path(DRAEM.from_profile("book", discriminative_width=32), "draem_book_grass", root=tmp_path)
    assert wider != book  # a model trained with other settings is never loaded in its place
    reloaded = DRAEM.from_profile("book")
    reloaded.fitted = True  # saving needs a fitted model; the file only has to round-trip the settings
    reloaded.save(tmp_path / "m.pt")
    assert trained_model_path(DRAEM.load(tmp_path / "m.pt"), "draem_book_grass", root=tmp_path) == book  # survives save/load
    # the data folder's name counts, so a model trained on built-in version 2 is not taken for one of version 3
    on_v2 = trained_model_path(DRAEM.from_profile("book"), "draem_book_grass", root=tmp_path, data=tmp_path / "builtin_v2")
    on_v3 = trained_model_path(DRAEM.from_profile("book"), "draem_book_grass", root=tmp_path, data="elsewhere/builtin_v3")
    assert len({book, on_v2, on_v3}) == 3
    assert on_v3 == trained_model_path(DRAEM.from_profile("book"), "draem_book_grass", root=tmp_path, data="builtin_v3")


def test_other_seed_runs_takes_only_the_same_configuration(tmp_path):
    import json

    from adlearn.methods.memseg import MemSeg
    from adlearn.notebook import configuration, other_seed_runs

    detector = MemSeg.from_profile("book", seed=0)
    settings = configuration(detector)
    assert "seed" not in settings and settings["steps"] == detector.config.steps
    assert configuration(MemSeg.profile_config("book", seed=7)) == settings  # a config gives the same, seed aside
    json.dumps(settings)  # plain JSON

    def write(name, hparams, seeds, method="memseg", data="grass", version=3):
        rows = [{"data": data, "seed": seed, "image_auroc": 0.9 + seed / 100} for seed in seeds]
        record = {"method": method, "profile": "book", "overrides": {}, "rows": rows}
        if hparams is not None:
            record["hparams"] = hparams
        if version is not None:
            record["builtin_version"] = version
        (tmp_path / name).write_text(json.dumps(record))

    write("same.json", settings, [2, 0, 1])
    write("older_profile.json", {**settings, "steps": 500}, [3])
    write("no_hparams.json", None, [4])  # written before results recorded their settings: never mixed in
    write("other_method.json", settings, [5], method="draem")
    write("other_data.json", settings, [6], data="gravel")
    # grass images changed in builder version 3: results on version 2's images (or unversioned ones) are not mixed in
    write("older_images.json", settings, [7], version=2)
    write("unversioned.json", settings, [8], version=None)
    rows = other_seed_runs(detector, "grass", seed=0, results=tmp_path)
    assert [(row["seed"], row["file"]) for row in rows] == [(1, "same.json"), (2, "same.json")]
    assert rows[0]["image_auroc"] == pytest.approx(0.91)
    assert other_seed_runs(detector, "brick", seed=0, results=tmp_path) == []
    # brick's images are the same bytes since version 2, so its unversioned results still count
    write("brick_v2.json", settings, [1], data="brick", version=None)
    assert [row["file"] for row in other_seed_runs(detector, "brick", seed=0, results=tmp_path)] == ["brick_v2.json"]
    # Magnetic Tile Defects is not built here: no version needed
    write("mtd.json", settings, [1], data="magnetic_tile", version=None)
    assert [row["file"] for row in other_seed_runs(detector, "magnetic_tile", seed=0, results=tmp_path)] == ["mtd.json"]


def test_configuration_compares_file_settings_by_file_name(tmp_path):
    import json

    from adlearn.methods.efficientad import EfficientAD
    from adlearn.notebook import configuration, other_seed_runs

    # the chapter names the teacher by its absolute path, the benchmark by a relative one: same configuration
    chapter = EfficientAD.from_profile("quick", teacher_path=str(tmp_path / "checkpoints" / "teacher_ab12.pt"))
    assert configuration(chapter)["teacher_path"] == "teacher_ab12.pt"
    recorded = {**configuration(chapter), "teacher_path": "data/checkpoints/teacher_ab12.pt"}
    other_file = {**recorded, "teacher_path": "data/checkpoints/teacher_cd34.pt"}
    for name, hparams in (("same.json", recorded), ("other_teacher.json", other_file)):
        record = {"method": "efficientad", "hparams": hparams, "builtin_version": 3,
                  "rows": [{"data": "grass", "seed": 1, "image_auroc": 0.7}]}
        (tmp_path / name).write_text(json.dumps(record))
    assert [row["file"] for row in other_seed_runs(chapter, "grass", seed=0, results=tmp_path)] == ["same.json"]


def test_seed_table_puts_this_run_beside_the_other_seeds(tmp_path):
    import json

    from adlearn.methods.memseg import MemSeg
    from adlearn.notebook import configuration, seed_table

    detector = MemSeg.from_profile("book", seed=0)
    this_run = {"image_auroc": 0.90, "pixel_auroc": 0.80, "aupro": 0.50, "pixel_ap": 0.3}
    table, summary = seed_table(detector, "grass", 0, this_run, results=tmp_path)  # nothing recorded yet
    assert list(table.index) == [0] and table.loc[0, "run"] == "this notebook"
    assert summary["image_auroc"] == "(no other seed measured for these settings)"

    rows = [{"data": "grass", "seed": s, "image_auroc": a, "pixel_auroc": 0.8, "aupro": 0.5} for s, a in ((1, 0.94), (2, 0.92))]
    (tmp_path / "r.json").write_text(json.dumps({"method": "memseg", "hparams": configuration(detector), "builtin_version": 3,
                                                          "rows": rows}))
    table, summary = seed_table(detector, "grass", 0, this_run, results=tmp_path)
    assert list(table.index) == [0, 1, 2, "mean", "std"]
    assert table.loc[1, "run"] == "r.json"
    assert table.loc["mean", "image_auroc"] == pytest.approx(0.92)
    assert table.loc["std", "image_auroc"] == pytest.approx(0.02)  # sample standard deviation of 0.90, 0.94, 0.92
    assert summary == {"image_auroc": "0.920 ± 0.020", "pixel_auroc": "0.800 ± 0.000", "aupro": "0.500 ± 0.000"}
    with pytest.raises(KeyError, match="aupro"):
        seed_table(detector, "grass", 0, {"image_auroc": 0.9}, metrics=("image_auroc", "aupro"), results=tmp_path)


def test_compare_over_seeds_puts_variants_side_by_side_and_pairs_seeds(tmp_path):
    import json

    from adlearn.methods.cutpaste import CutPaste
    from adlearn.notebook import compare_over_seeds, configuration, paired_differences

    plain, block = CutPaste.from_profile("book"), CutPaste.from_profile("book", sspcab=True)
    for detector, name, values in ((plain, "plain", (0.80, 0.84)), (block, "block", (0.90,))):
        rows = [{"data": "grass", "seed": s, "image_auroc": v} for s, v in zip((1, 2), values)]
        rows.append({"data": "gravel", "seed": 1, "image_auroc": 0.1})  # another data set: never mixed in
        (tmp_path / f"{name}.json").write_text(json.dumps({"method": "cutpaste", "hparams": configuration(detector),
                                                                    "builtin_version": 3, "rows": rows}))
    this_runs = {"CutPaste": {"image_auroc": 0.82}, "CutPaste + SSPCAB": {"image_auroc": 0.86}}
    table = compare_over_seeds({"CutPaste": plain, "CutPaste + SSPCAB": block}, "grass", 0, this_runs, results=tmp_path)
    assert list(table.columns) == ["seed 0", "seed 1", "seed 2", "mean", "std", "seeds"]
    assert table.loc["CutPaste", "mean"] == pytest.approx(0.82) and table.loc["CutPaste", "std"] == pytest.approx(0.02)
    assert table.loc["CutPaste + SSPCAB", "seeds"] == 2 and np.isnan(table.loc["CutPaste + SSPCAB", "seed 2"])
    differences, verdict = paired_differences(table, "CutPaste + SSPCAB", "CutPaste")
    assert differences == pytest.approx([0.04, 0.10]) and verdict == "helped"  # seed 2 has no run with the block
    assert paired_differences(table, "CutPaste", "CutPaste + SSPCAB")[1] == "hurt"
    this_runs["CutPaste + SSPCAB"] = {"image_auroc": 0.70}  # -0.12 on seed 0, +0.10 on seed 1
    table = compare_over_seeds({"CutPaste": plain, "CutPaste + SSPCAB": block}, "grass", 0, this_runs, results=tmp_path)
    assert paired_differences(table, "CutPaste + SSPCAB", "CutPaste")[1] == "made no consistent difference"
    with pytest.raises(KeyError, match="FeatureKNN"):
        compare_over_seeds({"CutPaste": plain}, "grass", 0, {**this_runs, "FeatureKNN": {}}, results=tmp_path)


def test_compare_over_seeds_with_no_other_seed_recorded(tmp_path):
    from adlearn.methods.cutpaste import CutPaste
    from adlearn.notebook import compare_over_seeds, paired_differences

    detectors = {"CutPaste": CutPaste.from_profile("book"), "CutPaste + SSPCAB": CutPaste.from_profile("book", sspcab=True)}
    table = compare_over_seeds(detectors, "grass", 3, {"CutPaste": {"image_auroc": 0.8}, "CutPaste + SSPCAB": {"image_auroc": 0.9}},
                               results=tmp_path)
    assert list(table.columns) == ["seed 3", "mean", "std", "seeds"] and list(table["seeds"]) == [1, 1]
    assert paired_differences(table, "CutPaste + SSPCAB", "CutPaste") == (pytest.approx([0.1]), "helped")
