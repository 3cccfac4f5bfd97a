"""Serving layer: projects, members, API keys and scopes in the auth database (sqlite, real files)."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from workbench.errors import WorkbenchError
from workbench.serving.auth import AuthStore, Principal, api_key_from_headers
from workbench.serving.errors import AuthError, BadRequest, NotFound, ServingError


@pytest.fixture()
def store(tmp_path: Path) -> AuthStore:
    s = AuthStore(tmp_path / "auth.db")
    yield s
    s.close()


def test_project_owner_key_and_lifecycle(store: AuthStore, tmp_path: Path) -> None:
    owner_key = store.create_project("polar", owner="alice")
    assert owner_key.startswith("wb_") and len(owner_key) > 40
    # the key itself is never stored
    assert owner_key.encode() not in (tmp_path / "auth.db").read_bytes()
    p = store.authenticate(owner_key, project="polar", scope="serving:admin")
    assert p == Principal("polar", "alice", "owner", p.scopes, owner_key[:15])
    assert set(p.scopes) == {"serving:infer", "serving:admin", "processes:execute"}

    store.add_member("polar", "bob", role="data_scientist")
    bob = store.create_key("polar", "bob", scopes=["serving:infer"])
    assert store.authenticate(bob, project="polar", scope="serving:infer").user == "bob"
    with pytest.raises(AuthError) as e:
        store.authenticate(bob, project="polar", scope="serving:admin")
    assert e.value.status == 403 and "serving:admin" in str(e.value)
    # a data scientist may not hold the admin scope
    with pytest.raises(AuthError) as e:
        store.create_key("polar", "bob", scopes=["serving:admin"])
    assert e.value.status == 403

    keys = store.list_keys("polar")
    assert {k.user for k in keys} == {"alice", "bob"}
    assert all(k.prefix.startswith("wb_") and len(k.prefix) == 15 for k in keys)
    bob_prefix = next(k.prefix for k in keys if k.user == "bob")
    assert bob.startswith(bob_prefix + "_")
    info = store.revoke_key(bob_prefix)
    assert not info.active
    with pytest.raises(AuthError) as e:
        store.authenticate(bob, project="polar")
    assert e.value.status == 401 and "revoked" in str(e.value)
    assert [k.prefix for k in store.list_keys("polar", include_revoked=False)] == [owner_key[:15]]
    # a second store on the same file sees the same state (another server worker)
    other = AuthStore(store.url)
    with pytest.raises(AuthError):
        other.authenticate(bob)
    assert other.authenticate(owner_key).project == "polar"


def test_cross_project_and_unknown_keys(store: AuthStore) -> None:
    polar = store.create_project("polar", owner="alice")
    food = store.create_project("food", owner="carol")
    with pytest.raises(AuthError) as e:
        store.authenticate(food, project="polar")
    assert e.value.status == 403 and "food" in str(e.value)
    for bad in (None, "", "nonsense", "wb_0123456789ab_" + "x" * 43, polar[:-3] + "AAA"):
        with pytest.raises(AuthError) as e:
            store.authenticate(bad, project="polar")
        assert e.value.status == 401
    # removing a member revokes its keys
    store.add_member("polar", "dave", role="data_scientist")
    dave = store.create_key("polar", "dave", scopes="serving:infer,processes:execute")
    assert store.authenticate(dave, scope="processes:execute").user == "dave"
    store.remove_member("polar", "dave")
    with pytest.raises(AuthError) as e:
        store.authenticate(dave)
    assert e.value.status == 401


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda s: s.create_project("Bad Name", owner="a"), BadRequest, "project name"),
        (lambda s: s.create_project("ok", owner="a b"), BadRequest, "user name"),
        (lambda s: s.add_member("nosuch", "bob", role="owner"), NotFound, "nosuch"),
        (lambda s: s.add_member("polar", "bob", role="admin"), BadRequest, "role"),
        (lambda s: s.create_key("polar", "alice", scopes=["serving:root"]), BadRequest, "serving:root"),
        (lambda s: s.create_key("polar", "alice", scopes=[]), BadRequest, "scope"),
        (lambda s: s.create_key("polar", "zed", scopes=["serving:infer"]), AuthError, "not a member"),
        (lambda s: s.revoke_key("wb_zz"), BadRequest, "prefix"),
        (lambda s: s.revoke_key("wb_0123456789ab"), NotFound, "wb_0123456789ab"),
        (lambda s: s.create_project("polar", owner="x"), BadRequest, "exists"),
        (lambda s: s.authenticate("k", scope="root"), BadRequest, "scope"),
    ],
)
def test_malformed_input(store: AuthStore, call, exc, words) -> None:  # type: ignore[no-untyped-def]
    store.create_project("polar", owner="alice")
    with pytest.raises(exc) as e:
        call(store)
    assert isinstance(e.value, ServingError) and isinstance(e.value, WorkbenchError)
    assert words in str(e.value)


def test_header_parsing() -> None:
    assert api_key_from_headers({"Authorization": "ApiKey abc"}) == "abc"
    assert api_key_from_headers({"authorization": "Bearer  xyz "}) == "xyz"
    assert api_key_from_headers({"X-API-Key": "k1"}) == "k1"
    assert api_key_from_headers({"Authorization": "Basic Zm9v"}) is None
    assert api_key_from_headers({}) is None
    assert api_key_from_headers([("AUTHORIZATION", "apikey q")]) == "q"


def _make_keys(url: str, user: str, n: int) -> list[str]:
    s = AuthStore(url)
    return [s.create_key("polar", user, scopes=["serving:infer"]) for _ in range(n)]


def test_concurrent_writers(store: AuthStore) -> None:
    store.create_project("polar", owner="alice")
    for u in ("u1", "u2", "u3"):
        store.add_member("polar", u, role="data_scientist")
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.starmap(_make_keys, [(store.url, u, 5) for u in ("u1", "u2", "u3")])
    keys = [k for r in results for k in r]
    assert len(set(keys)) == 15
    with ThreadPoolExecutor(8) as ex:
        principals = list(ex.map(lambda k: store.authenticate(k, project="polar"), keys))
    assert sorted(p.user for p in principals) == sorted(["u1"] * 5 + ["u2"] * 5 + ["u3"] * 5)
    assert len(store.list_keys("polar")) == 16
