"""Inception-v3 features come from a local weights file found where the message says; FID in them is
torch-fidelity's own computation. (The test writes a randomly initialised network in the standard file's format: the
real weights cannot be downloaded here, and agreement with the library does not depend on the weights' values.)"""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from nfkit_eval.features import InceptionV3, InceptionWeightsMissing, find_inception_weights
from nfkit_eval.sample_metrics import frechet_distance


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    import torch_fidelity.feature_extractor_inceptionv3 as module

    with mock.patch.object(module, "load_state_dict_from_url", return_value={}), \
            mock.patch.object(module.FeatureExtractorInceptionV3, "load_state_dict"):
        torch.manual_seed(0)
        network = module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    hub = tmp_path_factory.mktemp("torch-home") / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    path = hub / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(network.state_dict(), path)
    return path


def test_the_weights_are_found_in_the_hub_cache_or_named(weights_file, monkeypatch, tmp_path):
    monkeypatch.delenv("NFKIT_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(weights_file.parents[2]))
    assert find_inception_weights() == weights_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(InceptionWeightsMissing, match=f"put the file in {tmp_path}/hub/checkpoints"):
        find_inception_weights()
    monkeypatch.setenv("NFKIT_INCEPTION_WEIGHTS", str(weights_file))
    assert find_inception_weights() == weights_file
    with pytest.raises(InceptionWeightsMissing, match="no Inception-v3 weights at /nowhere.pth"):
        find_inception_weights("/nowhere.pth")


def test_fid_in_inception_features_is_the_library_computation(weights_file):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    extractor = InceptionV3(weights_file, num_bins=17, batch_size=4)
    generator = torch.Generator().manual_seed(0)
    real = torch.randint(0, 17, (4, 1, 8, 8), generator=generator).float()
    fake = torch.randint(0, 12, (4, 1, 8, 8), generator=generator).float()
    ours_real, ours_fake = extractor(real), extractor(fake)
    assert ours_real.shape == (4, 2048) and ours_real.dtype == torch.float64

    library = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                          feature_extractor_weights_path=str(weights_file))
    images = (torch.round(real / 16 * 255)).to(torch.uint8).expand(-1, 3, -1, -1)
    torch.testing.assert_close(ours_real, library(images)[0].double(), rtol=0, atol=0)
    expected = fid_statistics_to_metric(fid_features_to_statistics(ours_fake), fid_features_to_statistics(ours_real),
                                        False)["frechet_inception_distance"]
    assert abs(frechet_distance(ours_fake, ours_real) - expected) < 1e-6
    assert extractor.protocol()["weights"] == "pt_inception-2015-12-05-6726825d.pth"


def test_a_file_that_is_not_inception_weights_is_refused(tmp_path):
    path = tmp_path / "pt_inception-2015-12-05-broken.pth"
    torch.save({"something": torch.zeros(1)}, path)
    with pytest.raises(InceptionWeightsMissing, match="does not hold the FID Inception-v3 weights"):
        InceptionV3(path)
