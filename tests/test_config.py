import pytest

from satlib.config import Config, ConfigError, choices, config_from_dict, load_config


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 1e-4\n  epochs: 3\nmodel:\n  name: sat_deit_tiny_patch16_224\n")
    config = load_config(path, ["train.epochs=5", "--model.kwargs.depth=6", "eval.thresholds=[0.1, 0.9]"])
    assert config.train.lr == 1e-4  # YAML 1.1 reads `1e-4` as a string; the float field takes it
    assert config.train.epochs == 5 and config.model.name == "sat_deit_tiny_patch16_224"
    assert config.model.kwargs == {"depth": 6} and config.eval.thresholds == [0.1, 0.9]
    assert config.train.batch_size == Config().train.batch_size


def test_unknown_key_names_the_file_and_key(tmp_path):
    path = tmp_path / "cub.yaml"
    path.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"cub.yaml: unknown key 'train.lrr'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"unknown key 'train.lrr'"):
        load_config(overrides=["train.lrr=0.1"])
    with pytest.raises(ConfigError, match=r"unknown section 'trian'"):
        path.write_text("trian:\n  lr: 0.1\n")
        load_config(path)


def test_wrong_types_are_rejected():
    with pytest.raises(ConfigError, match="'train.epochs': expected an integer"):
        load_config(overrides=["train.epochs=1.5"])
    with pytest.raises(ConfigError, match="'train.amp': expected true/false"):
        load_config(overrides=["train.amp=maybe"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(overrides=["train.lr"])


def test_packaged_recipes_load_by_name_and_path():
    cub = load_config("cub")
    assert (cub.train.area_thr, cub.train.lr, cub.train.batch_size, cub.train.epochs) == (0.25, 1e-4, 256, 30)
    assert cub.model.name == "sat_deit_small_patch16_224" and cub.model.num_classes == 200
    imagenet = load_config("configs/imagenet.yaml")
    assert (imagenet.train.area_thr, imagenet.train.lr, imagenet.model.num_classes) == (0.35, 1.5e-5, 1000)
    with pytest.raises(ConfigError, match=r"no_such_recipe \(packaged recipes: .*cub, .*imagenet, .*synthetic") as info:
        load_config("no_such_recipe")
    listed = str(info.value).split("packaged recipes: ")[1].rstrip(")").split(", ")
    assert listed == sorted(listed) and all(load_config(name) for name in listed)  # every one it names loads


def test_round_trip_through_a_checkpoint_dict():
    config = load_config("synthetic_cpu", ["model.kwargs.depth=5"])
    again = config_from_dict(config.to_dict())
    assert again == config


@pytest.mark.parametrize("dotted, bad", [("train.schedule", "linear"), ("data.dataset", "coco"),
                                         ("eval.protocol", "voc"), ("eval.protocol", "SAT"),
                                         ("model.attn_impl", "flash")])
def test_fixed_choice_fields_are_checked_when_the_file_is_read(tmp_path, dotted, bad):
    section, key = dotted.split(".")
    path = tmp_path / "run.yaml"
    path.write_text(f"{section}:\n  {key}: {bad}\n")
    with pytest.raises(ConfigError, match=rf"run.yaml: '{dotted}': expected one of .* got '{bad}'"):
        load_config(path)
    with pytest.raises(ConfigError, match=rf"override '{dotted}={bad}': '{dotted}': expected one of"):
        load_config(overrides=[f"{dotted}={bad}"])
    with pytest.raises(ConfigError, match=rf"checkpoint: '{dotted}': expected one of"):
        config_from_dict({section: {key: bad}})
    for good in choices(dotted):
        assert getattr(getattr(load_config(overrides=[f"{dotted}={good}"]), section), key) == good


def test_choices_are_the_values_the_code_accepts():
    from satlib.data.dataset import DATASETS
    from satlib.data.transforms import PROTOCOLS as DATA_PROTOCOLS
    from satlib.evaluation import PROTOCOLS
    from satlib.models.blocks import ATTN_IMPLS

    assert set(choices("data.dataset")) == set(DATASETS)
    assert set(choices("eval.protocol")) == set(PROTOCOLS) == set(DATA_PROTOCOLS)
    assert set(choices("model.attn_impl")) == set(ATTN_IMPLS)
    assert set(choices("train.schedule")) == {"cosine", "constant"}
    with pytest.raises(KeyError, match="train.lr"):
        choices("train.lr")



def test_data_protocol_moved_to_eval_protocol(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("data:\n  protocol: wsoleval\n")
    with pytest.raises(ConfigError, match=r"old.yaml: 'data.protocol' moved to 'eval.protocol'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"override 'data.protocol=sat': 'data.protocol' moved to 'eval.protocol'"):
        load_config(overrides=["data.protocol=sat"])
    assert not hasattr(Config().data, "protocol")


def test_a_checkpoints_data_protocol_is_read_as_eval_protocol():
    """Checkpoints saved before the move hold both keys (or only data.protocol): they still load."""
    stored = Config().to_dict()
    stored["data"]["protocol"] = "wsoleval"
    stored["eval"]["protocol"] = "wsoleval"
    assert config_from_dict(stored).eval.protocol == "wsoleval"
    del stored["eval"]["protocol"]
    assert config_from_dict(stored).eval.protocol == "wsoleval"  # the old key alone sets the new one
    stored["eval"]["protocol"] = "sat"
    assert config_from_dict(stored).eval.protocol == "sat"  # both: the new key wins
    assert stored["data"]["protocol"] == "wsoleval"  # the caller's mapping is left as it was
