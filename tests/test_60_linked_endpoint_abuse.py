"""Issue 14 item 2-3: the SPARQL endpoint under load and abuse — killed queries, a fair bounded queue,
body limits before reading, counted 5xx, cached query plans. Real servers on loopback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import psutil
import pytest

from tests.conftest import free_port
from workbench.linked import EndpointServer, GeoStore
from workbench.linked.admission import Admission, QueueFull, WaitTimeout

ROOT = Path(__file__).resolve().parents[1]
CHEAP = "SELECT ?v WHERE { <http://x/5> <http://p/v> ?v }"
#: a three-way cartesian product of 1,500 triples: 3.4e9 rows to count, minutes of pyoxigraph work
EXPENSIVE = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?p ?b . ?c ?q ?d . ?e ?r ?f }"


def _fill(store: GeoStore, n: int = 1500) -> None:
    store.load_data("\n".join(f"<http://x/{i}> <http://p/v> {i} ." for i in range(n)), format="turtle")


def _wait_up(url: str, proc: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """``workbench sparql serve`` as a user starts it: a store on disk, 4 workers, a 2 s limit."""
    store_dir = tmp_path_factory.mktemp("abuse") / "store"
    _fill(GeoStore(store_dir))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "sparql", "serve", "--store", str(store_dir), "--port", str(port),
         "--timeout", "2", "--workers", "4", "--api-key", "k", "--max-query-bytes", "100000"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/sparql"
    try:
        _wait_up(url, proc)
        yield url, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _tree_cpu(server: psutil.Process, born_before: float) -> float:
    """CPU seconds of the server and of its worker processes started before ``born_before``."""
    total = 0.0
    for proc in [server] + server.children(recursive=True):
        try:
            if proc is not server and proc.create_time() > born_before:
                continue  # a replacement worker starting up is not the killed query
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def test_a_timed_out_query_stops_using_cpu_and_others_keep_being_served(served) -> None:
    """Tried as a user: four expensive queries past the limit kept computing and locked everyone out."""
    url, server = served
    started = time.time()

    async def expensive_burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as session:
            answers = await asyncio.gather(*(session.get(url, params={"query": EXPENSIVE}) for _ in range(4)))
        return [a.status_code for a in answers]

    t0 = time.monotonic()
    codes = asyncio.run(expensive_burst())
    assert codes == [503] * 4, codes
    assert time.monotonic() - t0 < 6, "the time limit (2 s) was not kept"
    time.sleep(0.3)
    before = _tree_cpu(server, started)
    time.sleep(1.5)
    used = _tree_cpu(server, started) - before
    assert used < 0.3, f"the server used {used:.2f} CPU seconds after its queries timed out"
    # right away, a cheap query of another user is answered
    t0 = time.monotonic()
    answer = httpx.get(url, params={"query": CHEAP}, headers={"accept": "text/csv"}, timeout=30)
    assert answer.status_code == 200 and answer.text.split() == ["v", "5"]
    assert time.monotonic() - t0 < 5
    stats = httpx.get(url.replace("/sparql", "/stats"), timeout=10).json()
    # one client holds at most workers - 1 = 3 workers: three queries were killed, the fourth never ran
    assert stats["isolation"] == "process" and stats["workers_killed"] == 3 and stats["refused_wait"] >= 1
    assert stats["errors_5xx"]["503"] >= 4


def test_updates_are_seen_by_the_worker_processes(served) -> None:
    url, _ = served
    insert = "INSERT DATA { <http://x/new> <http://p/v> 424242 }"
    assert httpx.post(url, content=insert, headers={"content-type": "application/sparql-update",
                                                    "authorization": "Bearer k"}, timeout=30).status_code == 204
    for _ in range(6):  # every worker, whichever answers
        answer = httpx.get(url, params={"query": "SELECT ?v WHERE { <http://x/new> ?p ?v }"},
                           headers={"accept": "text/csv"}, timeout=30)
        assert answer.text.split() == ["v", "424242"]


def test_a_huge_query_body_is_refused_while_it_streams_with_bounded_memory(served) -> None:
    """A 300 MB body (no length, chunked) to the query endpoint: 413 early, server memory stays bounded."""
    url, server = served
    rss_before = server.memory_info().rss
    sent = [0]

    def body():
        chunk = b"#" * (1 << 20)
        for _ in range(300):
            sent[0] += len(chunk)
            yield chunk

    answer = httpx.post(url, content=body(), headers={"content-type": "application/sparql-query"}, timeout=60)
    assert answer.status_code == 413 and "100000 bytes" in answer.text
    assert server.memory_info().rss - rss_before < 60 * 1024 * 1024
    # a declared length over the limit: answered before a byte of the body is sent
    host = urlparse(url)
    with socket.create_connection((host.hostname, host.port), timeout=10) as sock:
        sock.sendall(b"POST /sparql HTTP/1.1\r\nHost: x\r\nContent-Type: application/sparql-query\r\n"
                     b"Content-Length: 300000000\r\n\r\n")
        assert sock.recv(4096).split(b" ")[1] == b"413"
    # a form without the key is held to the query limit too
    answer = httpx.post(url, content=b"query=" + b"a" * 200_000,
                        headers={"content-type": "application/x-www-form-urlencoded"}, timeout=30)
    assert answer.status_code == 413


def test_one_clients_expensive_queries_do_not_starve_twenty_cheap_clients(tmp_path: Path) -> None:
    """An expensive-query client (127.0.0.2) and 20 cheap-query clients (127.0.0.1) at once."""
    store = GeoStore(tmp_path / "store")
    _fill(store)
    wait_bound = 3.0
    with EndpointServer(store, host="0.0.0.0", port=free_port(), timeout=3, workers=4, queue=64,
                        queue_wait=wait_bound) as srv:
        port = urlparse(srv.url).port
        heavy_url = f"http://127.0.0.2:{port}/sparql"
        cheap_url = f"http://127.0.0.1:{port}/sparql"

        async def heavy(session: httpx.AsyncClient) -> list[int]:
            answers = await asyncio.gather(*(session.get(heavy_url, params={"query": EXPENSIVE}) for _ in range(8)))
            return [a.status_code for a in answers]

        async def cheap(session: httpx.AsyncClient) -> list[tuple[int, float]]:
            out = []
            for _ in range(5):
                t0 = time.monotonic()
                answer = await session.get(cheap_url, params={"query": CHEAP})
                out.append((answer.status_code, time.monotonic() - t0))
            return out

        async def main() -> tuple[list[int], list[tuple[int, float]]]:
            transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
            async with httpx.AsyncClient(timeout=60, transport=transport) as heavy_session, \
                    httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=40)) as cheap_session:
                heavy_task = asyncio.create_task(heavy(heavy_session))
                await asyncio.sleep(0.3)  # the expensive queries hold their workers first
                cheap_results = await asyncio.gather(*(cheap(cheap_session) for _ in range(20)))
                return await heavy_task, [r for rs in cheap_results for r in rs]

        heavy_codes, cheap_results = asyncio.run(main())
        stats = httpx.get(srv.url.replace("/sparql", "/stats"), timeout=10).json()
    assert set(heavy_codes) == {503}
    codes = [code for code, _ in cheap_results]
    assert codes.count(200) == len(codes) == 100, {c: codes.count(c) for c in set(codes)}
    slowest = max(seconds for _, seconds in cheap_results)
    assert slowest < wait_bound + 1.0, f"a cheap query waited {slowest:.1f} s"
    assert stats["admitted"] >= 100


def test_plans_are_cached_until_the_next_write() -> None:
    store = GeoStore()
    _fill(store, 20)
    first = store.plan(CHEAP)
    assert store.plan(CHEAP) is first
    store.update("INSERT DATA { <http://x/5> <http://p/w> 1 }")
    assert store.plan(CHEAP) is not first
    assert [row["v"] for row in store.select(CHEAP)] == ["5"]


def test_in_memory_store_endpoint_answers_503_at_the_limit_and_refuses_process_isolation() -> None:
    store = GeoStore()
    _fill(store, 300)
    with pytest.raises(ValueError, match="needs a store on disk"):
        EndpointServer(store, port=free_port(), isolation="process")
    # threads cannot be stopped: the timed-out query keeps its worker until pyoxigraph ends it, the other serves
    with EndpointServer(store, port=free_port(), timeout=1.0, workers=2, per_client=2) as srv:
        t0 = time.monotonic()
        answer = httpx.get(srv.url, params={"query": EXPENSIVE}, timeout=30)
        assert answer.status_code == 503 and "limit of 1 s" in answer.text
        assert time.monotonic() - t0 < 3
        assert httpx.get(srv.url, params={"query": CHEAP}, timeout=30).status_code == 200


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "positive whole number"),
    (["--queue", "-1"], "0 or more"),
    (["--isolation", "fork"], "invalid choice"),
    (["--max-query-bytes", "x"], "invalid _positive_int value"),
])
def test_serve_options_are_checked(argv: list[str], message: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "sparql", "serve", "--store", str(tmp_path / "s"),
                             *argv], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert result.returncode == 2 and message in result.stderr


# ------------------------------------------------------------------ admission (pure asyncio)

def test_admission_queue_full_wait_bound_and_fair_order() -> None:
    async def main() -> None:
        admission = Admission(workers=2, queue=2, wait=0.2, per_client=1)
        await admission.acquire("a")
        await admission.acquire("b")
        waiting_a = asyncio.create_task(admission.acquire("a"))  # a is at its cap: waits
        waiting_c = asyncio.create_task(admission.acquire("c"))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await admission.acquire("d")  # two wait already
        admission.release("b")  # the slot goes to c (a is still at its cap), though a waited longer
        await asyncio.wait_for(waiting_c, 1)
        assert not waiting_a.done()
        with pytest.raises(WaitTimeout):
            await waiting_a
        assert admission.waiting == 0 and admission.busy == 2
        admission.release("a")
        admission.release("c")
        assert admission.busy == 0
        stats = admission.snapshot()
        assert (stats.refused_full, stats.refused_wait, stats.running) == (1, 1, {})

    asyncio.run(main())


@pytest.mark.parametrize("kwargs", [{"workers": 0, "queue": 1, "wait": 1}, {"workers": 1, "queue": -1, "wait": 1},
                                    {"workers": 1, "queue": 1, "wait": -1},
                                    {"workers": 1, "queue": 1, "wait": 1, "per_client": 0}])
def test_admission_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Admission(**kwargs)


def test_service_description_lists_what_the_store_evaluates() -> None:
    import pyoxigraph as ox

    from workbench.linked.endpoint import service_description

    full = service_description("http://127.0.0.1:1/sparql")
    plain = service_description("http://127.0.0.1:1/sparql", geosparql=False)
    for text in (full, plain):
        list(ox.parse(text.encode(), format=ox.RdfFormat.TURTLE))  # valid Turtle
    assert "geosparql/metricArea>" in full and "geosparql/aggUnion>" in full and "geosparql/sfWithin>" in full
    assert "extensionFunction" not in plain
    assert "UnionDefaultGraph" not in full  # the default graph is not the union of the named graphs
