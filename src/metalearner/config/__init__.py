"""Settings as typed dataclasses: YAML in and out, ``--set`` overrides, presets and plan files,
the bounds of sizes and counts.

This layer knows no strategy and no dataset: it is the machinery every command's config uses.
"""

from __future__ import annotations

from metalearner.config.bounds import Range, bound_of, check_bounds, check_value
from metalearner.config.plans import (
    check_same_plan,
    interrupted,
    keep_plan,
    read_settings,
    same_plan,
)
from metalearner.config.presets import Preset, get_preset, list_presets, presets_dir
from metalearner.config.settings import (
    SEED_MAX,
    apply_overrides,
    assign,
    check_seed,
    from_dict,
    whole_numbers,
)
from metalearner.config.types import describe_type, match_type
from metalearner.config.yaml_files import (
    dump_yaml,
    parse_setting,
    parse_yaml,
    read_saved_yaml,
    read_yaml,
)

__all__ = [
    "SEED_MAX",
    "Preset",
    "Range",
    "apply_overrides",
    "assign",
    "bound_of",
    "check_bounds",
    "check_same_plan",
    "check_seed",
    "check_value",
    "describe_type",
    "dump_yaml",
    "from_dict",
    "get_preset",
    "interrupted",
    "keep_plan",
    "list_presets",
    "match_type",
    "parse_setting",
    "parse_yaml",
    "presets_dir",
    "read_saved_yaml",
    "read_settings",
    "read_yaml",
    "same_plan",
    "whole_numbers",
]
