"""parse_spec: which Choices/Text pair a config names, and how model labels map onto its choices."""

from __future__ import annotations

import pytest

from backend.errors import InvalidLabelingConfig
from backend.labeling.spec import LabelingSpec, parse_spec

pytestmark = pytest.mark.unit

SST2 = ("NEGATIVE", "POSITIVE")

DEFAULT = (
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text" choice="single" '
    'showInline="true"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
)


def config(choices: str, *, text: str = '<Text name="text" value="$text"/>', attrs: str = 'toName="text"') -> str:
    return f'<View>{text}<Choices name="sentiment" {attrs}>{choices}</Choices></View>'


def test_the_label_studio_sentiment_template() -> None:
    spec = parse_spec(DEFAULT, SST2)
    assert spec == LabelingSpec(
        from_name="sentiment",
        to_name="text",
        data_key="text",
        choices=("Positive", "Negative"),
        label_map={"NEGATIVE": "Negative", "POSITIVE": "Positive"},
        unmapped=(),
    )
    assert spec.multiple is False


def test_aliases_are_what_label_studio_stores() -> None:
    xml = config('<Choice value="Positive" alias="pos"/><Choice value="Negative" alias="neg"/>')
    spec = parse_spec(xml, SST2)
    assert spec.choices == ("pos", "neg")
    assert dict(spec.label_map) == {"POSITIVE": "pos", "NEGATIVE": "neg"}


def test_custom_tag_names_and_data_key() -> None:
    xml = (
        '<View><Header value="Review"/><Text name="review_body" value="$review"/>'
        '<Choices name="tone" toName="review_body">'
        '<Choice value="POSITIVE"/><Choice value="NEGATIVE"/></Choices></View>'
    )
    spec = parse_spec(xml, SST2)
    assert (spec.from_name, spec.to_name, spec.data_key) == ("tone", "review_body", "review")
    assert dict(spec.label_map) == {"NEGATIVE": "NEGATIVE", "POSITIVE": "POSITIVE"}


def test_predicted_values_win_over_name_matching() -> None:
    xml = config(
        '<Choice value="Good" predicted_values="POSITIVE, pos"/>'
        '<Choice value="Positive" predicted_values="NEGATIVE"/>'  # perverse on purpose: the attribute decides
    )
    assert dict(parse_spec(xml, SST2).label_map) == {"POSITIVE": "Good", "NEGATIVE": "Positive"}


def test_predicted_values_on_an_aliased_choice_map_to_the_alias() -> None:
    xml = config(
        '<Choice value="Good" alias="g" predicted_values="POSITIVE"/><Choice value="Bad" predicted_values="NEGATIVE"/>'
    )
    assert dict(parse_spec(xml, SST2).label_map) == {"POSITIVE": "g", "NEGATIVE": "Bad"}


def test_a_value_matches_when_the_alias_does_not() -> None:
    xml = config('<Choice value="Positive"/><Choice value="Negative" alias="neg"/>')
    assert parse_spec(xml, SST2).label_map["NEGATIVE"] == "neg"


def test_three_way_config_lists_neutral_as_unmapped() -> None:
    xml = config('<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>')
    spec = parse_spec(xml, SST2)
    assert spec.choices == ("Positive", "Negative", "Neutral")
    assert spec.unmapped == ("Neutral",)
    assert set(spec.label_map.values()) == {"Positive", "Negative"}


def test_multiple_choice_is_accepted() -> None:
    xml = config('<Choice value="Positive"/><Choice value="Negative"/>', attrs='toName="text" choice="multiple"')
    spec = parse_spec(xml, SST2)
    assert spec.multiple is True
    assert spec.choices == ("Positive", "Negative")


def test_with_two_text_tags_the_choices_to_name_decides() -> None:
    xml = (
        '<View><Text name="title" value="$title"/><Text name="body" value="$body"/>'
        '<Choices name="sentiment" toName="body"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
    )
    spec = parse_spec(xml, SST2)
    assert (spec.to_name, spec.data_key) == ("body", "body")


