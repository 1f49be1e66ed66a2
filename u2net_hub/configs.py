"""The paper's Table 1 as data.

Both published configurations share one U-structure: six encoder stages and
five decoder stages. Each stage is a block described by its height, its
channel widths, whether it is the dilated ("F") kind, and which block it is:
the paper's RSU (the default) or one of the blocks it is compared with
(see :mod:`u2net_hub.layers`). A configuration is just that table plus the
pre-processing its weights expect, so a custom configuration is a different
table, never a different class. The package version lives here too: the
lowest module, which imports nothing heavy (`u2net --version` reads it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping, Sequence

__version__ = "0.1.0"

#: The order of the stages in every table; the names are the state-dict prefixes.
ENCODER_STAGES = ("stage1", "stage2", "stage3", "stage4", "stage5", "stage6")
DECODER_STAGES = ("stage5d", "stage4d", "stage3d", "stage2d", "stage1d")
STAGE_NAMES = ENCODER_STAGES + DECODER_STAGES

#: The blocks a stage may name: the paper's RSU and the blocks of its comparison (Fig. 2-3 and the ablation).
BLOCK_NAMES = ("rsu", "plain", "residual", "dense", "inception", "ppm")
DEFAULT_BLOCK = "rsu"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class StageSpec:
    """One row of Table 1: RSU-`height` (or RSU-`height`F when `dilated`), or another `block` in its place."""

    height: int
    in_channels: int
    mid_channels: int
    out_channels: int
    dilated: bool = False
    block: str = DEFAULT_BLOCK

    def to_dict(self) -> dict[str, Any]:
        """The row as config.json writes it (height, channels, dilated)."""
        return asdict(self)

    def sizes(self) -> tuple[int, int, int, int, bool]:
        """The row without its block: what the published variants are recognised by."""
        return (self.height, self.in_channels, self.mid_channels, self.out_channels, self.dilated)


@dataclass(frozen=True)
class Preprocessing:
    """What the weights expect at test time (the original `u2net_test.py`)."""

    input_size: int = 320
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    #: The original divides each image by its own maximum, not by 255.
    divide_by_max: bool = True
    #: Average the fused and side logits over the image and its mirror image (two passes per image).
    #: Off for the paper's weights (their outputs stay the original's); on for the bundled demo model,
    #: where it measured better on every validation set (docs/demo-model.md, 2026-12-05).
    flip_average: bool = False


def _table(rows: Sequence[tuple[int, int, int, int, bool]]) -> dict[str, StageSpec]:
    return {name: StageSpec(*row) for name, row in zip(STAGE_NAMES, rows, strict=True)}


#        height  in   mid  out  dilated
VARIANTS: dict[str, dict[str, StageSpec]] = {
    "full": _table([
        (7,    3,   32,   64, False),  # stage1
        (6,   64,   32,  128, False),  # stage2
        (5,  128,   64,  256, False),  # stage3
        (4,  256,  128,  512, False),  # stage4
        (4,  512,  256,  512, True),   # stage5
        (4,  512,  256,  512, True),   # stage6
        (4, 1024,  256,  512, True),   # stage5d
        (4, 1024,  128,  256, False),  # stage4d
        (5,  512,   64,  128, False),  # stage3d
        (6,  256,   32,   64, False),  # stage2d
        (7,  128,   16,   64, False),  # stage1d
    ]),
    "tiny": _table([
        (7,    3,   16,   64, False),
        (6,   64,   16,   64, False),
        (5,   64,   16,   64, False),
        (4,   64,   16,   64, False),
        (4,   64,   16,   64, True),
        (4,   64,   16,   64, True),
        (4,  128,   16,   64, True),
        (4,  128,   16,   64, False),
        (5,  128,   16,   64, False),
        (6,  128,   16,   64, False),
        (7,  128,   16,   64, False),
    ]),
}

#: Names the original repository and rembg use for the same weights.
VARIANT_ALIASES = {"u2net": "full", "u2netp": "tiny", "full": "full", "tiny": "tiny"}

#: Parameter counts of the released checkpoints, for checks and model cards.
PARAMETER_COUNTS = {"full": 44_009_869, "tiny": 1_131_181}


class ConfigError(ValueError):
    """A configuration (or config.json) that cannot describe a U²-Net."""


def resolve_stages(
    variant: str | None, stages: Mapping[str, Any] | None, in_channels: int = 3, block: str | None = None
) -> dict[str, StageSpec]:
    """Expand a variant name or parse a custom stage table, and check it is wired consistently.

    Args:
        variant: 'full' or 'tiny' (or an alias), used when `stages` is None.
        stages: a custom table, stage name -> StageSpec or a dict of its fields.
        in_channels: the image channels stage1 is fed.
        block: the block of every stage that does not name its own (default 'rsu').

    Returns:
        The complete table, every stage with its block.
    """
    if block is not None and block not in BLOCK_NAMES:
        raise ConfigError(f"unknown block {block!r}; expected one of {list(BLOCK_NAMES)}")
    if stages is None:
        if variant is None:
            raise ConfigError("give either a variant ('full' or 'tiny') or a stage table")
        key = VARIANT_ALIASES.get(str(variant).lower())
        if key is None:
            raise ConfigError(
                f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)} "
                "(or a custom 'stages' table)"
            )
        table = {name: replace(spec, block=block or DEFAULT_BLOCK) for name, spec in VARIANTS[key].items()}
    else:
        if not isinstance(stages, Mapping):
            raise ConfigError(f"'stages' must be a mapping of stage name to spec, got {type(stages).__name__}")
        missing = [n for n in STAGE_NAMES if n not in stages]
        extra = [n for n in stages if n not in STAGE_NAMES]
        if missing or extra:
            raise ConfigError(f"stage table must name exactly {list(STAGE_NAMES)}; missing {missing}, unexpected {extra}")
        table = {}
        for name in STAGE_NAMES:
            spec = stages[name]
            if isinstance(spec, StageSpec):
                table[name] = spec
                continue
            if not isinstance(spec, Mapping):
                raise ConfigError(f"stage {name!r} must be a mapping of its fields, got {type(spec).__name__}")
            fields = dict(spec)
            if fields.get("block") is None:
                fields["block"] = block or DEFAULT_BLOCK
            try:
                table[name] = StageSpec(**fields)
            except TypeError as error:
                raise ConfigError(f"stage {name!r}: {error}; expected keys {list(StageSpec.__dataclass_fields__)}") from None
    _check_wiring(table, in_channels)
    return table


def _check_wiring(table: Mapping[str, StageSpec], in_channels: int) -> None:
    for name, spec in table.items():
        for field in ("height", "in_channels", "mid_channels", "out_channels"):
            value = getattr(spec, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"stage {name!r}: {field} must be a positive integer, got {value!r}")
        if spec.height < 2:
            raise ConfigError(f"stage {name!r}: a block needs height >= 2, got {spec.height}")
        if spec.block not in BLOCK_NAMES:
            raise ConfigError(f"stage {name!r}: unknown block {spec.block!r}; expected one of {list(BLOCK_NAMES)}")
    expected = {"stage1": in_channels}
    for deeper, shallower in zip(ENCODER_STAGES[1:], ENCODER_STAGES[:-1]):
        expected[deeper] = table[shallower].out_channels
    expected["stage5d"] = table["stage6"].out_channels + table["stage5"].out_channels
    for decoder, deeper, skip in (
        ("stage4d", "stage5d", "stage4"),
        ("stage3d", "stage4d", "stage3"),
        ("stage2d", "stage3d", "stage2"),
        ("stage1d", "stage2d", "stage1"),
    ):
        expected[decoder] = table[deeper].out_channels + table[skip].out_channels
    for name, channels in expected.items():
        if table[name].in_channels != channels:
            raise ConfigError(
                f"stage {name!r} takes {table[name].in_channels} input channels but is fed {channels}"
            )


def variant_of(stages: Mapping[str, StageSpec]) -> str:
    """The published variant whose sizes a table has (whatever its blocks), or 'custom'."""
    sizes = {name: spec.sizes() for name, spec in stages.items()}
    for name, table in VARIANTS.items():
        if sizes == {stage: spec.sizes() for stage, spec in table.items()}:
            return name
    return "custom"


def block_of(stages: Mapping[str, StageSpec]) -> str:
    """The block every stage uses, or 'mixed'."""
    blocks = {spec.block for spec in stages.values()}
    return blocks.pop() if len(blocks) == 1 else "mixed"
