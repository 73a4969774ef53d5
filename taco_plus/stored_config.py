"""Component configs stored in checkpoints: checked before anything is instantiated.

A checkpoint is data. ``torch.load(weights_only=True)`` stops its pickle from running
code, but its ``model_config`` / ``text_encoder_config`` / ``weighting_config`` go to
Hydra's ``instantiate``, which imports and calls whatever ``_target_`` names: a
checkpoint naming ``builtins.open`` would truncate a file, ``shutil.copyfile`` copy one.
:func:`check_stored_config` refuses such a config before anything is built:

* every ``_target_``, at any depth (the attention factories and caption summary inside
  the model config, ``_args_`` lists, weighting components), must be in
  :func:`allowed_targets`;
* no string may hold an OmegaConf interpolation (``${...}``): configs are resolved when
  a checkpoint is written, and at instantiation a resolver such as ``oc.decode`` could
  build a new ``_target_``, ``oc.env`` read the environment;
* a component whose class has a registered schema must fit it: no unknown key (such as
  ``ClipTextEncoder``'s ``cache_dir``, which would let a checkpoint choose where weights
  are downloaded), no wrong type.

The allow-list is derived, not written by hand: it is every ``_target_`` named by an
option of a config group whose nodes checkpoints store (:data:`CHECKPOINT_GROUPS`,
``configs/<group>/**.yaml``) or by a schema registered for that group. Adding an option
file (``attention/linformer_text.yaml`` naming a new class, a weighting option with
nested components) makes its classes loadable from checkpoints; nothing else needs
updating. Classes of other groups (data sources that export files, optimisers) and
everything outside the project's configs stay refused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterator, Mapping, Optional

# Groups whose nodes end up in a checkpoint: the model config embeds the attention
# node; text_encoder and weighting are stored as they are.
CHECKPOINT_GROUPS = ("model", "attention", "text_encoder", "weighting")
# Hydra's instantiation keys: not constructor arguments, so not in a schema.
HYDRA_KEYS = ("_partial_", "_args_", "_recursive_", "_convert_")


class UntrustedConfigError(ValueError):
    """A stored config names something that is not a taco-plus component."""


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every (path, value) of a nested dict/list, the root included (iterative: no
    recursion limit for a hostile depth)."""
    stack = [(path, node)]
    while stack:
        path, node = stack.pop()
        yield path, node
        if isinstance(node, Mapping):
            stack.extend((f"{path}.{k}", v) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(node))


def _group_nodes() -> Iterator[Any]:
    """Plain containers of every option and registered schema of :data:`CHECKPOINT_GROUPS`."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from taco_plus.config import CONFIG_DIR  # importing it registers the schemas

    for group in CHECKPOINT_GROUPS:
        for path in sorted((CONFIG_DIR / group).rglob("*.yaml")):
            yield OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        for entry in ConfigStore.instance().repo.get(group, {}).values():
            yield OmegaConf.to_container(entry.node, resolve=False)


@lru_cache(maxsize=1)
def allowed_targets() -> frozenset[str]:
    """Every ``_target_`` the checkpoint-stored config groups name (see the module docstring)."""
    return frozenset(
        node["_target_"]
        for root in _group_nodes()
        for _, node in _walk(root, "")
        if isinstance(node, Mapping) and isinstance(node.get("_target_"), str)
    )


@lru_cache(maxsize=1)
def _schemas() -> dict[str, Any]:
    """``_target_`` -> registered structured schema of the checkpoint-stored groups."""
    from hydra.core.config_store import ConfigStore

    import taco_plus.config  # noqa: F401  (registers the schemas)

    return {
        entry.node["_target_"]: entry.node
        for group in CHECKPOINT_GROUPS
        for entry in ConfigStore.instance().repo.get(group, {}).values()
        if "_target_" in entry.node
    }


def check_stored_config(config: Any, what: str, source: str = "checkpoint", optional: bool = False) -> None:
    """Raises :class:`UntrustedConfigError` unless ``config`` only builds taco-plus components.

    Args:
        config: the stored node (a plain dict), or None when ``optional``.
        what: its name in messages (``"model_config"``).
        source: where it comes from (the checkpoint path), for messages.
        optional: None is accepted (``weighting_config`` of an unweighted model).
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if config is None and optional:
        return
    refuse = f"{source}: refusing to load it (nothing was instantiated):"
    if not isinstance(config, Mapping):
        raise UntrustedConfigError(f"{refuse} {what} is a {type(config).__name__}, not a config mapping")
    allowed = allowed_targets()
    for path, node in _walk(config, what):
        if isinstance(node, str) and "${" in node:
            raise UntrustedConfigError(f"{refuse} {path} holds an interpolation ({node[:80]!r})")
        if not isinstance(node, Mapping):
            continue
        if any(isinstance(key, str) and "${" in key for key in node):
            raise UntrustedConfigError(f"{refuse} a key of {path} holds an interpolation")
        if "_target_" not in node:
            continue
        target = node["_target_"]
        if not isinstance(target, str) or target not in allowed:
            raise UntrustedConfigError(
                f"{refuse} {path}._target_ = {target!r:.100} is not a taco-plus component; a checkpoint may "
                f"name only the classes of the {', '.join(CHECKPOINT_GROUPS)} config groups: "
                f"{', '.join(sorted(allowed))}"
            )
        schema = _schemas().get(target)
        if schema is not None:
            try:
                OmegaConf.merge(schema, {k: v for k, v in node.items() if k not in HYDRA_KEYS})
            except (OmegaConfBaseException, ValueError, TypeError) as err:
                reason = str(err).splitlines()[0]
                raise UntrustedConfigError(f"{refuse} {path} does not fit the schema of {target}: {reason}") from err


def instantiate_stored(config: Optional[Mapping[str, Any]], what: str = "stored config") -> Any:
    """Checks a stored component config, then Hydra-instantiates it (None, or a node
    without ``_target_``, gives None)."""
    if config is None:
        return None
    check_stored_config(config, what)
    if config.get("_target_") is None:
        return None
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(dict(config), _convert_="all")
    except InstantiationException as err:  # the component's own error (e.g. CLIP weights missing offline)
        raise (err.__cause__ or err) from err


__all__ = ["CHECKPOINT_GROUPS", "UntrustedConfigError", "allowed_targets", "check_stored_config", "instantiate_stored"]
