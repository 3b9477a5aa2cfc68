"""R-Net backbones: the small ones build, share the head layout, and expose pooled features."""

from __future__ import annotations

import pytest
import torch

from recon.rnet import ARCH_CHOICES, BACKBONE_CHANNELS, ReconNet, load_checkpoint


def test_cli_choices_match_the_backbones():
    import argparse
    from faceset.commands import reconstruct, train
    for module in (train, reconstruct):
        parser = argparse.ArgumentParser()
        module.register(parser.add_subparsers())
        sub = next(iter(parser._subparsers._group_actions[0].choices.values()))
        arch = next(a for a in sub._actions if "--arch" in a.option_strings)
        assert tuple(arch.choices) == ARCH_CHOICES


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_small_backbone_features_and_coefficients(arch):
    torch.manual_seed(0)
    net = ReconNet(arch).eval()
    for layer in net.final_layers:  # zero heads would hide a mismatch
        torch.nn.init.normal_(layer.weight, std=0.01)
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        features, coeffs = net.features_and_coefficients(images)
        assert features.shape == (2, BACKBONE_CHANNELS[arch])
        torch.testing.assert_close(features, net.features(images))
        torch.testing.assert_close(coeffs, net(images))
    assert coeffs.shape == (2, 257) and torch.isfinite(coeffs).all()


def test_small_checkpoint_round_trip_is_strict(tmp_path):
    net = ReconNet("mobilenet_v3_small")
    torch.save({"net_recon": net.state_dict()}, tmp_path / "epoch_1.pth")
    loaded = load_checkpoint(tmp_path / "epoch_1.pth", arch="mobilenet_v3_small")
    for name, value in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    with pytest.raises(ValueError, match="another --arch"):
        load_checkpoint(tmp_path / "epoch_1.pth", arch="resnet18")


def test_resnet50_layout_is_the_originals():
    names = set(ReconNet("resnet50").state_dict())
    assert "backbone.layer4.2.conv3.weight" in names and "final_layers.6.bias" in names
    assert not any(n.startswith(("backbone.fc", "backbone.features")) for n in names)
