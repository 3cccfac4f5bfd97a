"""GeoSPARQL 1.0 and 1.1 Compliance Benchmark runner: any SPARQL endpoint, scored per requirement.

    python benchmarks/geosparql_compliance.py --suite ../shared/data/geosparql-compliance-1.0 \
        [--suite path/to/GeoSPARQLBenchmark] \
        [--endpoint http://127.0.0.1:8890/sparql --api-key KEY | (none: embedded workbench endpoints)] \
        [--profile benchmark|conformance-class|single]

A suite folder (the public benchmark, GPL-2.0: read in place, never copied) holds
``gsb_dataset/dataset.rdf`` (or ``.ttl``/``.nt``), ``gsb_queries/query-rNN-*.rq`` and
``gsb_answers/*.srx`` (expected answers, with ``-alternative-N`` variants); the
GeoSPARQL 1.0 suite has 206 tests of 30 requirements, the 1.1 suite 52 requirements
(and expanded template queries in ``gsb_querytemplates/result/``, read too when there).
``--suite`` also takes a checkout of the benchmark's repository: every suite under
``src/main/resources/`` (``geosparql10_compliance``, ``geosparql11_compliance``, or the
older ``gsb_*`` folders there) is run and reported, then both together. The version of a
suite comes from its folder or configuration file name (``geosparql11``), else from its
requirement numbers (a 1.0 suite stops at r30). The two suites number the same
conformance classes differently: the topology vocabulary extension is Req. 4-6 in 1.0 and
8-10 in 1.1, RDFS entailment 25-27 and 47-49, query rewrite 28-30 and 50-52.

The runner loads the dataset through the endpoint (SPARQL ``INSERT DATA``,
needs the API key; ``--no-load`` if it is loaded already), runs every query, compares
the answer with the expected ones (terms equal; WKT/GML literals equal when they
differ only in whitespace, case or CDATA markers; numeric literals equal by value;
order compared only under ``ORDER BY``; any alternative answer accepted) and prints
the score per requirement and in total. In the same run it scores pyoxigraph alone
(its built-in ``geof:`` functions, no rewriting) as the baseline; the last line is the
ratio.

Endpoint profiles (which system configuration answers which requirement):

* ``benchmark`` (default) -- what the benchmark's own runner does: the RDFS
  entailment extension's tests (1.0: Req. 25-27; 1.1: Req. 47-49) go to an endpoint
  with RDFS entailment, every other test to an endpoint without entailment (which
  still applies the query-rewrite extension).
* ``conformance-class`` -- each GeoSPARQL conformance class against the system
  configured for that class: as ``benchmark``, and in addition the topology
  vocabulary extension's tests (1.0: Req. 4-6; 1.1: Req. 8-10) go to an endpoint without the
  query-rewrite extension (asserted topological triples only), whose entailed
  answers would otherwise add rows those tests do not expect.
* ``single`` -- one endpoint (subclass entailment, query rewrite) answers everything.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyoxigraph as ox

_NS = "{http://www.w3.org/2005/sparql-results#}"
_GEO = "http://www.opengis.net/ont/geosparql#"
_GEOJSON = _GEO + "geoJSONLiteral"
_GEO_TYPES = {_GEO + "wktLiteral", _GEO + "gmlLiteral", _GEO + "kmlLiteral", _GEOJSON}
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
        if datatype == _GEOJSON:  # JSON: equal documents whatever their key order and spacing
            try:
                return ("literal", json.dumps(json.loads(value), sort_keys=True), datatype, None)
            except ValueError:
                pass
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

#: suite version -> conformance class -> its requirements (the two suites number them differently)
SUITE_REQUIREMENTS: dict[str, dict[str, frozenset[str]]] = {
    "1.0": {
        "rdfs": RDFS_ENTAILMENT_REQUIREMENTS,
        "rewrite": QUERY_REWRITE_REQUIREMENTS,
        "vocabulary": TOPOLOGY_VOCABULARY_REQUIREMENTS,
    },
    "1.1": {
        "rdfs": frozenset({"r47", "r48", "r49"}),
        "rewrite": frozenset({"r50", "r51", "r52"}),
        "vocabulary": frozenset({"r08", "r09", "r10"}),
    },
}
#: the last requirement number of the GeoSPARQL 1.0 suite
LAST_REQUIREMENT_10 = 30

#: system configurations: name -> GeoStore keyword arguments
CONFIGURATIONS: dict[str, dict[str, Any]] = {
    "single": {"entailment": "subclass", "query_rewrite": True},
    "rdfs": {"entailment": "rdfs", "query_rewrite": True},
    "plain": {"entailment": "none", "query_rewrite": True},
    "vocabulary": {"entailment": "none", "query_rewrite": False},
}
PROFILES = ("benchmark", "conformance-class", "single")


def configuration_for(name: str, profile: str, version: str = "1.0") -> str:
    """The system configuration (a key of :data:`CONFIGURATIONS`) that answers test ``name`` under ``profile``.

    ``version`` (``"1.0"`` or ``"1.1"``) is the suite's: it decides which requirement
    numbers belong to which conformance class.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: expected one of {', '.join(PROFILES)}")
    if version not in SUITE_REQUIREMENTS:
        raise ValueError(f"unknown suite version {version!r}: expected one of {', '.join(SUITE_REQUIREMENTS)}")
    if profile == "single":
        return "single"
    classes = SUITE_REQUIREMENTS[version]
    requirement = requirement_of(name)
    if requirement in classes["rdfs"]:
        return "rdfs"
    if profile == "conformance-class" and requirement in classes["vocabulary"]:
        return "vocabulary"
    return "plain"


