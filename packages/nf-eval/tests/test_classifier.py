"""The digits classifier behind FD-digits: trained once with a fixed seed, accurate on the held-out split, cached."""

from __future__ import annotations

import torch

from nfkit_core.data import Preprocessing
from nfkit_core.data.digits import DigitsConfig
from nfkit_eval import EvalData
from nfkit_eval.classifier import ClassifierExtractor, load_or_train_classifier

HELD_OUT_ACCURACY = 0.95


def digits(registry) -> EvalData:
    config = DigitsConfig()
    held_out = registry.load_dataset("digits", config, "test")
    return EvalData("digits", config, "test", held_out, registry.load_dataset("digits", config, "train"),
                    Preprocessing("dequantize", 17), held_out.info)


def test_the_digits_classifier_is_accurate_cached_and_reproducible(tmp_path, registry):
    data = digits(registry)
    model, info = load_or_train_classifier(data, tmp_path, seed=0)
    assert info["trained_now"] and info["held_out_accuracy"] >= HELD_OUT_ACCURACY, info
    (cached,) = tmp_path.glob("classifier-digits-*.pt")
    again, info_again = load_or_train_classifier(data, tmp_path, seed=0)
    assert not info_again["trained_now"] and info_again["held_out_accuracy"] == info["held_out_accuracy"]
    x = data.held_out.data[:16].float()
    torch.testing.assert_close(ClassifierExtractor(again, info_again, 17)(x), ClassifierExtractor(model, info, 17)(x))
    retrained, info_retrained = load_or_train_classifier(data, None, seed=0)  # no cache: trained again, identically
    assert info_retrained["held_out_accuracy"] == info["held_out_accuracy"]
    torch.testing.assert_close(ClassifierExtractor(retrained, info_retrained, 17)(x),
                               ClassifierExtractor(model, info, 17)(x))
    assert cached.exists()
