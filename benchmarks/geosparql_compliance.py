"""GeoSPARQL 1.0 Compliance Benchmark runner: any SPARQL endpoint, scored per requirement.

    python benchmarks/geosparql_compliance.py --suite ../shared/data/geosparql-compliance-1.0 \
        [--endpoint http://127.0.0.1:8890/sparql --api-key KEY | (none: embedded workbench endpoints)] \
        [--profile benchmark|conformance-class|single]

The suite folder (the public benchmark, GPL-2.0: read in place, never copied) holds
``gsb_dataset/dataset.rdf``, ``gsb_queries/query-rNN-*.rq`` (206 tests of 30
requirements) and ``gsb_answers/*.srx`` (expected answers, with ``-alternative-N``
variants). The runner loads the dataset through the endpoint (SPARQL ``INSERT DATA``,
needs the API key; ``--no-load`` if it is loaded already), runs every query, compares
the answer with the expected ones (terms equal; WKT/GML literals equal when they
differ only in whitespace, case or CDATA markers; numeric literals equal by value;
order compared only under ``ORDER BY``; any alternative answer accepted) and prints
the score per requirement and in total. In the same run it scores pyoxigraph alone
(its built-in ``geof:`` functions, no rewriting) as the baseline; the last line is the
ratio.

Endpoint profiles (which system configuration answers which requirement):

* ``benchmark`` (default) -- what the benchmark's own runner does: the RDFS
  entailment extension's tests (Req. 25-27) go to an endpoint with RDFS entailment,
  every other test to an endpoint without entailment (which still applies the
  query-rewrite extension).
* ``conformance-class`` -- each GeoSPARQL conformance class against the system
  configured for that class: as ``benchmark``, and in addition the topology
  vocabulary extension's tests (Req. 4-6) go to an endpoint without the
  query-rewrite extension (asserted topological triples only), whose entailed
  answers would otherwise add rows those tests do not expect.
* ``single`` -- one endpoint (subclass entailment, query rewrite) answers everything.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import pyoxigraph as ox

_NS = "{http://www.w3.org/2005/sparql-results#}"
_GEO_TYPES = {"http://www.opengis.net/ont/geosparql#wktLiteral", "http://www.opengis.net/ont/geosparql#gmlLiteral"}
_NUMERIC = {f"http://www.w3.org/2001/XMLSchema#{t}" for t in ("double", "float", "decimal", "integer", "int", "long")}
_STRING = "http://www.w3.org/2001/XMLSchema#string"

Term = tuple[str, str, str | None, str | None]


def _norm_geo(text: str) -> str:
    text = text.replace("<![CDATA[", "").replace("]]>", "")
    return re.sub(r"\s+", "", text).lower()


GEOMETRY_COMPARE = {"mode": "text"}


def _geometry_key(value: str, datatype: str) -> Any:
    """(CRS, canonical WKT) of a geometry literal: equal for equal vertex sets in any ring order/start."""
    import shapely

    from workbench.linked.geometry import parse_literal

    try:
        parsed = parse_literal(value.replace("<![CDATA[", "").replace("]]>", "").strip(), datatype)
    except Exception:  # noqa: BLE001 - an unparsable literal compares as text
        return _norm_geo(value)
    return parsed.crs, shapely.to_wkt(shapely.normalize(parsed.geom), rounding_precision=9)


def normalise(kind: str, value: str, datatype: str | None = None, lang: str | None = None) -> Any:
    """A comparable form of a result term."""
    if kind in ("uri", "bnode"):
        return (kind, value if kind == "uri" else "_")
    if datatype == _STRING:
        datatype = None
    if datatype in _GEO_TYPES:
        if GEOMETRY_COMPARE["mode"] == "normalized":
            return ("geometry", _geometry_key(value, datatype), datatype)
        return ("literal", _norm_geo(value), datatype, None)
    if datatype in _NUMERIC:
        try:
            return ("number", round(float(value), 9))
        except ValueError:
            pass
    return ("literal", value.strip(), datatype, (lang or "").lower() or None)


def parse_srx(text: str) -> tuple[list[dict[str, Any]] | None, bool | None]:
    """Rows (var -> normalised term) or the boolean of a SPARQL XML results document."""
    root = ET.fromstring(text.strip())
    boolean = root.find(f"{_NS}boolean")
    if boolean is not None:
        return None, (boolean.text or "").strip().lower() in ("true", "1")
    rows: list[dict[str, Any]] = []
    for result in root.iter(f"{_NS}result"):
        row: dict[str, Any] = {}
        for binding in result.findall(f"{_NS}binding"):
            term = binding[0]
            tag = term.tag.replace(_NS, "")
            if tag == "literal":
                row[binding.get("name")] = normalise(
                    "literal", term.text or "", term.get("datatype"),
                    term.get("{http://www.w3.org/XML/1998/namespace}lang"),
                )
            else:
                row[binding.get("name")] = normalise(tag, (term.text or "").strip())
        rows.append(row)
    return rows, None


def _from_json(data: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, bool | None]:
    if "boolean" in data:
        return None, bool(data["boolean"])
    rows = []
    for binding in data["results"]["bindings"]:
        rows.append({
            name: normalise("uri" if t["type"] == "uri" else "bnode" if t["type"] == "bnode" else "literal",
                            t["value"], t.get("datatype"), t.get("xml:lang"))
            for name, t in binding.items()
        })
    return rows, None


def _key(row: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in row.items()))


def same_answer(expected: tuple, actual: tuple, *, ordered: bool) -> bool:
    """Whether two (rows, boolean) answers match (order only when ``ordered``)."""
    (erows, ebool), (arows, abool) = expected, actual
    if erows is None or arows is None:
        return ebool is not None and ebool == abool
    if ordered:
        return [_key(r) for r in erows] == [_key(r) for r in arows]
    return Counter(map(_key, erows)) == Counter(map(_key, arows))


#: requirements of the RDFS entailment extension and of the query rewrite extension (GeoSPARQL 1.0 Annex A)
RDFS_ENTAILMENT_REQUIREMENTS = frozenset({"r25", "r26", "r27"})
QUERY_REWRITE_REQUIREMENTS = frozenset({"r28", "r29", "r30"})
TOPOLOGY_VOCABULARY_REQUIREMENTS = frozenset({"r04", "r05", "r06"})

#: system configurations: name -> GeoStore keyword arguments
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "single": {"entailment": "subclass", "query_rewrite": True},
    "rdfs": {"entailment": "rdfs", "query_rewrite": True},
    "plain": {"entailment": "none", "query_rewrite": True},
    "vocabulary": {"entailment": "none", "query_rewrite": False},
}
PROFILES = ("benchmark", "conformance-class", "single")


def configuration_for(name: str, profile: str) -> str:
    """The system configuration (a key of :data:`CONFIGURATIONS`) that answers test ``name`` under ``profile``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
    if profile == "single":
        return "single"
    requirement = requirement_of(name)
    if requirement in RDFS_ENTAILMENT_REQUIREMENTS:
        return "rdfs"
    if profile == "conformance-class" and requirement in TOPOLOGY_VOCABULARY_REQUIREMENTS:
        return "vocabulary"
    return "plain"