def test_the_first_choices_the_model_can_fill_is_used() -> None:
    xml = (
        '<View><Text name="text" value="$text"/>'
        '<Choices name="topic" toName="text"><Choice value="Sports"/><Choice value="Politics"/></Choices>'
        '<Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
    )
    assert parse_spec(xml, SST2).from_name == "sentiment"


def test_a_dotted_data_key_is_kept_whole() -> None:
    text = '<Text name="text" value="$review.text"/>'
    xml = config('<Choice value="Positive"/><Choice value="Negative"/>', text=text)
    assert parse_spec(xml, SST2).data_key == "review.text"


@pytest.mark.parametrize(
    "xml",
    [
        '<View><Text name="text" value="$text"/></View>',
        '<View><Image name="img" value="$image"/><Text name="text" value="$text"/>'
        '<Choices name="sentiment" toName="img"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>',
        '<View><HyperText name="text" value="$text"/>'
        '<Choices name="sentiment" toName="text"><Choice value="Positive"/><Choice value="Negative"/></Choices></View>',
        config('<Choice value="Positive"/><Choice value="Negative"/>', attrs='toName="missing"'),
    ],
    ids=["no-choices", "choices-on-image", "choices-on-hypertext", "to-name-unknown"],
)
def test_no_choices_bound_to_a_text(xml: str) -> None:
    with pytest.raises(InvalidLabelingConfig, match="no <Choices> bound to a <Text>"):
        parse_spec(xml, SST2)


@pytest.mark.parametrize("xml", ['<View><Text name="text" value="$text"/><Choices', "<View>", "not xml at all <"])
def test_invalid_xml(xml: str) -> None:
    with pytest.raises(InvalidLabelingConfig, match="not valid XML"):
        parse_spec(xml, SST2)


@pytest.mark.parametrize("xml", ["", "   "])
def test_empty_config(xml: str) -> None:
    with pytest.raises(InvalidLabelingConfig, match="empty"):
        parse_spec(xml, SST2)


def test_unmappable_model_label_is_named_with_the_fix() -> None:
    xml = config('<Choice value="Good" predicted_values="POSITIVE"/><Choice value="Bad"/>')
    with pytest.raises(InvalidLabelingConfig) as raised:
        parse_spec(xml, SST2)
    assert str(raised.value) == (
        "model label NEGATIVE maps to no choice of 'sentiment' (Good, Bad); "
        'add predicted_values="NEGATIVE" to a <Choice>'
    )


def test_a_choices_without_choice_children() -> None:
    with pytest.raises(InvalidLabelingConfig, match="model label NEGATIVE maps to no choice of 'sentiment'"):
        parse_spec(config(""), SST2)


def test_a_text_without_a_data_field_is_refused() -> None:
    xml = config('<Choice value="Positive"/><Choice value="Negative"/>', text='<Text name="text" value="fixed"/>')
    with pytest.raises(InvalidLabelingConfig, match='value must be like "\\$text"'):
        parse_spec(xml, SST2)


def test_a_url_text_is_refused() -> None:
    text = '<Text name="text" value="$url" valueType="url"/>'
    with pytest.raises(InvalidLabelingConfig, match="valueType"):
        parse_spec(config('<Choice value="Positive"/><Choice value="Negative"/>', text=text), SST2)


def test_other_model_labels() -> None:
    xml = config('<Choice value="Positive"/><Choice value="Negative"/><Choice value="Neutral"/>')
    spec = parse_spec(xml, ("negative", "neutral", "positive"))
    assert dict(spec.label_map) == {"negative": "Negative", "neutral": "Neutral", "positive": "Positive"}
    assert spec.unmapped == ()


def test_parsing_is_cached_and_the_spec_is_read_only() -> None:
    first = parse_spec(DEFAULT, SST2)
    assert parse_spec(DEFAULT, list(SST2)) is first
    with pytest.raises(TypeError):
        first.label_map["POSITIVE"] = "x"  # type: ignore[index]


def test_choice_for_an_unknown_model_label() -> None:
    with pytest.raises(InvalidLabelingConfig, match="LABEL_7"):
        parse_spec(DEFAULT, SST2).choice_for("LABEL_7")
