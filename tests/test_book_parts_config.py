"""configs/book_parts.yaml: the book's part-domination recipe is a valid "parts" dataset and model."""

from satlib.config import load_config
from satlib.data.synthetic import SynthConfig


def test_book_parts_recipe_describes_a_parts_dataset_its_model_fits():
    config = load_config("book_parts")
    synth = SynthConfig(**config.data.synth, size=config.data.img_size).resolved()  # raises on a bad knob
    assert synth.variant == "parts"
    assert config.model.num_classes == synth.num_classes
    assert config.data.img_size == config.data.resize_size  # boxes and part boxes stay in image pixels
    assert config.train.time_budget == 0  # a fixed number of steps, the same run on any machine
