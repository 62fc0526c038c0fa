"""Renderer versions: version 1 is frozen (same bytes as when the first study results were computed)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from derainlib.data import synthetic
from test_synthetic import _photo  # pytest puts tests/ on sys.path (rootdir-relative imports)

# sha256 (first 16 hex digits) of ``render(_photo(h, w, seed=1), domain, seed, ddn_type=t)`` computed
# with the renderer as it was before version 2 existed (commit 0c83086).
V1_HASHES: dict[str, str] = {
    "96x128|rain200l|None|0": "5b941715d3b59fd2",
    "96x128|rain200l|None|12345": "1029838d6fffa069",
    "96x128|rain200h|None|0": "365e369c16d93b14",
    "96x128|rain200h|None|12345": "a26038fb2bc3b8f5",
    "96x128|rain800|None|0": "034760c85535e351",
    "96x128|rain800|None|12345": "814b0f8293309c90",
    "96x128|ddn|1|0": "64ac7257b6565a96",
    "96x128|ddn|1|12345": "d6e0e45ba61f7b88",
    "96x128|ddn|7|0": "3e6a06172fba61b6",
    "96x128|ddn|7|12345": "f507705c7a15a912",
    "96x128|ddn|14|0": "1f48c7a30c4ef60f",
    "96x128|ddn|14|12345": "b971f4f8ceb97b45",
    "96x128|night|None|0": "44730cc42e9c66d9",
    "96x128|night|None|12345": "53239e9808bffad1",
    "96x128|snow|None|0": "a842700be12eaad7",
    "96x128|snow|None|12345": "ea3dab882230d8aa",
    "96x128|raindrop|None|0": "b830888b04319ea4",
    "96x128|raindrop|None|12345": "a4d4f3c619dfcc0c",
    "96x128|realproxy|None|0": "1e0c9d440699e00f",
    "96x128|realproxy|None|12345": "8717c6bf54548abd",
    "96x128|raincityscapes|None|0": "71595228b4010ed2",
    "96x128|raincityscapes|None|12345": "e12978c7d502f071",
    "61x47|rain200l|None|0": "40fb77d0e0120863",
    "61x47|rain200l|None|12345": "e2f8cd7fc58e7e86",
    "61x47|rain200h|None|0": "4031338e626decfa",
    "61x47|rain200h|None|12345": "299f295f6f9f29a4",
    "61x47|rain800|None|0": "f964f7528297f5a9",
    "61x47|rain800|None|12345": "02313e89debd02f4",
    "61x47|ddn|1|0": "e191298ca6ea0f7d",
    "61x47|ddn|1|12345": "bab5d470504a8965",
    "61x47|ddn|7|0": "7c07a16c6077a218",
    "61x47|ddn|7|12345": "bff77e8a1fccd7a1",
    "61x47|ddn|14|0": "9c2c0b0ef4e3f3f1",
    "61x47|ddn|14|12345": "56add745b059dc35",
    "61x47|night|None|0": "f78ae55afa8bfdab",
    "61x47|night|None|12345": "8955926c58ea16f8",
    "61x47|snow|None|0": "77e57477823f19b9",
    "61x47|snow|None|12345": "3f49bee192598b95",
    "61x47|raindrop|None|0": "e0dc1947fcc9fdda",
    "61x47|raindrop|None|12345": "ee5e5a7b776b4789",
    "61x47|realproxy|None|0": "041fb058b35e52ab",
    "61x47|realproxy|None|12345": "3be3cc70773dd8c9",
    "61x47|raincityscapes|None|0": "0efe9feddb19c66c",
    "61x47|raincityscapes|None|12345": "a07504475afc7f66",
}


@pytest.mark.parametrize("key", sorted(V1_HASHES))
def test_version_1_reproduces_the_original_bytes(key):
    shape, domain, ddn_type, seed = key.split("|")
    h, w = (int(v) for v in shape.split("x"))
    image = _photo(h, w, seed=1)
    t = None if ddn_type == "None" else int(ddn_type)
    rainy = synthetic.render(image, domain, int(seed), ddn_type=t, version=1)
    assert hashlib.sha256(rainy.tobytes()).hexdigest()[:16] == V1_HASHES[key]
