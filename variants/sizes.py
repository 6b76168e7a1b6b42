"""Input/output size arithmetic of encoder-decoder networks.

Unpadded ("valid") convolutions shrink every feature map and 2x2 pooling needs even sides, so a
valid-conv U-Net accepts only some input sizes (572 -> 388 for the paper's net, not 500). These
helpers map input <-> output size and name the nearest accepted sizes when a size is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from variants.errors import UserError


class InvalidInputSize(UserError):
    """An input side length the network cannot take; ``nearest`` holds accepted neighbours."""

    def __init__(self, message: str, nearest: tuple[int, ...]):
        super().__init__(message)
        self.nearest = nearest


def encoder_decoder_output(input_size: int, depth: int, shrink: int) -> int | None:
    """Output side of a U-Net whose every block loses ``shrink`` pixels, or None if refused.

    Each of ``depth`` encoder levels runs a block then a 2x2 pool (needs an even side); the
    bottleneck runs a block; each decoder level doubles the side and runs a block.
    """
    side = input_size
    for _ in range(depth):
        side -= shrink
        if side <= 0 or side % 2:
            return None
        side //= 2
    side -= shrink
    if side <= 0:
        return None
    for _ in range(depth):
        side = side * 2 - shrink
    return side if side > 0 else None


def encoder_decoder_input(output_size: int, depth: int, shrink: int) -> int | None:
    """The input side that yields ``output_size`` (inverse of ``encoder_decoder_output``), or None."""
    side = output_size
    for _ in range(depth):
        side += shrink
        if side % 2:
            return None
        side //= 2
    side += shrink
    for _ in range(depth):
        side = side * 2 + shrink
    return side if encoder_decoder_output(side, depth, shrink) == output_size else None


def nearest_accepted(near: int, accepts: Callable[[int], bool], span: int = 4096) -> tuple[int, ...]:
    """The accepted sizes just below and just above ``near`` (one of them may be missing)."""
    below = next((s for s in range(near - 1, 0, -1) if accepts(s)), None)
    above = next((s for s in range(near + 1, near + span) if accepts(s)), None)
    return tuple(s for s in (below, above) if s is not None)


def closest_accepted(near: int, accepts: Callable[[int], bool]) -> int:
    """``near`` itself if accepted, else the closest accepted size (ties go up)."""
    if accepts(near):
        return near
    options = nearest_accepted(near, accepts)
    return min(options, key=lambda s: (abs(s - near), -s))


def refuse(owner: str, size: int, accepts: Callable[[int], bool], why: str, what: str = "input") -> InvalidInputSize:
    """The error for a refused ``what`` ("input" or "output") size, naming the nearest accepted ones."""
    nearest = nearest_accepted(size, accepts)
    listed = " or ".join(str(s) for s in nearest)
    verb = "cannot take" if what == "input" else "cannot produce"
    return InvalidInputSize(
        f"{owner} {verb} a {size}x{size} {what} ({why}); nearest valid {what} sizes: {listed}", nearest
    )


class SameSizeNet:
    """Size rules of a network whose output side equals its input side (zero-padded convolutions),
    for the sides ``_accepts`` allows; a config mixes it in and says who it is and why it refuses."""

    def _accepts(self, size: int) -> bool:
        raise NotImplementedError

    def _size_rule(self) -> tuple[str, str]:
        """(who refuses, why) for the refusal message."""
        raise NotImplementedError

    def output_size(self, input_size: int) -> int:
        if not self._accepts(input_size):
            owner, why = self._size_rule()
            raise refuse(owner, input_size, self._accepts, why)
        return input_size

    def valid_input_size(self, near: int) -> int:
        return closest_accepted(near, self._accepts)

    def input_size(self, output_size: int) -> int:
        return self.output_size(output_size)  # same size in and out
