"""Config: presets, validation messages that name the setting, YAML round trip."""

import pytest

from ird_tf.config import ConfigError, DataConfig, ExperimentConfig, LossConfig, preset
from ird_tf.data.view import InputView


def test_presets_validate_and_round_trip(tmp_path):
    for name in ("cpu", "paper"):
        cfg = preset(name)
        if cfg.data.source == "sicap":
            cfg.data.root = str(tmp_path)
        cfg.validate()
        path = cfg.save(tmp_path / f"{name}.yaml")
        assert ExperimentConfig.load(path) == cfg


def test_paper_preset_has_the_authors_settings():
    cfg = preset("paper")
    assert cfg.model.backbone == "vgg16" and cfg.data.image_size == 512
    assert (cfg.loss.ce, cfg.loss.fm, cfg.loss.at) == (1.0, 0.1, 10.0)
    assert cfg.optim.learning_rate == 1e-4 and cfg.optim.epochs == 20 and cfg.data.batch_size == 32


@pytest.mark.parametrize(
    ("mag", "factor", "size"),
    [(10.0, 1, 128), (5.0, 2, 128), (2.5, 4, 128), (1.25, 8, 128), (0.625, 16, 128)],
)
def test_factor_and_student_size(mag, factor, size):
    d = DataConfig(student_mag=mag, image_size=size)
    d.validate()
    assert d.factor == factor
    assert InputView.student(d).size == size
    assert InputView.student(DataConfig(student_mag=mag, mode="native")).size == size // factor


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: DataConfig(student_mag=3.0), "data.student_mag"),
        (lambda: DataConfig(mode="tiled"), "data.mode"),
        (lambda: DataConfig(source="sicap"), "data.root"),
        (lambda: DataConfig(image_size=100, student_mag=0.625), "data.image_size"),
        (lambda: LossConfig(at_norm="zscore"), "loss.at_norm"),
        (lambda: LossConfig(ce=0, fm=0, at=0), "every term weight is 0"),
        (lambda: LossConfig(fm=-1), "loss.fm"),
    ],
)
def test_bad_settings_name_the_setting(make, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        make().validate()


def test_unknown_yaml_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  studnet_mag: 2.5\n")
    with pytest.raises(ConfigError, match="studnet_mag"):
        ExperimentConfig.load(path)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        ExperimentConfig.load(tmp_path / "nope.yaml")


def test_loss_weights_lists_active_terms():
    assert LossConfig(ce=1, fm=0.1, at=10).weights() == {"ce": 1.0, "fm": 0.1, "at": 10.0}
    assert LossConfig(ce=0, fm=0, at=0, kd=1, fmap=1).weights() == {"kd": 1.0, "fmap": 1.0}
