"""python -m training.photos            # fetch once: Debian's wallpaper packages -> the photo cache
python -m training.photos --list     # the photos, their licences and which are held out

Large free photographs for training, from Debian's wallpaper packages (``apt-get download`` and ``dpkg -x`` into a
cache folder: no root, nothing installed). Only the photographs are kept (PHOTOS: the packages' rendered and
abstract art is left out, and gnome-backgrounds 43 holds none), each with its author and licence from the package's
``copyright`` file or ``metadata.json``. HELD_OUT names the files no model trains on: the second held-out set of the
evaluations (training/inpaint_eval.py ``--data held-out-photos``). scikit-learn's china.jpg and flower.jpg stay the
first evaluation set, and are never among these.

The cache is ``$GENRT_PHOTOS`` or ``~/.cache/genrt/photos``: ``original/`` holds the files as the packages ship them,
``prepared/`` each one as uint8 ``.npy`` with its shorter side at most MAX_SIDE (decoded once; a 5120x2880 PNG takes
a second). ``load()`` returns a Photos pool; ``random_crops(pool, n, crop)`` draws crops at every scale, from the
photo's shorter side down to ``crop`` pixels, so a network sees both whole-scene and full-resolution detail.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training import data as data_mod

__all__ = [
    "HELD_OUT",
    "PACKAGES",
    "PAINTINGS",
    "PHOTOS",
    "Photos",
    "cache_dir",
    "fetch",
    "load",
    "painting",
    "random_crops",
]

MAX_SIDE = 1440  # shorter side of the prepared photos (the originals are 1050-4000)

# Where each package keeps its photos; plasma's ship at many sizes (the largest, 2560x1600, is taken).
PACKAGES = {
    "lomiri-wallpapers-16.04": "usr/share/backgrounds/{}",
    "lomiri-wallpapers-20.04": "usr/share/backgrounds/{}",
    "mate-backgrounds": "usr/share/backgrounds/mate/nature/{}",
    "plasma-workspace-wallpapers": "usr/share/wallpapers/{}/contents/images/2560x1600.jpg",
}
_L16, _L20, _MATE, _KDE = PACKAGES  # short names for the table
# name -> (package, file (plasma: the wallpaper's folder), author, licence)
PHOTOS: dict[str, tuple[str, str, str, str]] = {
    "aitzgorri": (_L16, "aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    "bridge": (_L16, "Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0"),
    "dragonfly": (_L16, "Dragonfly_by_Bolly.jpg", "Bolly", "CC-BY-SA-4.0"),
    "free": (_L16, "free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
    "friends": (_L16, "friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    "life": (_L16, "life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    "picosdeeuropa": (_L16, "picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    "picture-0b": (_L16, "Picture_0B_by_freespace.jpg", "Trevor 'Freespace'", "CC-BY-4.0"),
    "picture-1a": (_L16, "Picture_1A_by_freespace.jpg", "Trevor 'Freespace'", "CC-BY-4.0"),
    "seeding": (_L16, "seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0"),
    "sunset": (_L16, "sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    "wine": (_L16, "Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0"),
    "kleiber": (_L20, "Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus", "CC-BY-SA-3.0"),
    "aqua": (_MATE, "Aqua.jpg", "Charles Barbin", "GPL-2+"),
    "blinds": (_MATE, "Blinds.jpg", "Lennart Poettering, Andrea Cimitan", "GPL-2+"),
    "dune": (_MATE, "Dune.jpg", "Marco Cogoni, Hylke Bons", "GPL-2+"),
    "garden": (_MATE, "Garden.jpg", "Charles Barbin", "GPL-2+"),
    "greenmeadow": (_MATE, "GreenMeadow.jpg", "Timothy Schellhase, Lapo Calamandrei", "GPL-2+"),
    "ladybird": (_MATE, "LadyBird.jpg", "Charles Barbin", "GPL-2+"),
    "raindrops": (_MATE, "RainDrops.jpg", "blackcombwhistler07", "GPL-2+"),
    "storm": (_MATE, "Storm.jpg", "Sergey Nazarov", "GPL-2+"),
    "twowings": (_MATE, "TwoWings.jpg", "Charles Barbin, Hylke Bons", "GPL-2+"),
    "wood": (_MATE, "Wood.jpg", "Jean-François Fortin Tam", "GPL-2+"),
    "yellowflower": (_MATE, "YellowFlower.jpg", "Charles Barbin", "GPL-2+"),
    "bythewater": (_KDE, "BytheWater", "Maciej Wiklo", "LGPL-3.0"),
    "coldripple": (_KDE, "ColdRipple", "Risto Saukonpää", "LGPL-3.0"),
    "darkesthour": (_KDE, "DarkestHour", "Risto Saukonpää", "LGPL-3.0"),
    "eveningglow": (_KDE, "EveningGlow", "Ian Hex", "LGPL-3.0"),
    "fallenleaf": (_KDE, "FallenLeaf", "Martin Klapetek", "LGPL-3.0"),
    "grey": (_KDE, "Grey", "Sigi Sagi", "LGPL-3.0"),
    "kite": (_KDE, "Kite", "Risto Saukonpää", "LGPL-3.0"),
    "onestandsout": (_KDE, "OneStandsOut", "Risto Saukonpää", "LGPL-3.0"),
    "path": (_KDE, "Path", "Risto Saukonpää", "LGPL-3.0"),
    "summer-1am": (_KDE, "summer_1am", "Risto Saukonpää", "LGPL-3.0"),
}

# Paintings, for style images only (``--style elephants``), never content or training photos: name -> (package,
# path inside the package, author, licence).
PAINTINGS: dict[str, tuple[str, str, str, str]] = {
    "elephants": (_MATE, "usr/share/backgrounds/mate/abstract/Elephants.jpg", "Wyng Stancikaite", "GPL-2+"),
}

# Never trained on: the second held-out set (a flower, a mountain landscape, boats at dusk, a dog on a porch).
HELD_OUT = ("garden", "picosdeeuropa", "eveningglow", "friends")


class PhotosMissing(data_mod.DataError):
    """The photo cache is empty: run ``python -m training.photos`` once (it needs the Debian archive)."""


def _use(name: str) -> str:
    """What a file is for, beside training: held out, or a style image only."""
    return "held out" if name in HELD_OUT else "style image only" if name in PAINTINGS else ""


def cache_dir() -> Path:
    return Path(os.environ.get("GENRT_PHOTOS") or Path.home() / ".cache" / "genrt" / "photos").expanduser()


def _member(name: str) -> str:
    """The photo's (or painting's) path inside its package."""
    if name in PAINTINGS:
        return PAINTINGS[name][1]
    package, file = PHOTOS[name][:2]
    return PACKAGES[package].format(file)


def painting(name: str) -> Path:
    """The file of one of PAINTINGS, fetched the first time."""
    if not _original(name).is_file():
        fetch([name], quiet=True)
    return _original(name)


def _original(name: str) -> Path:
    return cache_dir() / "original" / f"{name}{Path(_member(name)).suffix}"


def fetch(names=None, *, quiet: bool = False) -> Path:
    """Downloads the wallpaper packages that hold ``names`` (default: all PHOTOS and PAINTINGS; apt-get download, no
    root), keeps the files in the cache's ``original/`` and writes ``LICENSES.md`` beside them. Files already there
    are kept; the .deb files are deleted."""
    root = cache_dir()
    table = PHOTOS | PAINTINGS
    missing = [n for n in (table if names is None else names) if not _original(n).is_file()]
    if missing:
        packages = sorted({table[n][0] for n in missing})
        (root / "original").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            run = dict(cwd=tmp, check=True, capture_output=quiet)
            try:
                try:
                    subprocess.run(["apt-get", "download", *packages], **run)
                except subprocess.CalledProcessError:
                    if os.geteuid() != 0:
                        raise
                    subprocess.run(["apt-get", "update", "-q"], **run)  # a fresh machine may have no package lists
                    subprocess.run(["apt-get", "download", *packages], **run)
                for deb in sorted(Path(tmp).glob("*.deb")):
                    subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], **run)
            except (OSError, subprocess.CalledProcessError) as exc:
                raise data_mod.DataError(f"photos: could not fetch {' '.join(packages)}: {exc}") from None
            for name in missing:
                src = Path(tmp) / "x" / _member(name)
                if not src.is_file():
                    raise data_mod.DataError(f"photos: {table[name][0]} has no {_member(name)}")
                part = _original(name).with_suffix(".part")
                shutil.copyfile(src, part)
                part.replace(_original(name))
    lines = ["# Photos: author and licence (from each Debian package's copyright file or metadata.json)", ""]
    lines += ["| name | package | author | licence | use |", "|---|---|---|---|---|"]
    for name, (package, _, author, licence) in table.items():
        lines.append(f"| {name} | {package} | {author} | {licence} | {_use(name)} |")
    (root / "LICENSES.md").write_text("\n".join(lines) + "\n")
    return root


def _prepared_path(name: str) -> Path:
    return cache_dir() / "prepared" / f"{name}-{MAX_SIDE}.npy"


def _prepared(name: str) -> np.ndarray:
    """(H, W, 3) uint8 with the shorter side at most MAX_SIDE, decoded once and kept in the cache."""
    path = _prepared_path(name)
    if path.is_file():
        return np.load(path)
    src = _original(name)
    if not src.is_file():
        raise PhotosMissing(f"photos: {src} is missing; run `python -m training.photos` once to fetch the photos")
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        f = MAX_SIDE / min(im.size)
        if f < 1:
            im = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.LANCZOS)
        arr = np.array(im, dtype=np.uint8)  # a writable copy
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part.npy")
    np.save(part, arr)
    part.replace(path)
    return arr


class Photos:
    """The photos as (3, H, W) uint8 tensors: ``pool[i]`` gives one in [0, 1] float (what the skimage pools give),
    ``random_crops`` reads only the crop."""

    def __init__(self, names: list[str]):
        from training.style import _refuse_evaluation_images

        self.names = names
        self.images = [torch.from_numpy(_prepared(n)).permute(2, 0, 1).contiguous() for n in names]
        # one photo in float at a time (each is 37 MB as float; the list of all 30 would be 1.1 GB)
        _refuse_evaluation_images((self[i] for i in range(len(self))), names, "training photo")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].float() / 255.0


def load(split: str = "train") -> Photos:
    """``train``: every photo but HELD_OUT; ``held-out``: HELD_OUT only. Fetches the photos the first time."""
    if split not in ("train", "held-out"):
        raise data_mod.DataError(f"photos split: expected train or held-out, got {split!r}")
    names = [n for n in PHOTOS if (n in HELD_OUT) == (split == "held-out")]
    if not all(_original(n).is_file() or _prepared_path(n).is_file() for n in names):
        fetch(names, quiet=True)
    return Photos(names)


def random_crops(pool: Photos, n: int, crop: int, rotate: bool = True) -> torch.Tensor:
    """n crops (n, 3, crop, crop) in [0, 1]: a photo drawn uniformly, a square of side S drawn log-uniformly between
    ``crop`` and the photo's shorter side, resized to crop with an antialiased filter, mirrored with probability 1/2
    and, with ``rotate``, rotated by a multiple of 90 degrees (torch's global RNG; inpainting keeps the sky on top)."""
    out = []
    for _ in range(n):
        img = pool.images[int(torch.randint(len(pool), ()))]
        h, w = img.shape[-2:]
        lo, hi = np.log(crop), np.log(max(crop, min(h, w)))
        side = int(round(float(np.exp(lo + (hi - lo) * float(torch.rand(()))))))
        side = min(max(side, crop), h, w)
        top, left = int(torch.randint(h - side + 1, ())), int(torch.randint(w - side + 1, ()))
        c = img[:, top : top + side, left : left + side].float()[None] / 255.0
        if side != crop:
            c = F.interpolate(c, size=(crop, crop), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        c = c[0]
        if bool(torch.rand(()) < 0.5):
            c = c.flip(-1)
        out.append(torch.rot90(c, int(torch.randint(4, ())), dims=(1, 2)) if rotate else c)
    return torch.stack(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.photos", description=__doc__.split("\n\n")[1])
    ap.add_argument("--list", action="store_true", help="print the photos, licences and the held-out ones")
    args = ap.parse_args(argv)
    if args.list:
        for name, (package, _, author, licence) in (PHOTOS | PAINTINGS).items():
            print(f"{name:14} {package:28} {licence:13} {author}" + (f"  ({_use(name)})" if _use(name) else ""))
        return
    try:
        root = fetch()
        for name in PHOTOS:
            _prepared(name)  # the paintings stay files: style images are read at their own size
    except data_mod.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"{len(PHOTOS)} photos ({len(HELD_OUT)} held out) in {root}; licences in {root / 'LICENSES.md'}")


if __name__ == "__main__":
    main()
