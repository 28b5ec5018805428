"""``graph=<name>`` for every discrete network in pgmpy's wheel, without a YAML file per network.

:func:`register` stores one config per bundled network (``bncompare.bundled``) in
Hydra's ConfigStore, group ``graph``; the study command calls it before composing. Each is::

    name: <network>
    options:
      truth: bundled   # bundled = its CPTs are the truth of every episode;
                       # prior = its structure with fresh CPTs from the study prior per episode

A YAML file of the same name in this folder would be a second home for it, so there is none.
"""
from __future__ import annotations


def register() -> None:
    from hydra.core.config_store import ConfigStore

    from bncompare.bundled import discrete_names

    store = ConfigStore.instance()
    for name in discrete_names():
        store.store(group="graph", name=name, node={"name": name, "options": {"truth": "bundled"}})
