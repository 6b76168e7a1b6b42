"""The library families (smp, MONAI, nnU-Net): size rules checked against the real networks,
the nnU-Net plan against the planner's arithmetic, and every variant's source and citation."""

from __future__ import annotations

import re

import pytest
import torch

from variants import InvalidInputSize, get_variant, list_variants
from variants.registry import FAMILY_SOURCES, count_parameters

ALL = list_variants()
LIBRARY = [n for n in ALL if get_variant(n).family in ("monai", "nnunet")]


def _accepts(config, size: int) -> bool:
    try:
        config.output_size(size)
    except InvalidInputSize:
        return False
    return True


@pytest.mark.parametrize("name", ALL)
def test_a_refused_size_names_the_nearest_accepted_sizes(name: str) -> None:
    config = get_variant(name).config
    smallest = config.valid_input_size(1)  # a net taking every side from some minimum up refuses below it
    refused = next((s for s in range(500, 2000) if not _accepts(config, s)), smallest - 1)
    below = next((s for s in range(refused - 1, 0, -1) if _accepts(config, s)), None)
    above = next((s for s in range(refused + 1, refused + 4096) if _accepts(config, s)), None)
    expected = tuple(s for s in (below, above) if s is not None)
    with pytest.raises(InvalidInputSize) as err:
        config.output_size(refused)
    assert err.value.nearest == expected
    assert " or ".join(map(str, expected)) in str(err.value)
    assert config.valid_input_size(refused) in expected


@pytest.mark.parametrize(
    ("name", "size", "nearest"),
    [
        ("monai-unetr", 500, "512"),  # exactly its img_size
        ("monai-swinunetr", 500, "480 or 512"),  # multiples of 32
        ("monai-basicunet", 20, "32"),  # any side from 32 up
        ("monai-dynunet", 300, "256 or 384"),  # multiples of 128 (seven stride-2 levels)
        ("nnunet-resenc-2d", 128, "256"),  # a 1x1 bottleneck is refused
        ("smp-resnet18-manet", 500, "480 or 512"),
        ("smp-tu-convnext-atto-unet", 570, "544 or 576"),
    ],
)
def test_size_errors_of_each_library_rule(name: str, size: int, nearest: str) -> None:
    with pytest.raises(InvalidInputSize, match=f"nearest valid input sizes: {nearest}$"):
        get_variant(name).config.output_size(size)


def _forward_side(model: torch.nn.Module, channels: int, size: int) -> int | None:
    """The output side of a real forward pass on the meta device, None if the network fails."""
    try:
        with torch.device("meta"), torch.no_grad():
            y = model(torch.empty(2, channels, size, size))
    except (RuntimeError, ValueError, AssertionError):
        return None
    return y.shape[-1] if y.shape[-2] == y.shape[-1] else None


@pytest.mark.parametrize("name", LIBRARY)
def test_size_rule_matches_what_the_network_does(name: str) -> None:
    """At the smallest accepted side and its neighbours, accepted sides run to the stated output
    size and refused ones do not run to a same-size output."""
    config = get_variant(name).config.tiny()
    with torch.device("meta"):
        model = config.build().eval()
    smallest = config.valid_input_size(1)
    for size in sorted({smallest // 2, smallest - 1, smallest, smallest + 1, 2 * smallest}):
        real = _forward_side(model, config.in_channels, size)
        if _accepts(config, size):
            assert real == config.output_size(size), (name, size, real)
        else:
            assert real != size, f"{name}: refuses {size}, but the network maps it to {real}"


def test_nnunet_variants_are_the_planners_2d_networks_for_512() -> None:
    """Pool while the side stays >= 2 * 4 (nnU-Net's minimum feature map edge); 32 * 2**i features
    capped at 512 in 2D; parameter counts of the networks built by dynamic-network-architectures
    with the plan's arguments (computed once with the library directly)."""
    side, pools = 512, 0
    while side >= 8:
        side, pools = side // 2, pools + 1
    stages = pools + 1
    for name, params in (("nnunet-plain-2d", 46_324_558), ("nnunet-resenc-2d", 140_017_038)):
        config = get_variant(name).config
        assert config.strides == (1,) + (2,) * pools
        assert config.features_per_stage == tuple(min(512, 32 * 2**i) for i in range(stages))
        with torch.device("meta"):
            assert count_parameters(config.build()) == params, name
        assert config.output_size(512) == 512
    resenc = get_variant("nnunet-resenc-2d").config
    assert resenc.blocks_per_stage == (1, 3, 4, 6, 6, 6, 6, 6) and resenc.decoder_convs_per_stage == (1,) * 7


@pytest.mark.parametrize("name", ALL)
def test_every_variant_names_its_source_library_and_paper(name: str) -> None:
    spec = get_variant(name)
    assert spec.source == FAMILY_SOURCES[spec.family][0]
    assert re.search(r"(et al\.|&|Iakubovskii) \d{4}", spec.citation), spec.citation


def test_library_variants_cite_their_architecture() -> None:
    cited = {n: get_variant(n).citation for n in ALL}
    assert cited["unet-original"] == "Ronneberger et al. 2015"
    assert cited["resunet"].startswith("He et al. 2016")
    assert cited["smp-resnet18-manet"].startswith("Fan et al. 2020")
    assert cited["monai-attentionunet"] == "Oktay et al. 2018"
    assert cited["nnunet-resenc-2d"].startswith("Isensee et al. 2024")
    assert get_variant("monai-swinunetr").source == "monai"
