"""The allowed-roots rule for paths users hand a server (chandra.paths)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chandra.errors import ChandraError
from chandra.paths import PathNotAllowedError, describe_path, resolve_allowed


@pytest.fixture
def tree(tmp_path):
    """allowed/{a.wav, sub/b.wav, link_out -> ../outside/secret, link_in -> sub/b.wav,
    dirlink -> ../outside}; outside/secret; a single allowed file elsewhere."""
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "a.wav").write_bytes(b"a")
    (allowed / "sub" / "b.wav").write_bytes(b"b")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("root:$6$hash:19000::")
    (allowed / "link_out").symlink_to(outside / "secret")
    (allowed / "link_in").symlink_to(allowed / "sub" / "b.wav")
    (allowed / "dirlink").symlink_to(outside)
    single = tmp_path / "examples" / "model.json"
    single.parent.mkdir()
    single.write_text("{}")
    (single.parent / "other.json").write_text("{}")
    return {"tmp": tmp_path, "allowed": allowed, "outside": outside, "single": single,
            "roots": [allowed, single]}


def test_inside_paths_resolve_to_real_absolute_paths(tree):
    allowed, roots = tree["allowed"], tree["roots"]
    assert resolve_allowed(allowed / "a.wav", roots) == (allowed / "a.wav").resolve()
    assert resolve_allowed(str(allowed / "sub" / ".." / "a.wav"), roots) == (allowed / "a.wav").resolve()
    # A link that stays inside resolves to its target.
    assert resolve_allowed(allowed / "link_in", roots) == (allowed / "sub" / "b.wav").resolve()
    # Relative to a base; a single-file root allows exactly that file.
    assert resolve_allowed("sub/b.wav", roots, base=allowed) == (allowed / "sub" / "b.wav").resolve()
    assert resolve_allowed(tree["single"], roots) == tree["single"].resolve()
    assert resolve_allowed(allowed, roots, kind="dir") == allowed.resolve()


@pytest.mark.parametrize("rel", [
    "../outside/secret",                 # dot-dot
    "sub/../../outside/secret",          # dot-dot after a real folder
    "link_out",                          # symlink to a file outside
    "dirlink/secret",                    # through a symlinked folder
    "../examples/other.json",            # beside a single-file root
])
def test_escapes_are_refused(tree, rel):
    with pytest.raises(PathNotAllowedError, match="outside the folders"):
        resolve_allowed(rel, tree["roots"], base=tree["allowed"])


def test_dotdot_after_a_link_is_judged_where_the_os_goes(tree):
    # The OS takes 'dirlink/..' as the parent of the link's *target* (tmp/),
    # not as allowed/; the rule follows the OS, not the text.
    allowed = tree["allowed"]
    assert resolve_allowed("dirlink/../allowed/a.wav", tree["roots"], base=allowed) == (allowed / "a.wav").resolve()
    with pytest.raises(PathNotAllowedError):
        resolve_allowed("dirlink/../allowed", [allowed / "sub"], base=allowed, kind="dir")


@pytest.mark.parametrize("typed", ["/etc/shadow", "/etc/passwd", "/proc/self/environ", "/", "~",
                                   "/nonexistent/file.wav"])
def test_absolute_system_paths_are_refused_without_being_read(tree, typed):
    with pytest.raises(PathNotAllowedError) as info:
        resolve_allowed(typed, tree["roots"])
    message = str(info.value)
    assert "outside the folders" in message
    assert "root:" not in message and "no such" not in message  # existence outside is not revealed


def test_missing_inside_and_wrong_kind(tree):
    allowed, roots = tree["allowed"], tree["roots"]
    with pytest.raises(ChandraError, match="no such file") as info:
        resolve_allowed(allowed / "missing.wav", roots)
    assert not isinstance(info.value, PathNotAllowedError)
    assert resolve_allowed(allowed / "missing.wav", roots, must_exist=False) == allowed.resolve() / "missing.wav"
    with pytest.raises(ChandraError, match="not a file"):
        resolve_allowed(allowed / "sub", roots)
    with pytest.raises(ChandraError, match="not a folder"):
        resolve_allowed(allowed / "a.wav", roots, kind="dir")
    # A link inside pointing outside is refused even when its target is missing.
    (allowed / "dangling").symlink_to(tree["outside"] / "gone")
    with pytest.raises(PathNotAllowedError):
        resolve_allowed(allowed / "dangling", roots, must_exist=False)


@pytest.mark.parametrize("typed", ["", "   ", "a\x00b", "x" * 5000])
def test_malformed_text(tree, typed):
    with pytest.raises(PathNotAllowedError):
        resolve_allowed(typed, tree["roots"])


def test_no_roots_allow_nothing(tree):
    with pytest.raises(PathNotAllowedError, match="allowed: none"):
        resolve_allowed(tree["allowed"] / "a.wav", [tree["tmp"] / "does-not-exist"])


def test_describe_path_is_one_printable_line():
    assert describe_path("a\nb\x1b[31m") == "a\\nb\\x1b[31m"
    long = describe_path("/x" * 500)
    assert len(long) <= 160 and "…" in long


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.sampled_from(["..", ".", "sub", "a.wav", "link_out", "dirlink", "link_in", "secret",
                                       "allowed", "outside", "", "~"]), min_size=1, max_size=8),
       absolute=st.booleans())
def test_property_result_is_always_inside_a_root(tmp_path_factory, parts, absolute):
    """Whatever combination of names, '..' and links is typed, an accepted
    path's real location lies inside a root."""
    base = _property_tree(tmp_path_factory)
    allowed = base / "allowed"
    text = ("/" if absolute else "") + "/".join(parts)
    try:
        out = resolve_allowed(text, [allowed], must_exist=False, base=allowed)
    except PathNotAllowedError:
        return
    real = Path(os.path.realpath(out))
    assert real == allowed.resolve() or allowed.resolve() in real.parents


_TREE: dict[str, Path] = {}


def _property_tree(factory) -> Path:
    if "base" not in _TREE:
        base = factory.mktemp("prop")
        allowed = base / "allowed"
        (allowed / "sub").mkdir(parents=True)
        (allowed / "a.wav").write_bytes(b"a")
        (base / "outside").mkdir()
        (base / "outside" / "secret").write_text("s")
        (allowed / "link_out").symlink_to(base / "outside" / "secret")
        (allowed / "dirlink").symlink_to(base / "outside")
        (allowed / "link_in").symlink_to(allowed / "a.wav")
        _TREE["base"] = base
    return _TREE["base"]
