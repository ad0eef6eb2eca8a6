"""The model registry: one plain dict from name to :class:`Entry`.

Two kinds of names live in it:

* **families** (``video_focalnet``, ``stam``, ``adafocusv3`` and the AdaFocusV3 components
  ``mobilenet_v2``, ``resnet``, ``spatial_policy``, ``temporal_policy``, ``pooling_classifier``):
  ``create(family, **official_kwargs)`` builds any configuration from the official
  constructor's own keyword names;
* **zoo names** (``video_focalnet_tiny``, ``stam_16``, ``adafocusv3_mbv2_r50``, ...): a family
  plus the official defaults of one published model; keyword overrides win.

Each family module registers itself at import time with :func:`register`; ``videploy.models``
imports the family modules, so the dict is complete once the package is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from videploy.errors import VideployError

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class Family:
    """How to build, and how to read official checkpoints of, one family.

    ``build(**official_kwargs) -> nn.Module``. ``aliases`` maps generic override names that work on
    every zoo entry (``num_frames``, ``image_size``) to the family's official keyword, or to a
    function ``(kwargs, value) -> kwargs`` where the mapping is not one name.
    ``convert(state_dict) -> state_dict`` turns an official state dict (container already unwrapped)
    into this package's key names; it is pure (returns a new dict) and drops keys only by name.
    ``infer(state_dict) -> dict`` reads official kwargs that a state dict pins down (num_classes,
    depths, dims, frames, ...) so a mismatch error can say which configuration a checkpoint fits.
    ``parts`` names key prefixes -> human part names ("glance", "policy", ...) for error messages.
    """

    name: str
    build: Callable[..., "torch.nn.Module"]
    convert: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda sd: dict(sd)
    infer: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda sd: {}
    aliases: Mapping[str, str | Callable[[dict[str, Any], Any], dict[str, Any]]] = field(default_factory=dict)
    parts: Mapping[str, str] = field(default_factory=dict)
    component: bool = False  # a building block (not a whole video model): hidden from the zoo listing


@dataclass(frozen=True)
class Entry:
    """A registry entry: a family, and for zoo names the official kwargs of that model."""

    name: str
    family: Family
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def is_family(self) -> bool:
        return self.name == self.family.name


REGISTRY: dict[str, Entry] = {}


def register(entry: Entry) -> Entry:
    if entry.name in REGISTRY:
        raise RuntimeError(f"model name {entry.name!r} registered twice")
    REGISTRY[entry.name] = entry
    return entry


def register_family(family: Family, description: str = "") -> Family:
    register(Entry(name=family.name, family=family, description=description))
    return family


def get(name: str) -> Entry:
    try:
        return REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise VideployError(f"unknown model {name!r}.{hint} Run 'videploy models' for the zoo; families: {', '.join(families())}") from None


def resolve_kwargs(name: str, overrides: Mapping[str, Any]) -> tuple[Entry, dict[str, Any]]:
    """The official kwargs ``create(name, **overrides)`` builds with (defaults, then aliases, then overrides)."""
    entry = get(name)
    kwargs: dict[str, Any] = dict(entry.defaults)
    for key, value in overrides.items():
        if value is None:  # None means "default"
            continue
        alias = entry.family.aliases.get(key)
        if alias is None:
            kwargs[key] = value
        elif callable(alias):
            kwargs = alias(kwargs, value)
        else:
            kwargs[alias] = value
    return entry, kwargs


def create(name: str, **overrides: Any) -> "torch.nn.Module":
    """Build a model by zoo or family name, in eval mode. Unknown keywords raise a VideployError."""
    entry, kwargs = resolve_kwargs(name, overrides)
    try:
        model = entry.family.build(**kwargs)
    except TypeError as exc:
        raise VideployError(f"cannot build {name!r} with {sorted(overrides)}: {exc}") from exc
    return model.eval()


def available(include_families: bool = False, include_components: bool = False) -> list[str]:
    """Zoo names (sorted); optionally the family names too."""
    out = []
    for name, entry in REGISTRY.items():
        if entry.family.component and not include_components:
            continue
        if entry.is_family and not include_families:
            continue
        out.append(name)
    return sorted(out)


def families(include_components: bool = False) -> list[str]:
    return sorted(n for n, e in REGISTRY.items() if e.is_family and (include_components or not e.family.component))