def requirement_of(name: str) -> str:
    match = re.match(r"query-(r\d+)", name)
    return match.group(1) if match else name


def load_suite(suite: Path) -> list[tuple[str, str, list[tuple]]]:
    """``(name, query text, [expected answers])`` of the 206 requirement tests."""
    tests = []
    for query_file in sorted((suite / "gsb_queries").glob("query-r*.rq")):
        name = query_file.stem
        answers = [suite / "gsb_answers" / f"{name}.srx"]
        answers += sorted((suite / "gsb_answers").glob(f"{name}-alternative-*.srx"))
        expected = [parse_srx(a.read_text(encoding="utf-8")) for a in answers if a.exists()]
        tests.append((name, query_file.read_text(encoding="utf-8"), expected))
    return tests


def run_suite(tests: list[tuple[str, str, list[tuple]]], ask: Callable[[str], tuple]) -> dict[str, bool]:
    """Run every test with ``ask(query) -> answer``; name -> passed."""
    passed: dict[str, bool] = {}
    for name, query, expected in tests:
        try:
            actual = ask(query)
        except Exception as exc:  # noqa: BLE001 - a failing query is a failed test
            print(f"  {name}: error {str(exc).splitlines()[0][:120]}", file=sys.stderr)
            passed[name] = False
            continue
        ordered = bool(re.search(r"(?i)\bORDER\s+BY\b", query))
        passed[name] = any(same_answer(e, actual, ordered=ordered) for e in expected)
    return passed


