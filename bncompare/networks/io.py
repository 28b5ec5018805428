"""Networks in and out: pgmpy models, BIF (and XMLBIF, UAI, NET, XDSL) files, and YAML/JSON specs.

YAML/JSON spec (every key but ``nodes`` optional; CPT rows follow the parent
order given in ``parents``, last parent fastest)::

    nodes:
      Rain:      {states: [no, yes], cpt: [[0.8, 0.2]]}
      Sprinkler: {parents: [Rain], cpt: [[0.6, 0.4], [0.99, 0.01]]}
      Wet:       {card: 2, parents: [Rain, Sprinkler]}
    # a node without "cpt" needs one from a prior (load_spec(..., seed=...), or truth=prior in a study)

All loading is data-only (a safe YAML loader / json); nothing is evaluated. Every
problem with a file (missing, a folder, not UTF-8, malformed, duplicate keys or
state names, a non-integer card, a ragged CPT, no variables) is a one-line BNError.

Reading is bounded before anything is built, so a tiny hostile file cannot hang or
exhaust memory: only regular files are opened (never a FIFO, a device such as
/dev/zero behind a symlink, or a socket), at most :data:`MAX_FILE_BYTES` are read (also
after gunzipping), YAML aliases are refused (an alias bomb expands exponentially),
nesting deeper than :data:`MAX_DEPTH` is refused (no RecursionError), and a card above
:data:`~bncompare.networks.graph.MAX_CARD` is refused before any state list exists.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np

from bncompare.errors import BNError
from bncompare.networks.graph import MAX_CARD, Graph
from bncompare.networks.network import BayesNet


# ----- pgmpy -------------------------------------------------------------
def to_pgmpy(net: BayesNet):
    """A ``pgmpy.models.DiscreteBayesianNetwork`` with the same CPTs."""
    from pgmpy.factors.discrete import TabularCPD
    from pgmpy.models import DiscreteBayesianNetwork

    g = net.graph
    model = DiscreteBayesianNetwork()
    model.add_nodes_from(g.names)
    model.add_edges_from(g.edges)
    states = _state_names(net)
    for m, name in enumerate(g.names):
        pa = [g.names[p] for p in g.parents[m]]
        cpd = TabularCPD(
            name,
            g.cards[m],
            net.cpts[m].T,  # pgmpy: child axis first, last evidence variable fastest
            evidence=pa or None,
            evidence_card=[g.cards[p] for p in g.parents[m]] or None,
            state_names={n: list(states[g.index(n)]) for n in [name, *pa]},
        )
        model.add_cpds(cpd)
    return model


def from_pgmpy(model) -> BayesNet:
    """Exact inverse of :func:`to_pgmpy` (node order becomes a topological order)."""
    nodes = list(model.nodes())
    cpds = {}
    for n in nodes:
        cpd = model.get_cpds(n)
        if cpd is None:
            raise BNError(f"pgmpy model has no CPD for node {n!r}")
        cpds[str(n)] = cpd
    parent_order = {str(n): [str(v) for v in cpds[str(n)].variables[1:]] for n in nodes}
    edges = [(p, n) for n, pa in parent_order.items() for p in pa]
    cards = {str(n): int(cpds[str(n)].cardinality[0]) for n in nodes}
    graph = Graph.from_edges([str(n) for n in nodes], edges, cards, parent_order=parent_order)
    cpts, states = [], []
    for name in graph.names:
        cpd = cpds[name]
        values = np.asarray(cpd.get_values(), dtype=np.float64)
        cpts.append(values.T)
        states.append(tuple(str(s) for s in cpd.state_names[name]))
    return BayesNet(graph, tuple(cpts), tuple(states))


def as_bayes_net(network) -> BayesNet:
    """A ``BayesNet`` as it is, a pgmpy ``DiscreteBayesianNetwork`` converted (:func:`from_pgmpy`)."""
    if isinstance(network, BayesNet):
        return network
    from pgmpy.models import DiscreteBayesianNetwork

    if isinstance(network, DiscreteBayesianNetwork):
        return from_pgmpy(network)
    raise BNError(f"a study's network must be a bncompare BayesNet or a pgmpy DiscreteBayesianNetwork, "
                  f"not {type(network).__name__}")


def _state_names(net: BayesNet) -> tuple[tuple[str, ...], ...]:
    if net.state_names is not None:
        return net.state_names
    return tuple(tuple(str(v) for v in range(c)) for c in net.graph.cards)


# ----- files -------------------------------------------------------------
BIF_TEXT = re.compile(r"\s*(//[^\n]*\n\s*)*network\s")  # BIF text opens with a "network <name>" block


MAX_FILE_BYTES = 32 * 2**20  # the largest network in pgmpy's wheel (diabetes) is 5.5 MB of BIF text
MAX_DEPTH = 16  # a spec nests 5 levels (nodes, node, cpt, row, entry); deeper is an attack or a mistake


def read_bytes(path, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """At most ``limit`` bytes of a regular file (gunzipped when it ends in .gz), or a one-line BNError.

    The file is opened non-blocking and checked with fstat before a byte is read: a FIFO
    would block forever and /dev/zero (also behind a symlink) never ends."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise BNError(f"{what} not found: {path}") from None
    except OSError as e:
        raise BNError(f"cannot read {what} {path}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise BNError(f"{what} {path} is a folder, not a file")
        raise BNError(f"{what} {path} is not a regular file (a FIFO, device or socket): refused")
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(limit + 1)
            if len(raw) <= limit and path.suffix == ".gz":
                raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(limit + 1)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise BNError(f"cannot read {what} {path}: {e}") from None
    if len(raw) > limit:
        raise BNError(f"{what} {path} is larger than {limit // 2**20} MB (after gunzipping): refused")
    return raw


def read_text(path, what: str) -> str:
    """A file's text (gunzipped when it ends in .gz), bounded as :func:`read_bytes`, or a one-line BNError."""
    raw = read_bytes(path, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BNError(f"{what} {path} is not UTF-8 text (byte {e.start})") from None


def _is_bif_text(value) -> bool:
    return isinstance(value, str) and ("\n" in value or bool(BIF_TEXT.match(value)))


# ----- BIF ---------------------------------------------------------------
def load_bif(path_or_text: str | Path) -> BayesNet:
    """Read a BIF file (plain or .gz) or BIF text. A ``Path``, or a one-line string not
    opening with ``network <name>``, is always a path (so ``networks/{rain}.bif`` is a file name)."""
    text = path_or_text if _is_bif_text(path_or_text) else read_text(path_or_text, "BIF file")
    if not BIF_TEXT.match(text):
        raise BNError("not a BIF network: the text does not open with a 'network <name> { }' block")
    _no_duplicate_blocks(text)
    from pgmpy.readwrite import BIFReader

    logging.getLogger("pgmpy").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = BIFReader(string=text).get_model()
    except Exception as e:  # pgmpy raises many types on malformed input
        raise BNError(f"could not parse BIF: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not model.nodes():
        raise BNError("the BIF network has no variables")
    return from_pgmpy(model)


BIF_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
BIF_BLOCK = re.compile(r"\b(variable|probability)\s*(?:\(\s*)?([^\s|(){}]+)")  # the node a block is about


def _no_duplicate_blocks(text: str) -> None:
    """pgmpy keeps the last of two ``probability ( A )`` (or ``variable A``) blocks: refuse, as for JSON/YAML."""
    seen = set()
    for kind, node in BIF_BLOCK.findall(BIF_COMMENT.sub(" ", text)):
        if (kind, node) in seen:
            raise BNError(f"BIF network has two {kind} blocks for {node!r}: remove one")
        seen.add((kind, node))


# ----- other formats pgmpy reads ------------------------------------------
PGMPY_READERS = {"xmlbif": "XMLBIFReader", "uai": "UAIReader", "net": "NETReader", "xdsl": "XDSLReader"}
FORMAT_OF = {".bif": "bif", ".bif.gz": "bif", ".xml": "xmlbif", ".xmlbif": "xmlbif", ".uai": "uai", ".net": "net",
             ".xdsl": "xdsl", ".yaml": "spec", ".yml": "spec", ".json": "spec"}


def file_format(path) -> str:
    """The format of a network file from its name (``bif``, ``xmlbif``, ``uai``, ``net``, ``xdsl``, ``spec``)."""
    name = Path(path).name.lower()
    for suffix, kind in FORMAT_OF.items():
        if name.endswith(suffix):
            return kind
    raise BNError(f"network file {str(path)!r}: use one of {', '.join(FORMAT_OF)}")


def load_pgmpy_file(path, kind: str) -> BayesNet:
    """An XMLBIF, UAI, Hugin NET or XDSL file through pgmpy's reader, from the bounded text of
    :func:`read_text` (pgmpy never opens the path itself)."""
    text = read_text(path, f"{kind.upper()} file")
    if kind == "uai":
        _check_uai_cards(text, path)
    import pgmpy.readwrite

    logging.getLogger("pgmpy").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = getattr(pgmpy.readwrite, PGMPY_READERS[kind])(string=text).get_model()
    except BNError:
        raise
    except Exception as e:  # noqa: BLE001  pgmpy raises many types on malformed input
        first = str(e).splitlines()[0] if str(e) else ""
        raise BNError(f"could not parse {kind.upper()} file {path}: {type(e).__name__}: {first}") from None
    if not model.nodes():
        raise BNError(f"the {kind.upper()} network {path} has no variables")
    return from_pgmpy(model)


def _check_uai_cards(text: str, path) -> None:
    """A UAI preamble gives cardinalities as bare numbers: check them before pgmpy builds state lists."""
    tokens = re.sub(r"#[^\n]*", " ", text).split()
    try:
        n = int(tokens[1])
        cards = [int(t) for t in tokens[2:2 + n]]
    except (IndexError, ValueError):
        raise BNError(f"UAI file {path} does not open with 'BAYES <n> <cardinalities>'") from None
    if not 0 < n <= len(tokens) or len(cards) != n:
        raise BNError(f"UAI file {path}: the preamble names {n} variables but lists {len(cards)} cardinalities")
    big = [c for c in cards if c > MAX_CARD]
    if big:
        raise BNError(f"UAI file {path}: cardinality {big[0]} is above the limit of {MAX_CARD} states")


def load_file(path) -> BayesNet:
    """A network file in any format bncompare reads (see :data:`FORMAT_OF`); a spec needs every CPT."""
    kind = file_format(path)
    if kind == "bif":
        return load_bif(Path(path))
    if kind == "spec":
        return load_spec(path)
    return load_pgmpy_file(path, kind)


# ----- YAML / JSON spec --------------------------------------------------
def load_spec(path_or_dict, seed: int = 0, prior=None) -> BayesNet:
    """Read a network from a YAML or JSON spec (a path or an already-parsed dict)."""
    if isinstance(path_or_dict, dict):
        spec = path_or_dict
    else:
        path = Path(path_or_dict)
        spec = parse_spec_text(read_text(path, "network spec"), path.suffix == ".json", path)
    graph, states = spec_structure(spec)
    given = {str(n): (b or {}).get("cpt") for n, b in spec["nodes"].items()}
    drawn = None
    if any(v is None for v in given.values()):
        import torch

        from bncompare.networks.priors import DirichletPrior

        drawn = (prior or DirichletPrior(1.0)).sample(graph, 1, torch.Generator().manual_seed(seed))
    cpts = []
    for m, n in enumerate(graph.names):
        if given[n] is None:
            cpts.append(drawn[m][0].numpy())
        else:
            try:
                cpts.append(np.asarray(given[n], dtype=np.float64).reshape(graph.n_configs[m], graph.cards[m]))
            except (TypeError, ValueError):  # ragged rows, text entries, the wrong number of entries
                raise BNError(
                    f"CPT of node {n!r} has {_leaves(given[n])} entries, not a table of "
                    f"{graph.n_configs[m]} rows x {graph.cards[m]} numbers"
                ) from None
    return BayesNet(graph, tuple(cpts), states)


def spec_structure(spec) -> tuple[Graph, tuple[tuple[str, ...], ...]]:
    """(graph, state names in graph order) of a parsed spec, validated, without reading or drawing any CPT."""
    if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), dict) or not spec["nodes"]:
        raise BNError("network spec needs a non-empty 'nodes' mapping")
    nodes = spec["nodes"]
    names = [str(n) for n in nodes]
    states, cards, parent_order = {}, {}, {}
    for n, body in nodes.items():
        n, body = str(n), (body or {})
        if not isinstance(body, dict):
            raise BNError(f"spec for node {n!r} must be a mapping")
        unknown = set(body) - {"states", "card", "parents", "cpt"}
        if unknown:
            raise BNError(f"node {n!r}: unknown keys {sorted(unknown)}; allowed: states, card, parents, cpt")
        st = body.get("states")
        if st is not None and not isinstance(st, list):
            raise BNError(f"node {n!r}: states must be a list, got {st!r}")
        card = _card(body.get("card", len(st) if st else 2), n)
        if st is not None and any(isinstance(x, (list, dict)) for x in st):
            raise BNError(f"node {n!r}: a state name must be a plain value, not a list or mapping")
        if st is not None and len(st) != card:
            raise BNError(f"node {n!r}: {len(st)} states but card {card}")
        if st and len({str(x) for x in st}) != len(st):
            raise BNError(f"node {n!r}: duplicate state names in {st}")
        cards[n] = card
        states[n] = tuple(str(s) for s in st) if st else tuple(str(v) for v in range(card))
        pa = body.get("parents", []) or []
        if not isinstance(pa, list):
            raise BNError(f"node {n!r}: parents must be a list, got {pa!r}")
        parent_order[n] = [str(p) for p in pa]
    edges = [(p, n) for n, pa in parent_order.items() for p in pa]
    graph = Graph.from_edges(names, edges, cards, parent_order=parent_order)
    return graph, tuple(states[n] for n in graph.names)


def _leaves(x) -> int:
    return sum(_leaves(v) for v in x) if isinstance(x, (list, tuple)) else 1


def _card(value, node: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")) or value != int(value):
        raise BNError(f"node {node!r}: card must be a whole number of states, got {value!r}")
    if value > MAX_CARD:  # before a list of states is built for it (too few states is the Graph's check)
        raise BNError(f"node {node!r}: card {int(value)} is above the limit of {MAX_CARD} states")
    return int(value)


def _no_duplicates(pairs, where: str = "") -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise BNError(f"duplicate key {k!r} in the network spec{where}")
        out[k] = v
    return out


def parse_spec_text(text: str, is_json: bool, path="") -> dict:
    """A YAML/JSON spec's text as data; duplicate keys, YAML aliases, nesting deeper than
    :data:`MAX_DEPTH` and malformed text are BNErrors, never guesses."""
    where = f" {path}" if path else ""
    try:
        data = _parse_json(text, where) if is_json else _parse_yaml(text, where)
    except RecursionError:
        raise BNError(f"network spec{where} is nested too deeply (at most {MAX_DEPTH} levels)") from None
    check_depth(data, f"network spec{where}")
    return data


def check_depth(data, what: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` (walked without recursion)."""
    stack = [(data, 0)]
    while stack:
        x, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BNError(f"{what} is nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(x, dict):
            stack += [(v, depth + 1) for v in x.values()]
        elif isinstance(x, list):
            stack += [(v, depth + 1) for v in x]


def _parse_json(text: str, where: str):
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _no_duplicates(pairs, where))
    except json.JSONDecodeError as e:
        raise BNError(f"network spec{where} is not valid JSON: {e}") from None


def _parse_yaml(text: str, where: str):
    import yaml

    class StrictLoader(yaml.SafeLoader):  # safe_load that refuses a key given twice and every alias
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):  # aliases share nodes: a few lines expand exponentially
                anchor = self.peek_event().anchor
                raise BNError(f"network spec{where} uses the YAML alias *{anchor}: aliases are not supported "
                              "(write the value out)")
            return super().compose_node(parent, index)

    def mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        pairs = [(loader.construct_object(k, deep=deep), loader.construct_object(v, deep=deep)) for k, v in node.value]
        return _no_duplicates(pairs, where)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    # YAML 1.1 reads the state names no/yes/on/off as booleans: keep only true/false as booleans
    bool_tag = "tag:yaml.org,2002:bool"
    StrictLoader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != bool_tag]
                                            for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    StrictLoader.add_implicit_resolver(bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506  a SafeLoader subclass
    except yaml.YAMLError as e:
        raise BNError(f"network spec{where} is not valid YAML: {' '.join(str(e).split())}") from None
    except TypeError as e:  # an unhashable key such as a list
        raise BNError(f"network spec{where} has a bad key: {e}") from None


def to_spec(net: BayesNet) -> dict:
    """The inverse of :func:`load_spec`: a JSON/YAML-ready dict."""
    graph, states = net.graph.to_dict(), _state_names(net)
    return {
        "nodes": {
            n: {"states": list(states[m]), "parents": graph["parents"][m], "cpt": net.cpts[m].tolist()}
            for m, n in enumerate(graph["names"])
        }
    }
