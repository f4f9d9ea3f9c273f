"""Freely licensed recordings from Debian's game-music packages, fetched without installing anything, as a MixIT
corpus: ``trackformer data fetch-debian-music CACHE``.

Each package is downloaded with ``apt-get download PKG`` (or taken from ``--debs DIR``) into CACHE/debs/,
unpacked with ``dpkg -x`` into CACHE/packages/<pkg>/, the music inside .pk3 (zip) archives extracted beside them
(``<archive>.pk3.d/``), and the music files (audio under a music/, cdtracks/, audio/ or soundtrack folder) are
indexed with :func:`trackformer.data.corpus.index_music` into CACHE/corpus. CACHE/manifest.json records each
file's package, license (from the package's usr/share/doc/<pkg>/copyright), duration and split.

Packages of rhythm-game songs that ship separate instrument tracks, and the music21 corpus's non-Bach pieces,
are reserved for independent evaluation (shared/DESIGN.md §4): :data:`REFUSED` names them and they are never
fetched.
"""

import fnmatch
import glob
import json
import os
import re
import shutil
import subprocess
import zipfile

from trackformer.data.corpus import MUSIC_EXTENSIONS, find_music, index_music

# 16.5 h between them (226 recordings; Debian bookworm versions, indexed with this module); all in Debian main
PACKAGES = ("wesnoth-1.16-music", "ufoai-music", "nexuiz-music", "warzone2100-music", "singularity-music",
            "hyperrogue-music", "planetblupi-music-ogg", "drascula-music")
# name patterns never fetched, with why
REFUSED = {
    "fretsonfire*": "Frets on Fire song packs ship separate instrument tracks",
    "stepmania*": "StepMania song packs are rhythm-game songs reserved for evaluation",
    "performous*": "Performous song packs ship separate tracks",
    "ultrastar*": "UltraStar song packs ship separate tracks",
    "*music21*": "the music21 corpus's non-Bach pieces are reserved for evaluation",
}
MUSIC_DIRS = {"music", "cdtracks", "audio", "soundtrack", "soundtracks"}
ARCHIVE_SUFFIX = ".d"  # <name>.pk3 is extracted into <name>.pk3.d/
_FALLBACK = "use the rendered data instead (trackformer data render-songs)"


class DebianMusicError(RuntimeError):
    """apt-get or dpkg is missing or failed: the message is one line saying which and what to do."""


def check_packages(packages) -> list[str]:
    """``packages`` as a list of names; ValueError naming a reserved one (:data:`REFUSED`) or a malformed name."""
    packages = list(packages)
    if not packages:
        raise ValueError("no packages asked for")
    for pkg in packages:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", pkg):
            raise ValueError(f"{pkg!r} is not a Debian package name")
        for pattern, why in REFUSED.items():
            if fnmatch.fnmatchcase(pkg, pattern):
                raise ValueError(f"{pkg} is reserved for independent evaluation and never fetched: {why}")
    return packages


