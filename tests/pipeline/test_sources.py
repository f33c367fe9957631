"""The `sources` param: parsing, names, clear errors; the CLI's NAME=DIR folders."""

from __future__ import annotations

import pytest

from instropitch.devstack import demo
from instropitch.pipeline import etl
from instropitch.pipeline.etl import Source, SourceError


def test_prefix_names_the_source_and_name_equals_prefix_overrides():
    assert etl.parse_sources(["TinySOL/"]) == [Source("TinySOL", "TinySOL/")]
    assert etl.parse_sources(["TinySOL"]) == [Source("TinySOL", "TinySOL/")]
    assert etl.parse_sources(["fluid=renders/fluid", " mine = users/me/ "]) == [
        Source("fluid", "renders/fluid/"),
        Source("mine", "users/me/"),
    ]
    assert etl.parse_sources(["root="]) == [Source("root", "")]
    assert etl.parse_sources("TinySOL/") == [Source("TinySOL", "TinySOL/")]
    assert [s.spec for s in etl.parse_sources(["TinySOL/", "fluid=renders/fluid/"])] == [
        "TinySOL/",
        "fluid=renders/fluid/",
    ]
    assert etl.parse_sources(list(etl.DEFAULT_SOURCES)) == [Source("TinySOL", "TinySOL/")]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "sources is empty"),
        (None, "sources is empty"),
        (["data/TinySOL/"], "name it: 'NAME=data/TinySOL/'"),
        (["/"], "needs a name"),
        (["=x/"], "name before '=' is empty"),
        (["my set=x/"], "letters, digits"),
        ([".hidden=x/"], "start with a letter or digit"),
        (["-x/"], "start with a letter or digit"),
        (["x=A/", "x=B/"], "the name 'x' is given twice"),
        (["A/", "A=B/"], "the name 'A' is given twice"),
        (["a=X/", "b=X/"], "both read the prefix 'X/'"),
        ([3], "expected a string"),
    ],
)
def test_bad_sources_are_refused_with_the_reason(entries, message):
    with pytest.raises(SourceError, match=message.replace("(", r"\(").replace(".", r"\.")):
        etl.parse_sources(entries)


def test_the_old_prefix_param_still_means_one_source():
    assert etl.sources_from_params({"sources": ["TinySOL/"], "prefix": "other/"}) == [Source("other", "other/")]
    assert etl.sources_from_params({"sources": ["a/", "b/"]}) == [Source("a", "a/"), Source("b", "b/")]
    assert etl.sources_from_params({}) == [Source("TinySOL", "TinySOL/")]
    with pytest.raises(SourceError, match="either"):
        etl.sources_from_params({"sources": ["a/"], "prefix": "other/"})


def test_source_folders_for_the_cli(tmp_path):
    (tmp_path / "fluid").mkdir()
    assert demo.parse_source_folders([f"fluid={tmp_path / 'fluid'}"]) == {"fluid": tmp_path / "fluid"}
    for bad, message in [
        ("fluid", "expected NAME=DIR"),
        (f"TinySOL={tmp_path}", "already taken"),
        (f"a b={tmp_path}", "letters"),
        (f"x={tmp_path / 'nope'}", "not a folder"),
    ]:
        with pytest.raises(SourceError, match=message):
            demo.parse_source_folders([bad])
    assert demo.sources_conf(["TinySOL/", "fluid/"]) == '{"sources": ["TinySOL/", "fluid/"]}'