def score(passed: dict[str, bool]) -> tuple[int, int, float, dict[str, tuple[int, int]]]:
    """Tests passed, tests, requirement-averaged percentage, and per requirement (passed, total)."""
    per: dict[str, list[bool]] = defaultdict(list)
    for name, ok in passed.items():
        per[requirement_of(name)].append(ok)
    table = {r: (sum(v), len(v)) for r, v in sorted(per.items(), key=lambda kv: int(kv[0][1:]))}
    percentage = 100.0 * sum(p / t for p, t in table.values()) / max(len(table), 1)
    return sum(passed.values()), len(passed), percentage, table


def endpoint_asker(url: str) -> Callable[[str], tuple]:
    from SPARQLWrapper import JSON, SPARQLWrapper

    def ask(query: str) -> tuple:
        client = SPARQLWrapper(url)
        client.setQuery(query)
        client.setReturnFormat(JSON)
        client.setOnlyConneg(True)
        return _from_json(client.query().convert())

    return ask


def load_through_endpoint(url: str, dataset: Path, api_key: str | None) -> int:
    from SPARQLWrapper import POST, SPARQLWrapper

    triples = list(ox.parse(path=str(dataset), format=ox.RdfFormat.RDF_XML))
    body = "\n".join(f"{q.subject} {q.predicate} {q.object} ." for q in triples)
    client = SPARQLWrapper(url)
    client.setMethod(POST)
    if api_key:
        client.addCustomHttpHeader("Authorization", f"Bearer {api_key}")
    client.setQuery(f"INSERT DATA {{ {body} }}")
    client.query()
    return len(triples)