def _run(cmd: list[str], cwd: str, what: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise DebianMusicError(f"{cmd[0]} is not available on this system, so Debian's music cannot be fetched: "
                               f"{_FALLBACK}")
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
        hint = " (run `sudo apt-get update` once, then try again)" if cmd[0] == "apt-get" else ""
        raise DebianMusicError(f"{what} failed{hint}: {detail}; or {_FALLBACK}")


def fetch_deb(pkg: str, cache: str, debs: str | None = None) -> str:
    """Path of ``pkg``'s .deb: from ``debs`` (a folder of downloaded .deb files) if there, else CACHE/debs/
    (downloaded with ``apt-get download`` unless already there)."""
    for folder in (debs, os.path.join(cache, "debs")):
        found = sorted(glob.glob(os.path.join(folder, f"{glob.escape(pkg)}_*.deb"))) if folder else []
        if found:
            return found[-1]
    os.makedirs(os.path.join(cache, "debs"), exist_ok=True)
    _run(["apt-get", "download", pkg], os.path.join(cache, "debs"), f"apt-get download {pkg}")
    found = sorted(glob.glob(os.path.join(cache, "debs", f"{glob.escape(pkg)}_*.deb")))
    if not found:
        raise DebianMusicError(f"apt-get download {pkg} wrote no .deb file; or {_FALLBACK}")
    return found[-1]


def unpack(deb: str, dest: str) -> None:
    """``dpkg -x deb`` into ``dest`` (skipped if already done), then every .pk3 archive's music extracted into
    ``<archive>.pk3.d/``. Written to a temporary folder and renamed: ``dest`` is never half unpacked."""
    if os.path.isfile(os.path.join(dest, ".unpacked")):
        return
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    _run(["dpkg", "-x", os.path.abspath(deb), os.path.abspath(tmp)], tmp, f"dpkg -x {os.path.basename(deb)}")
    for archive in glob.glob(os.path.join(tmp, "**", "*.pk3"), recursive=True):
        try:
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():
                    if os.path.splitext(member)[1].lower() in MUSIC_EXTENSIONS and ".." not in member.split("/"):
                        z.extract(member, archive + ARCHIVE_SUFFIX)
        except zipfile.BadZipFile as e:
            raise ValueError(f"{archive} (in {os.path.basename(deb)}) is not a readable .pk3 archive: {e}") from e
    open(os.path.join(tmp, ".unpacked"), "w").close()
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)


def music_files(package_root: str) -> list[str]:
    """Audio files of an unpacked package (relative, "/"-separated) that sit in a music folder (music/,
    cdtracks/, audio/, soundtrack/): a game's sound effects are not music."""
    return [f for f in find_music(package_root) if MUSIC_DIRS & {d.lower() for d in f.split("/")[:-1]}]


def package_path(rel: str) -> str:
    """A file's path as installed: a member of an extracted archive sits where the archive is (``a/b.pk3.d/m/x``
    -> ``a/m/x``), which is how copyright files name them."""
    parts = rel.split("/")
    return "/".join(p for p in parts if not p.lower().endswith(".pk3" + ARCHIVE_SUFFIX))


# ------------------------------------------------------------------------------------------------ licenses
_TEXT_LICENSES = (  # for copyright files that are not machine-readable: (name, pattern over whitespace-joined text)
    ("GPL-2+", r"GNU General Public License.{0,200}?version 2.{0,120}?later version"),
    ("GPL-3+", r"GNU General Public License.{0,200}?version 3.{0,120}?later version"),
    ("CC-BY-SA-{}", r"Attribution-ShareAlike (\d\.\d)"),
    ("CC-BY-{}", r"Creative Commons Attribution (\d\.\d)"),
)