def requirement_of(name: str) -> str:
    match = re.match(r"query-(r\d+)", name)
    return match.group(1) if match else name


@dataclass(frozen=True)
class Suite:
    """One compliance suite on disk: its version, dataset and (queries, answers) folder pairs."""

    version: str
    root: Path
    dataset: Path
    folders: tuple[tuple[Path, Path], ...]

    @property
    def title(self) -> str:
        return f"GeoSPARQL {self.version} compliance suite ({self.root})"


_DATASETS = ("dataset.rdf", "dataset.ttl", "dataset.nt", "dataset.owl")
_FORMATS = {".rdf": ox.RdfFormat.RDF_XML, ".owl": ox.RdfFormat.RDF_XML, ".xml": ox.RdfFormat.RDF_XML,
            ".ttl": ox.RdfFormat.TURTLE, ".nt": ox.RdfFormat.N_TRIPLES}


def rdf_format(path: Path) -> ox.RdfFormat:
    """The RDF format of a dataset file, from its suffix."""
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"dataset {path} has an unknown RDF suffix: expected one of {', '.join(_FORMATS)}") from None


def _suite_at(folder: Path) -> Suite | None:
    dataset = next((folder / "gsb_dataset" / n for n in _DATASETS if (folder / "gsb_dataset" / n).is_file()), None)
    queries = folder / "gsb_queries"
    if dataset is None or not queries.is_dir():
        return None
    folders = [(queries, folder / "gsb_answers")]
    expanded = folder / "gsb_querytemplates" / "result"
    if expanded.is_dir():
        answers = folder / "gsb_answertemplates" / "result"
        folders.append((expanded, answers if answers.is_dir() else folder / "gsb_answers"))
    return Suite(detect_version(folder), folder, dataset, tuple(folders))


def detect_version(folder: Path) -> str:
    """``"1.1"`` or ``"1.0"``: from the folder's or its configuration file's name, else from requirement numbers."""
    names = [folder.name.lower()] + [p.name.lower() for p in (folder / "gsb_config").glob("*.json")]
    if any("geosparql11" in n or "geosparql-11" in n or "geosparql-1.1" in n for n in names):
        return "1.1"
    if any("geosparql10" in n or "geosparql-10" in n or "geosparql-1.0" in n for n in names):
        return "1.0"
    numbers = [int(m.group(1)) for q in (folder / "gsb_queries").glob("query-r*.rq")
               if (m := re.match(r"query-r(\d+)", q.name))]
    return "1.1" if numbers and max(numbers) > LAST_REQUIREMENT_10 else "1.0"


def find_suites(path: Path) -> list[Suite]:
    """The suites at ``path``: a suite folder itself, or every suite of a checkout of the benchmark repository.

    Raises
    ------
    ValueError
        If ``path`` holds no suite (the message says what was looked for).
    """
    path = Path(path)
    here = _suite_at(path)
    if here is not None:
        return [here]
    candidates = [path / "src" / "main" / "resources", path / "resources", path]
    found: list[Suite] = []
    for base in candidates:
        if not base.is_dir():
            continue
        for folder in [base, *sorted(p for p in base.iterdir() if p.is_dir())]:
            suite = _suite_at(folder)
            if suite is not None and all(s.root != suite.root for s in found):
                found.append(suite)
        if found:
            break
    if not found:
        raise ValueError(
            f"{path} is not a GeoSPARQL compliance benchmark suite or checkout: expected gsb_dataset/dataset.rdf "
            "and gsb_queries/ in it, or in src/main/resources/geosparql1?_compliance/"
        )
    return sorted(found, key=lambda s: s.version)


