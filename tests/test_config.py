"""The configuration system: presets, YAML round trips, overrides, and validation that reports
every problem at once, each naming its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lmcollapse.config import (
    ConfigError,
    ExperimentConfig,
    ParadigmConfig,
    TheoryConfig,
    describe_fields,
    dump_yaml,
    field_docs,
    from_plain,
    from_yaml,
    parse_overrides,
    preset_description,
    preset_names,
    resolve,
    validate,
)


def test_defaults_are_the_papers_hyperparameters() -> None:
    cfg = ExperimentConfig()
    validate(cfg)
    t = cfg.training
    assert (t.learning_rate, t.betas, t.weight_decay, t.batch_size, t.context_length) == (
        5e-4,
        (0.9, 0.95),
        0.1,
        320,
        512,
    )
    s = cfg.sampling
    assert resolve(ExperimentConfig, preset="paper-1m").sampling.num_sequences == 1_000_000
    assert (s.num_sequences, s.length, s.temperature, s.top_k, s.top_p) == (
        None,  # as many as D0 has stories
        600,
        1.0,
        0,
        1.0,
    )
    assert cfg.evaluation.probes[0].context == " there"
    assert cfg.evaluation.probes[0].next == (" was", " were")


def test_presets_ship_load_validate_and_describe_themselves() -> None:
    names = preset_names()
    assert {"demo", "paper-1m", "paper-33m"} <= set(names)
    for name in names:
        cfg = resolve(ExperimentConfig, preset=name)
        assert preset_description(name)
        assert from_yaml(ExperimentConfig, dump_yaml(cfg)) == cfg
    m33 = resolve(ExperimentConfig, preset="paper-33m").model
    assert (m33.num_layers, m33.hidden_size, m33.num_heads, m33.window_size) == (4, 768, 16, 256)
    m1 = resolve(ExperimentConfig, preset="paper-1m").model
    assert (m1.num_layers, m1.hidden_size, m1.num_heads) == (8, 64, 16)


def test_yaml_round_trip_keeps_every_value_and_type() -> None:
    cfg = resolve(
        ExperimentConfig,
        preset="demo",
        overrides=[
            "paradigm.name=accumulate-subsample",
            "paradigm.k=0.25",
            "model.vocab_size=300",
            "evaluation.probes=[{context: ' once', next: [' upon']}, {context: ' there'}]",
        ],
    )
    text = dump_yaml(cfg)
    back = from_yaml(ExperimentConfig, text)
    assert back == cfg
    assert back.evaluation.probes[0].next == (" upon",)
    assert back.evaluation.probes[1].next == (" was", " were")
    assert isinstance(back.training.betas, tuple)
    theory_cfg = from_plain(TheoryConfig, {"k": [0.5, 2], "errors": {"kind": "harmonic"}})
    assert from_yaml(TheoryConfig, dump_yaml(theory_cfg)) == theory_cfg


def test_precedence_defaults_preset_file_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("paradigm:\n  k: 2.0\nrun:\n  seed: 5\n")
    cfg = resolve(ExperimentConfig, preset="demo", config=f, overrides=["run.seed=7"])
    assert cfg.paradigm.k == 2.0  # file over preset/defaults
    assert cfg.run.seed == 7  # --set over file
    assert cfg.run.generations == 5  # preset over defaults
    assert cfg.training.weight_decay == 0.1  # defaults fill the rest


def test_a_partial_section_keeps_the_parents_defaults() -> None:
    cfg = from_plain(ExperimentConfig, {"data": {"dedupe": True}})
    assert cfg.data.dedupe is True
    assert cfg.data.num_stories == ExperimentConfig().data.num_stories == 10_000


def test_overrides_parse_yaml_values() -> None:
    assert parse_overrides(["a.b=0.5", "a.c=[1, 2]", "d=null", "e=true", "f=' x'"]) == {
        "a": {"b": 0.5, "c": [1, 2]},
        "d": None,
        "e": True,
        "f": " x",
    }
    for bad in ["paradigm.k", "=3", "a..b=1", "a.b=[1,"]:
        with pytest.raises(ConfigError, match="--set"):
            parse_overrides([bad])


def test_numbers_as_people_write_them() -> None:
    # PyYAML reads 5e-4 as a string; it is still a number here. 1e6 is an integer.
    cfg = from_plain(
        ExperimentConfig,
        {"training": {"learning_rate": "5e-4"}, "sampling": {"num_sequences": "1e6"}},
    )
    assert cfg.training.learning_rate == 5e-4
    assert cfg.sampling.num_sequences == 1_000_000 and isinstance(cfg.sampling.num_sequences, int)


def test_validation_lists_every_problem_at_once_naming_each_key() -> None:
    with pytest.raises(ConfigError) as info:
        from_plain(
            ExperimentConfig,
            {
                "paradigm": {"name": "recycle", "k": -1, "kk": 3},
                "training": {"batch_size": 320, "micro_batch_size": 33, "learning_rate": "fast"},
                "run": {"generations": 0},
                "model": {"hidden_size": 65},
                "sampling": {"top_p": 0},
                "colour": "blue",
            },
        )
    problems = info.value.problems
    text = "\n".join(problems)
    for expected in [
        "paradigm.name: expected one of 'replace', 'accumulate-subsample', 'accumulate', 'mix', "
        "got 'recycle'",
        "paradigm.k: must be > 0 and finite (the accumulation rate), got -1",
        "paradigm.kk: unknown key (did you mean paradigm.k?)",
        "training.batch_size: 320 is not a multiple of micro_batch_size=33",
        "training.learning_rate: expected a number, got 'fast'",
        "run.generations: must be >= 1, got 0",
        "model.hidden_size: 65 is not divisible by num_heads=16",
        "sampling.top_p: must be in (0, 1], got 0",
        "colour: unknown key",
    ]:
        assert expected in text
    assert len(problems) == 9
    assert "\n" not in str(info.value)  # one line for the CLI


def test_cross_field_rules() -> None:
    with pytest.raises(
        ConfigError,
        match=r"training.context_length: 1024 exceeds model.max_position_embeddings=512",
    ):
        from_plain(
            ExperimentConfig,
            {
                "model": {"max_position_embeddings": 512},
                "training": {"context_length": 1024},
                "evaluation": {"context_length": 256},
            },
        )


def test_theory_config_checks() -> None:
    with pytest.raises(ConfigError) as info:
        from_plain(
            TheoryConfig,
            {
                "k": [1, 0],
                "generations": 0,
                "paradigms": ["replace", "recycle"],
                "probe": {"tokens": ["a", "b"], "counts": [1, -2, 3], "targets": ["c"]},
                "errors": {"kind": "gaussian", "scale": -1},
            },
        )
    text = " | ".join(info.value.problems)
    for expected in [
        "k[1]: must be > 0",
        "generations: must be >= 1",
        "paradigms[1]: expected one of",
        "probe.counts: 3 counts for 2 tokens; one per token",
        "probe.counts[1]: must be a finite number >= 0",
        "probe.targets: 'c' is not one of the tokens",
        "errors.kind: expected one of",
        "errors.scale: must be a finite number >= 0",
    ]:
        assert expected in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("paradigm: [1, 2", "invalid YAML at line"),
        ("- just\n- a list\n", "expected a mapping of sections at the top level, got list"),
        ("paradigm: 3\n", "paradigm: expected a mapping, got 3"),
        ("run:\n  seed: abc\n", "run.seed: expected an integer, got 'abc'"),
    ],
)
def test_bad_config_files_name_the_file_and_the_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError, match=r"bad\.yaml") as info:
        resolve(ExperimentConfig, config=f)
    assert message in str(info.value)


def test_unreadable_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        resolve(ExperimentConfig, config=tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        resolve(ExperimentConfig, config=tmp_path)
    f = tmp_path / "binary.yaml"
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="cannot read config file"):
        resolve(ExperimentConfig, config=f)
    with pytest.raises(ConfigError, match="unknown preset 'nope': choose one of"):
        resolve(ExperimentConfig, preset="nope")


def test_every_field_is_documented() -> None:
    for cls in (ExperimentConfig, TheoryConfig):
        rows = describe_fields(cls)
        assert rows
        undocumented = [key for key, _, _, doc in rows if not doc]
        assert undocumented == []
    assert field_docs(ParadigmConfig)["k"].startswith("Accumulation rate k > 0")
    keys = {key for key, *_ in describe_fields(ExperimentConfig)}
    assert {"paradigm.k", "training.learning_rate", "sampling.top_k", "evaluation.probes"} <= keys


def test_configs_are_frozen() -> None:
    cfg = ExperimentConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.paradigm.k = 3.0  # type: ignore[misc]


def test_validate_rereads_and_reports() -> None:
    cfg = dataclasses.replace(ExperimentConfig().run, generations="5")  # type: ignore[arg-type]
    assert validate(cfg).generations == 5
    with pytest.raises(ConfigError, match="generations: must be >= 1"):
        validate(dataclasses.replace(ExperimentConfig().run, generations=0))


def test_a_knock_on_problem_is_not_reported_twice() -> None:
    with pytest.raises(ConfigError) as info:
        from_plain(
            TheoryConfig, {"probe": {"tokens": ["a", "b"], "counts": ["x", 1], "targets": ["a"]}}
        )
    assert info.value.problems == ["probe.counts[0]: expected a number, got 'x'"]
