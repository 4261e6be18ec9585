import pytest

from adlearn.profiles import PROFILE_NAMES, current_profile, profile_settings, resolve_hparams

TABLE = {
    "quick": {"image_size": 32, "steps": 2},
    "book": {"image_size": 128, "steps": 500},
    "paper": {"image_size": 256, "steps": 100_000},
}


def test_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("ADLEARN_PROFILE", "paper")
    assert current_profile() == "paper"
    assert current_profile("quick") == "quick"


def test_default_is_book(monkeypatch):
    monkeypatch.delenv("ADLEARN_PROFILE", raising=False)
    assert current_profile() == "book"


def test_environment_is_case_and_space_tolerant(monkeypatch):
    monkeypatch.setenv("ADLEARN_PROFILE", " Quick ")
    assert current_profile() == "quick"


def test_unknown_profile_names_the_source_and_the_choices(monkeypatch):
    monkeypatch.setenv("ADLEARN_PROFILE", "fast")
    with pytest.raises(ValueError, match=r"'fast'.*ADLEARN_PROFILE.*quick, book, paper"):
        current_profile()
    with pytest.raises(ValueError, match="argument 'name'"):
        current_profile("huge")


def test_profile_settings_budgets_grow():
    sizes = [profile_settings(name).image_size for name in PROFILE_NAMES]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    assert profile_settings("paper").dataset == "mvtec"
    assert profile_settings("book").dataset == "builtin"
    assert len(profile_settings("paper").categories) == 15


def test_resolve_hparams_merges_overrides_without_mutating_the_table():
    hparams = resolve_hparams(TABLE, "book", owner="Toy", image_size=64)
    assert hparams == {"image_size": 64, "steps": 500}
    assert TABLE["book"]["image_size"] == 128


def test_resolve_hparams_rejects_unknown_overrides():
    with pytest.raises(ValueError, match=r"Toy.from_profile.*\['imagesize'\].*image_size"):
        resolve_hparams(TABLE, "book", owner="Toy", imagesize=64)


def test_resolve_hparams_missing_profile():
    with pytest.raises(ValueError, match="no hyper-parameters for profile 'paper'"):
        resolve_hparams({"quick": {}, "book": {}}, "paper", owner="Toy")


def test_parse_overrides_reads_json_values_and_keeps_strings():
    from adlearn.profiles import parse_overrides

    parsed = parse_overrides(["steps=1200", "lr=2e-3", "sspcab=true", "train_crop=null", "lr_milestones=[0.8, 0.9]",
                              'synthesis={"beta": [0.5, 1.0]}', "texture_root=data/dtd", "name=a=b"])
    assert parsed == {"steps": 1200, "lr": 2e-3, "sspcab": True, "train_crop": None, "lr_milestones": [0.8, 0.9],
                      "synthesis": {"beta": [0.5, 1.0]}, "texture_root": "data/dtd", "name": "a=b"}
    for bad in ("steps", "=3"):
        with pytest.raises(ValueError, match="key=value"):
            parse_overrides([bad])
