"""Configuration: typed frozen dataclasses, YAML presets, dotted overrides, one validation.

from lmcollapse.config import ExperimentConfig, resolve, dump_yaml
cfg = resolve(ExperimentConfig, preset="demo", overrides=["paradigm.k=0.5"])
"""

from lmcollapse.config.core import (
    deep_merge,
    describe_fields,
    differences,
    dump_yaml,
    field_docs,
    from_plain,
    from_yaml,
    load_preset,
    parse_overrides,
    preset_description,
    preset_names,
    read_yaml_file,
    resolve,
    to_plain,
    validate,
)
from lmcollapse.config.curation import CurationConfig
from lmcollapse.config.experiment import (
    DataConfig,
    EvaluationConfig,
    ExperimentConfig,
    ModelConfig,
    ParadigmConfig,
    ProbeConfig,
    RunConfig,
    SamplingConfig,
    TrainingConfig,
)
from lmcollapse.config.stats import StatsConfig
from lmcollapse.config.theory import ErrorSpec, TheoryConfig, TheoryProbe
from lmcollapse.errors import ConfigError

__all__ = [
    "ConfigError",
    "CurationConfig",
    "DataConfig",
    "ErrorSpec",
    "EvaluationConfig",
    "ExperimentConfig",
    "ModelConfig",
    "ParadigmConfig",
    "ProbeConfig",
    "RunConfig",
    "SamplingConfig",
    "StatsConfig",
    "TheoryConfig",
    "TheoryProbe",
    "TrainingConfig",
    "deep_merge",
    "describe_fields",
    "differences",
    "dump_yaml",
    "field_docs",
    "from_plain",
    "from_yaml",
    "load_preset",
    "parse_overrides",
    "preset_description",
    "preset_names",
    "read_yaml_file",
    "resolve",
    "to_plain",
    "validate",
]
