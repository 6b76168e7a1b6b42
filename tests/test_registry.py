"""The registry's look-ups, filters and error messages."""

from __future__ import annotations

import pytest

from variants import (
    ConfigError,
    InvalidInputSize,
    UnknownVariantError,
    create_model,
    get_variant,
    list_variants,
    resolve_config,
)


def test_wildcard_filter() -> None:
    unets = list_variants("unet-*")
    assert "unet-original" in unets and all(n.startswith("unet-") for n in unets)
    assert list_variants("res*") == sorted(n for n in list_variants() if n.startswith("res"))
    assert list_variants("no-such-*") == []


def test_unknown_variant_suggests_nearest_name() -> None:
    with pytest.raises(UnknownVariantError) as err:
        create_model("unet-orignal")
    assert "'unet-original'" in str(err.value)


def test_unknown_override_names_the_key_and_the_valid_keys() -> None:
    with pytest.raises(ConfigError) as err:
        create_model("unet-original", activaton="gelu")
    message = str(err.value)
    assert "'activaton'" in message and "Did you mean 'activation'" in message
    for key in ("activation", "base_width", "depth", "padding", "norm", "upsample", "dropout"):
        assert key in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("activation", "swish", "one of 'relu', 'leaky_relu', 'elu', 'gelu', 'silu', 'mish', 'prelu'"),
        ("base_width", "64", "expected int"),
        ("base_width", 6.5, "expected int"),
        ("padding", "reflect", "one of 'valid', 'same'"),
        ("norm", True, "one of 'none', 'batch', 'group', 'instance'"),
    ],
)
def test_ill_typed_override_names_key_and_allowed_values(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve_config("unet-original", **{key: value})
    assert key in str(err.value) and expected in str(err.value)


def test_override_values_are_checked_for_sense() -> None:
    with pytest.raises(ConfigError, match="kernel_size must be odd"):
        resolve_config("unet-original", kernel_size=4)


def test_overrides_apply_and_int_widens_to_float() -> None:
    config = resolve_config("unet-original", base_width=8, dropout=0, activation="gelu")
    assert (config.base_width, config.dropout, config.activation) == (8, 0.0, "gelu")
    assert get_variant("unet-original").config.base_width == 64, "the registered config must not change"


def test_invalid_input_size_names_nearest_valid_sizes() -> None:
    config = get_variant("unet-original").config
    with pytest.raises(InvalidInputSize) as err:
        config.output_size(500)
    assert err.value.nearest == (492, 508)
    assert "492 or 508" in str(err.value)
    assert config.output_size(492) == 308 and config.output_size(508) == 324


def test_output_and_input_size_are_inverse() -> None:
    config = get_variant("unet-original").config
    for input_size in (188, 204, 572, 1052):
        assert config.input_size(config.output_size(input_size)) == input_size
    with pytest.raises(InvalidInputSize, match="388 or 404"):
        config.input_size(390)


def test_same_padding_needs_a_multiple_of_two_to_the_depth() -> None:
    config = get_variant("unet-same").config
    assert config.output_size(512) == 512
    with pytest.raises(InvalidInputSize, match="496 or 512"):
        config.output_size(500)


def test_pretrained_smp_weights_are_refused_before_anything_downloads() -> None:
    with pytest.raises(ConfigError, match="encoder_weights='imagenet'.*nothing downloads") as refused:
        create_model("smp-resnet18-unet", encoder_weights="imagenet")
    assert refused.value.key == "encoder_weights"
    assert get_variant("smp-resnet18-unet").config.encoder_weights is None


def test_unknown_smp_encoder_suggests_names() -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        create_model("smp-resnet18-unet", encoder="resnet181")
    with pytest.raises(ConfigError, match="tu-mobilenetv3_small_100"):
        create_model("smp-tu-mobilenetv3-unet", encoder="tu-mobilenetv3_smal_100")