def parse_copyright(text: str) -> dict:
    """A Debian copyright file: ``{"machine_readable", "files": [(patterns, license)], "licenses": [...]}``.

    Machine-readable (DEP-5) files give each ``Files:`` paragraph's patterns and the first line of its
    ``License:`` field; other files give the licenses their text names (GPL-2+, CC-BY-SA-x.y, ...), first
    named first."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    machine = bool(paragraphs) and paragraphs[0].lstrip().startswith("Format:")
    files, licenses = [], []
    if machine:
        for para in paragraphs:
            fields, key = {}, None
            for line in para.splitlines():
                m = re.match(r"([A-Za-z-]+):(.*)", line)
                if m and not line[0].isspace():
                    key = m.group(1).lower()
                    fields[key] = m.group(2).strip()
                elif key is not None and key == "files":
                    fields[key] += " " + line.strip()
            lic = fields.get("license", "")
            if lic and lic not in licenses:
                licenses.append(lic)
            if "files" in fields and lic:
                files.append((fields["files"].split(), lic))
    else:
        flat = " ".join(text.split())
        found = []
        for name, pattern in _TEXT_LICENSES:
            m = re.search(pattern, flat, flags=re.IGNORECASE)
            if m:
                found.append((m.start(), name.format(*m.groups())))
        licenses = [name for _, name in sorted(found)]
    return {"machine_readable": machine, "files": files, "licenses": licenses}


def license_for(path: str, copyright_info: dict) -> tuple[str, str]:
    """(license, how it was found) of the installed file ``path`` (relative to the package root). DEP-5: the
    last ``Files:`` paragraph one of whose patterns matches the end of the path (``*`` matches every file);
    otherwise (or if no paragraph matches) the licenses the file names, all of them, joined with " or "."""
    parts = path.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    match = None
    for patterns, lic in copyright_info["files"]:
        for pattern in patterns:
            if any(fnmatch.fnmatchcase(t, pattern) for t in tails):
                match = (lic, f"copyright Files: {pattern}")
    if match:
        return match
    names = copyright_info["licenses"]
    if not names:
        return "unknown", "no license found in the copyright file"
    how = "copyright text (not machine-readable)" if not copyright_info["machine_readable"] else \
        "no Files: pattern matches; every License: of the copyright file"
    return " or ".join(names) if copyright_info["machine_readable"] else names[0], how


# ------------------------------------------------------------------------------------------------ the command
def fetch_debian_music(cache: str, *, packages=None, debs: str | None = None, corpus: str | None = None,
                       sample_rate: int = 44100, channels: int = 2, sample_format: str = "int16",
                       silence_db: float = -60.0, progress: bool = True) -> tuple[dict, dict]:
    """Fetches, unpacks and indexes ``packages`` (default :data:`PACKAGES`) under ``cache``; returns (manifest,
    corpus index) and writes CACHE/manifest.json. Idempotent: downloaded, unpacked and indexed files are
    reused. ValueError for a reserved package; DebianMusicError when apt-get or dpkg is missing or fails."""
    packages = check_packages(PACKAGES if packages is None else packages)
    if debs is not None and not os.path.isdir(debs):
        raise FileNotFoundError(f"--debs folder not found: {debs}")
    corpus = corpus or os.path.join(cache, "corpus")
    root = os.path.join(cache, "packages")
    os.makedirs(root, exist_ok=True)
    files, meta, per_package = [], {}, {}
    for pkg in packages:
        deb = fetch_deb(pkg, cache, debs)
        unpack(deb, os.path.join(root, pkg))
        copyright_path = os.path.join(root, pkg, "usr", "share", "doc", pkg, "copyright")
        try:
            with open(copyright_path, encoding="utf-8", errors="replace") as f:
                info = parse_copyright(f.read())
        except FileNotFoundError:
            info = {"machine_readable": False, "files": [], "licenses": []}
        found = music_files(os.path.join(root, pkg))
        if not found:
            raise ValueError(f"{pkg} ({os.path.basename(deb)}) holds no music files in a music folder")
        per_package[pkg] = {"deb": os.path.basename(deb), "copyright": f"usr/share/doc/{pkg}/copyright"}
        for rel in found:
            lic, how = license_for(package_path(rel), info)
            name = f"{pkg}/{rel}"
            files.append(name)
            meta[name] = {"package": pkg, "package_path": package_path(rel), "license": lic, "license_from": how}
    index = index_music(root, corpus, sample_rate=sample_rate, channels=channels, sample_format=sample_format,
                        silence_db=silence_db, files=files, meta=meta, progress=progress)
    songs = {s["name"]: s for s in index["songs"]}
    manifest_files = []
    for name in files:
        song = songs.get(name)
        manifest_files.append({"path": name, **meta[name], "duration": song and song["duration"],
                               "split": song and song["split"],
                               "skipped": None if song else next(s["reason"] for s in index["skipped"]
                                                                 if s["path"] == name)})
    for pkg, entry in per_package.items():
        mine = [f for f in manifest_files if f["package"] == pkg and f["split"]]
        entry.update(files=len(mine), hours=sum(f["duration"] for f in mine) / 3600,
                     licenses=sorted({f["license"] for f in mine}),
                     split_hours={p: sum(f["duration"] for f in mine if f["split"] == p) / 3600
                                  for p in ("train", "valid", "test")})
    manifest = {"corpus": os.path.abspath(corpus), "packages": per_package, "files": manifest_files}
    tmp = os.path.join(cache, ".manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(cache, "manifest.json"))
    return manifest, index
