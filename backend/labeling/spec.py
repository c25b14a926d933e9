"""Which <Choices> of a Label Studio config the backend fills, from which <Text>, and how model labels map onto it.

Label Studio stores a choice under its `alias` when it has one, else its `value`; everything here speaks in
those stored names (what `ControlTag.labels` lists). Model labels map onto them in this order:

1. an explicit `predicted_values="POSITIVE,pos"` attribute on a <Choice> (the label-studio-ml-backend convention);
2. the stored name, exactly;
3. the <Choice value>, exactly (so `value="Negative" alias="neg"` still takes NEGATIVE);
4. 2 and 3 again, ignoring case.

A config is written by any project admin and reaches us over the network, so before the SDK parses it it must
be at most `max_chars` long and well-formed XML without a DOCTYPE (no entity can be declared, so no entity
expansion or external reference is possible); defusedxml checks that. Parsed specs are cached by content
(`CACHE_SIZE` entries, so at most CACHE_SIZE × max_chars characters are held). The SDK's parser is imported
on the first parse (half a second, pandas and a JSON-schema faker included), not at the API's start.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring

from backend.errors import InvalidLabelingConfig

if TYPE_CHECKING:
    from label_studio_sdk.label_interface import LabelInterface


@dataclass(frozen=True)
class LabelingSpec:
    """Where a prediction goes: the Choices (from_name) on a Text (to_name) reading task.data[data_key]."""

    from_name: str
    to_name: str
    data_key: str
    choices: tuple[str, ...]
    label_map: Mapping[str, str]
    unmapped: tuple[str, ...]
    multiple: bool = False

    def choice_for(self, model_label: str) -> str:
        """The config choice a model label is stored as; raises InvalidLabelingConfig for a label never mapped."""
        try:
            return self.label_map[model_label]
        except KeyError:
            raise InvalidLabelingConfig(
                f"model label {model_label} maps to no choice of {self.from_name!r} ({', '.join(self.choices)})"
            ) from None


# label configs are at most MAX_LABEL_CONFIG_CHARS each (the Settings default)
DEFAULT_MAX_CHARS = 262_144
CACHE_SIZE = 64
_REFUSED = {
    "DTDForbidden": "a DOCTYPE",
    "EntitiesForbidden": "an entity declaration",
    "ExternalReferenceForbidden": "an external reference",
}


def parse_spec(
    label_config_xml: str, model_labels: Sequence[str], *, max_chars: int = DEFAULT_MAX_CHARS
) -> LabelingSpec:
    """The spec for a config and a model's labels (cached); raises InvalidLabelingConfig naming what is missing,
    too long or refused (a DOCTYPE, an entity, malformed XML)."""
    if not isinstance(label_config_xml, str) or not label_config_xml.strip():
        raise InvalidLabelingConfig("the labeling config is empty")
    if len(label_config_xml) > max_chars:
        raise InvalidLabelingConfig(
            f"the labeling config has {len(label_config_xml)} characters; "
            f"the limit is MAX_LABEL_CONFIG_CHARS={max_chars}"
        )
    return _parse_spec_cached(label_config_xml, tuple(model_labels))


def check_xml(label_config_xml: str) -> None:
    """Raise InvalidLabelingConfig for a DOCTYPE, an entity or an external reference, or for malformed XML."""
    try:
        defused_fromstring(label_config_xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        what = _REFUSED.get(type(exc).__name__, "a forbidden XML construct")
        raise InvalidLabelingConfig(
            f"the labeling config has {what}: DOCTYPEs, entities and external references are refused"
        ) from None
    except ParseError as exc:
        raise InvalidLabelingConfig(f"the labeling config is not valid XML: {exc}") from None


@functools.lru_cache(maxsize=CACHE_SIZE)
def _parse_spec_cached(label_config_xml: str, model_labels: tuple[str, ...]) -> LabelingSpec:
    check_xml(label_config_xml)
    interface = _interface(label_config_xml)
    candidates = _choices_on_text(interface)
    if not candidates:
        raise InvalidLabelingConfig(
            "no <Choices> bound to a <Text> in the labeling config: add e.g. "
            '<Choices name="sentiment" toName="text"> next to <Text name="text" value="$text"/>'
        )
    first_error: InvalidLabelingConfig | None = None
    for control, text in candidates:
        try:
            return _spec_for(control, text, model_labels)
        except InvalidLabelingConfig as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _interface(label_config_xml: str) -> LabelInterface:
    from label_studio_sdk.label_interface import LabelInterface

    try:
        return LabelInterface(label_config_xml)
    except Exception as exc:  # the SDK raises its own XML/validation exceptions, not ValueError
        raise InvalidLabelingConfig(f"the labeling config is not valid XML: {exc}") from None


def _choices_on_text(interface: LabelInterface) -> list[tuple[Any, Any]]:
    """(Choices control, the first Text it names in toName), in config order."""
    pairs = []
    for control in interface.controls:
        if control.tag.lower() != "choices":
            continue
        texts = [obj for obj in control.objects if obj.tag.lower() == "text"]
        if texts:
            pairs.append((control, texts[0]))
    return pairs


def _spec_for(control: Any, text: Any, model_labels: tuple[str, ...]) -> LabelingSpec:
    data_key = _data_key(text)
    choices = tuple(str(label) for label in control.labels or ())
    label_map = {label: _choice_for(label, control) for label in model_labels}
    missing = [label for label, choice in label_map.items() if choice is None]
    if missing:
        raise InvalidLabelingConfig(
            f"model label {missing[0]} maps to no choice of {control.name!r} ({', '.join(choices) or 'no choices'}); "
            f'add predicted_values="{missing[0]}" to a <Choice>'
        )
    mapped = {label: str(choice) for label, choice in label_map.items()}
    unmapped = tuple(c for c in choices if c not in mapped.values())
    return LabelingSpec(
        from_name=control.name,
        to_name=text.name,
        data_key=data_key,
        choices=choices,
        label_map=MappingProxyType(mapped),
        unmapped=unmapped,
        multiple=bool(getattr(control, "is_multiple_choice", False)),
    )


def _data_key(text: Any) -> str:
    value = str(text.value or "")
    if str((text.attr or {}).get("valueType") or "").lower() == "url":
        raise InvalidLabelingConfig(
            f'<Text name="{text.name}"> has valueType="url"; this backend reads inline text (value="$field") only'
        )
    if not value.startswith("$") or len(value) < 2:
        raise InvalidLabelingConfig(
            f'<Text name="{text.name}"> reads no task field: its value must be like "$text", not a fixed string'
        )
    return value[1:]


def _choice_for(model_label: str, control: Any) -> str | None:
    """The stored choice name a model label maps to, by the rules in the module docstring."""
    attrs: dict[str, Any] = dict(control.labels_attrs or {})
    for stored, tag in attrs.items():
        predicted = str((tag.attr or {}).get("predicted_values") or "")
        if model_label in (p.strip() for p in predicted.split(",")):
            return stored
    for fold in (False, True):
        for stored, tag in attrs.items():
            names = (stored, str((tag.attr or {}).get("value") or stored))
            if any(_same(model_label, name, fold) for name in names):
                return stored
    return None


def _same(a: str, b: str, fold: bool) -> bool:
    return a.casefold() == b.casefold() if fold else a == b
