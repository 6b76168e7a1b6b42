"""The shared tester, run over every registered variant, and a new variant picked up with no test change."""

from __future__ import annotations

import pytest

from tests.variant_tester import (
    check_forward_backward,
    check_seed_determinism,
    check_state_dict_round_trip,
    check_variant,
)
from variants import get_variant, list_variants, register_variant
from variants.registry import _REGISTRY
from variants.unet import UNetConfig

ALL = list_variants()


def test_registry_holds_at_least_15_variants_of_every_family() -> None:
    assert len(ALL) >= 15
    families = {get_variant(n).family for n in ALL}
    assert {"unet", "residual", "inception", "smp", "monai", "nnunet"} <= families
    assert any(get_variant(n).config.encoder.startswith("tu-") for n in ALL if get_variant(n).family == "smp")


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_and_output_shape(name: str) -> None:
    check_forward_backward(name)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_output(name: str) -> None:
    check_seed_determinism(name)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip(name: str) -> None:
    check_state_dict_round_trip(name)


@pytest.mark.parametrize("name", ALL)
def test_every_variant_has_a_description(name: str) -> None:
    assert get_variant(name).description, f"{name} needs a docstring: it is the list's description"


def test_a_newly_registered_variant_is_covered_with_no_test_change() -> None:
    """The recipe of docs/adding-a-variant.md: one short registration, then the tester covers it."""
    name = "unet-k7-test-only"
    try:

        @register_variant(name)
        def unet_k7() -> UNetConfig:
            """The paper's net with 7x7 same-padded convolutions."""
            return UNetConfig(kernel_size=7, padding="same")

        assert name in list_variants("unet-k7*")
        check_variant(name)
    finally:
        _REGISTRY.pop(name, None)


def test_registering_a_name_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_variant("unet-original")
        def again() -> UNetConfig:
            return UNetConfig()