def pyoxigraph_asker(dataset: Path) -> Callable[[str], tuple]:
    """The baseline: pyoxigraph alone (built-in geof: functions, no rewriting)."""
    store = ox.Store()
    store.load(path=str(dataset), format=ox.RdfFormat.RDF_XML)

    def ask(query: str) -> tuple:
        result = store.query(query)
        if isinstance(result, ox.QueryBoolean):
            return None, bool(result)
        names = [v.value for v in result.variables]
        rows = []
        for solution in result:
            row = {}
            for n in names:
                t = solution[n]
                if t is None:
                    continue
                if isinstance(t, ox.NamedNode):
                    row[n] = normalise("uri", t.value)
                elif isinstance(t, ox.BlankNode):
                    row[n] = normalise("bnode", t.value)
                else:
                    row[n] = normalise("literal", t.value, t.datatype.value, t.language)
            rows.append(row)
        return rows, None

    return ask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True, type=Path, help="folder of the GeoSPARQL compliance benchmark")
    parser.add_argument("--endpoint", help="SPARQL endpoint URL for every test (default: embedded workbench "
                        "endpoints, one per configuration the profile needs)")
    parser.add_argument("--rdfs-endpoint", help="endpoint with RDFS entailment for Req. 25-27 (default: --endpoint)")
    parser.add_argument("--vocabulary-endpoint", help="endpoint without query rewrite for Req. 4-6 under "
                        "--profile conformance-class (default: --endpoint)")
    parser.add_argument("--api-key", help="API key for loading the dataset through the endpoint(s)")
    parser.add_argument("--no-load", action="store_true", help="the endpoint(s) already hold the dataset")
    parser.add_argument("--no-baseline", action="store_true", help="skip the pyoxigraph-only baseline")
    parser.add_argument("--profile", choices=PROFILES, default="benchmark",
                        help="which system configuration answers which requirement (see the module docstring)")
    parser.add_argument("--geometry-compare", choices=("text", "normalized"), default="text",
                        help="text: WKT/GML equal up to whitespace/case (as the benchmark); normalized: also "
                             "equal when the same geometry starts its rings elsewhere (GEOS vs JTS output order)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list failed tests")
    args = parser.parse_args(argv)

    GEOMETRY_COMPARE["mode"] = args.geometry_compare
    dataset = args.suite / "gsb_dataset" / "dataset.rdf"
    if not dataset.is_file() or not (args.suite / "gsb_queries").is_dir():
        parser.error(f"{args.suite} is not the GeoSPARQL compliance benchmark folder (gsb_dataset/, gsb_queries/)")
    tests = load_suite(args.suite)
    groups: dict[str, list[tuple[str, str, list[tuple]]]] = defaultdict(list)
    for test in tests:
        groups[configuration_for(test[0], args.profile)].append(test)

    servers = []
    urls: dict[str, str] = {}
    key = args.api_key
    if args.endpoint is None:
        import secrets
        import socket

        from workbench.linked.endpoint import EndpointServer
        from workbench.linked.store import GeoStore

        key = secrets.token_hex(8)
        for config in groups:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            server = EndpointServer(GeoStore(**CONFIGURATIONS[config]), port=port, api_key=key).start()
            servers.append(server)
            urls[config] = server.url
    else:
        for config in groups:
            urls[config] = {"rdfs": args.rdfs_endpoint, "vocabulary": args.vocabulary_endpoint}.get(config) \
                or args.endpoint
    passed: dict[str, bool] = {}
    try:
        loaded: set[str] = set()
        for config, group in groups.items():
            url = urls[config]
            if not args.no_load and url not in loaded:
                n = load_through_endpoint(url, dataset, key)
                loaded.add(url)
                what = f"embedded GeoStore{CONFIGURATIONS[config]}" if servers else "external endpoint"
                print(f"loaded {n} triples into {url} (configuration {config!r}: {what})")
            passed.update(run_suite(group, endpoint_asker(url)))
    finally:
        for server in servers:
            server.stop()
    passed = {name: passed[name] for name, _, _ in tests}

    ok, total, percentage, table = score(passed)
    print(f"profile: {args.profile}; geometry comparison: {args.geometry_compare}")
    print(f"{'requirement':<12} {'passed':>6} {'tests':>6}")
    for req, (p, t) in table.items():
        print(f"{req:<12} {p:>6} {t:>6}")
    if args.verbose:
        print("failed:", " ".join(name for name, good in passed.items() if not good))
    print(f"workbench endpoint: {ok}/{total} tests ({100.0 * ok / total:.1f} %), "
          f"requirement score {percentage:.1f} %")
    if args.no_baseline:
        print(f"geosparql_compliance_score: {100.0 * ok / total:.1f}%")
        return 0
    base = run_suite(tests, pyoxigraph_asker(dataset))
    bok, btotal, bpercentage, _ = score(base)
    print(f"baseline pyoxigraph built-ins: {bok}/{btotal} tests ({100.0 * bok / btotal:.1f} %), "
          f"requirement score {bpercentage:.1f} %")
    print(f"geosparql_compliance_vs_pyoxigraph_builtin: {ok}/{total} vs {bok}/{btotal} = {ok / max(bok, 1):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