def load_suite(suite: Path | Suite) -> list[tuple[str, str, list[tuple]]]:
    """``(name, query text, [expected answers])`` of a suite's requirement tests."""
    if not isinstance(suite, Suite):
        suite = find_suites(Path(suite))[0]
    tests = []
    seen: set[str] = set()
    for queries, answers_dir in suite.folders:
        for query_file in sorted(queries.glob("query-r*.rq")):
            name = query_file.stem
            if name in seen:
                continue
            seen.add(name)
            answers = [answers_dir / f"{name}.srx"]
            answers += sorted(answers_dir.glob(f"{name}-alternative-*.srx"))
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

    triples = list(ox.parse(path=str(dataset), format=rdf_format(dataset)))
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
    store.load(path=str(dataset), format=rdf_format(dataset))

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


def run_one(suite: Suite, args: argparse.Namespace) -> tuple[dict[str, bool], dict[str, bool] | None]:
    """Run one suite on the workbench endpoint(s) (and the baseline unless ``--no-baseline``); print its report."""
    tests = load_suite(suite)
    groups: dict[str, list[tuple[str, str, list[tuple]]]] = defaultdict(list)
    for test in tests:
        groups[configuration_for(test[0], args.profile, suite.version)].append(test)
    print(f"== {suite.title}: {len(tests)} tests ==")
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
                n = load_through_endpoint(url, suite.dataset, key)
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
    print(f"workbench endpoint, GeoSPARQL {suite.version}: {ok}/{total} tests ({100.0 * ok / max(total, 1):.1f} %), "
          f"requirement score {percentage:.1f} %")
    if args.no_baseline:
        return passed, None
    base = run_suite(tests, pyoxigraph_asker(suite.dataset))
    bok, btotal, bpercentage, _ = score(base)
    print(f"baseline pyoxigraph built-ins, GeoSPARQL {suite.version}: {bok}/{btotal} tests "
          f"({100.0 * bok / max(btotal, 1):.1f} %), requirement score {bpercentage:.1f} %")
    return passed, base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True, type=Path, action="append",
                        help="folder of a GeoSPARQL (1.0 or 1.1) compliance benchmark suite, or a checkout of the "
                             "benchmark repository (every suite in it is run); may be given more than once")
    parser.add_argument("--endpoint", help="SPARQL endpoint URL for every test (default: embedded workbench "
                        "endpoints, one per configuration the profile needs)")
    parser.add_argument("--rdfs-endpoint", help="endpoint with RDFS entailment for the RDFS entailment tests "
                        "(1.0: Req. 25-27, 1.1: Req. 47-49; default: --endpoint)")
    parser.add_argument("--vocabulary-endpoint", help="endpoint without query rewrite for the topology vocabulary "
                        "tests (1.0: Req. 4-6, 1.1: Req. 8-10) under --profile conformance-class "
                        "(default: --endpoint)")
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
    suites: list[Suite] = []
    for path in args.suite:
        try:
            suites.extend(find_suites(path))
        except ValueError as exc:
            parser.error(str(exc))
    if args.endpoint is not None and len(suites) > 1:
        parser.error("an external --endpoint holds one dataset: give one suite at a time")
    results = [(suite, *run_one(suite, args)) for suite in suites]

    ok = sum(sum(p.values()) for _, p, _ in results)
    total = sum(len(p) for _, p, _ in results)
    if len(results) > 1:
        print("== all suites ==")
        for suite, passed, base in results:
            line = f"GeoSPARQL {suite.version}: workbench {sum(passed.values())}/{len(passed)}"
            if base is not None:
                line += f", pyoxigraph built-ins {sum(base.values())}/{len(base)}"
            print(line)
    if args.no_baseline:
        print(f"geosparql_compliance_score: {100.0 * ok / max(total, 1):.1f}%")
        return 0
    bok = sum(sum(b.values()) for _, _, b in results if b is not None)
    btotal = sum(len(b) for _, _, b in results if b is not None)
    versions = "+".join(suite.version for suite, _, _ in results)
    print(f"geosparql_compliance_vs_pyoxigraph_builtin: {ok}/{total} vs {bok}/{btotal} = {ok / max(bok, 1):.2f}x"
          + (f" (GeoSPARQL {versions})" if len(results) > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
