"""JSON Schema export and validation: committed files are current, every zoo YAML passes plain jsonschema,
and wrong types / unknown keys are rejected by both jsonschema and pydantic."""

import copy
import json

import jsonschema
import pytest

from xlstm_zoo.registry.index import entry_paths
from xlstm_zoo.schemas import ConfigError, KernelConfig, XLSTMLargeLMConfig, XLSTMLMConfig
from xlstm_zoo.schemas.export import DOCUMENTS, json_schema, schema_path
from xlstm_zoo.schemas.yaml_io import load_yaml


@pytest.mark.parametrize("kind", sorted(DOCUMENTS))
def test_committed_schema_is_current(kind):
    committed = json.loads(schema_path(kind).read_text())
    assert committed == json_schema(kind), f"stale: run `xlstm-zoo schema --kind {kind} --write`"


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(json.loads(schema_path("zoo-entry").read_text()))


@pytest.mark.parametrize("name", sorted(entry_paths()))
def test_zoo_entries_pass_plain_jsonschema(name, validator):
    path = entry_paths()[name]
    assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/zoo-entry.schema.json\n")
    data = json.loads(json.dumps(load_yaml(path).data))
    errors = list(validator.iter_errors(data))
    assert not errors, [e.message for e in errors]


@pytest.mark.parametrize("path", sorted((entry_paths()["xlstm-125m"].parent / "recipes").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_recipes_pass_plain_jsonschema(path):
    validator = jsonschema.Draft202012Validator(json.loads(schema_path("recipe").read_text()))
    assert not [e.message for e in validator.iter_errors(json.loads(json.dumps(load_yaml(path).data)))]


def test_jsonschema_rejects_wrong_types_and_unknown_keys(validator):
    data = json.loads(json.dumps(load_yaml(entry_paths()["xlstm-125m"]).data))
    bad_type = copy.deepcopy(data)
    bad_type["model"]["embedding_dim"] = "768"
    unknown = copy.deepcopy(data)
    unknown["model"]["mlstm_block"]["mlstm"]["num_head"] = 4
    bad_kind = copy.deepcopy(data)
    bad_kind["model"]["kind"] = "transformer"
    for bad in (bad_type, unknown, bad_kind):
        assert list(validator.iter_errors(bad))


def test_cross_field_rules_name_the_fields():
    with pytest.raises(ValueError) as e:
        XLSTMLMConfig(vocab_size=10, embedding_dim=64, num_blocks=4, mlstm_block={"mlstm": {"num_heads": 5}},
                      slstm_at=[4])
    text = str(e.value)
    assert "slstm_at.0" in text and "mlstm_block.mlstm.num_heads" in text and "slstm_block" in text
    with pytest.raises(ValueError, match="qk_dim_factor"):
        XLSTMLargeLMConfig(vocab_size=10, embedding_dim=64, num_blocks=1, num_heads=3)


def test_reference_kernel_names_are_mapped():
    k = KernelConfig(chunkwise_kernel="chunkwise--triton_xl_chunk", sequence_kernel="native_sequence__native",
                     step_kernel="triton", mode="train_with_padding")
    assert (k.chunkwise_kernel, k.sequence_kernel, k.mode) == ("chunkwise--triton", "native", "train")
    with pytest.raises(ValueError):
        KernelConfig(chunkwise_kernel="chunkwise--flash")


def test_dimensions_follow_the_references():
    seven = XLSTMLargeLMConfig(vocab_size=50304, embedding_dim=4096, num_blocks=32, num_heads=8, ffn_proj_factor=2.667)
    assert (seven.qk_dim, seven.v_dim, seven.ffn_dim) == (2048, 4096, 10944)
    small = XLSTMLargeLMConfig(vocab_size=10, embedding_dim=768, num_blocks=1, num_heads=4)
    assert small.ffn_dim == 2112  # 2.6667, not 8/3 (trap 28)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
