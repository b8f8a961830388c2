#!/usr/bin/env python3
"""Regenerates the committed seed corpora, fuzz/corpus/<target>/seed-*.

Sources: the stanza fixtures (fixtures/stanzas/good and bad, fixtures/stream; `.gen` recipes
are left out, they expand to megabytes), the suite's scenario files, the E2EE layer itself
(e2ee_envelope: envelopes, bundles and device lists of the target's fixed devices, written out
by `cargo test`), and the stanzas a run of the suite exchanged, read from the transcripts of
its report.json files:

    cargo run --release -p gatecheck -- run --report-dir target/seed-run
    python3 fuzz/seed_corpora.py target/seed-run/*/report.json

Without report files only the fixture and scenario seeds are written. Existing seed-* files
are replaced; regress-* files (inputs that once found a bug) and whatever libFuzzer added are
left alone. Names are stable, so rerunning on the same inputs changes nothing.
"""

import hashlib
import json
import re
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
TARGETS = [
    "stanza_parse",
    "stanza_tree",
    "stanza_differential",
    "noise_frames",
    "scenario_file",
    "e2ee_envelope",
]
# Per target and source, at most this many seeds (a few hundred files in all).
CAP = 40
MAX_SEED_BYTES = 16 * 1024
# stanza_parse: the first byte chooses where the input is cut (0x80: the middle).
CUT = b"\x80"


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def digest(data):
    return hashlib.sha1(data).hexdigest()[:10]


class Seeds:
    def __init__(self):
        self.files = {t: {} for t in TARGETS}

    def add(self, target, name, data):
        if not data or len(data) > MAX_SEED_BYTES:
            return
        known = self.files[target]
        if any(existing == data for existing in known.values()):
            return
        known[f"seed-{slug(name)}-{digest(data)}"] = data

    def write(self):
        for target, files in self.files.items():
            folder = CORPUS / target
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("seed-*"):
                old.unlink()
            for name, data in sorted(files.items()):
                (folder / name).write_bytes(data)
            print(f"{target}: {len(files)} seeds")


def fixtures(seeds):
    for kind in ["good", "bad"]:
        for path in sorted((ROOT / "fixtures" / "stanzas" / kind).iterdir()):
            if path.suffix in (".xml", ".bin"):
                data = path.read_bytes()
                name = f"fixture-{kind}-{path.stem}"
                seeds.add("stanza_parse", name, CUT + data)
                seeds.add("stanza_differential", name, data)
                seeds.add("stanza_tree", name, data)
    for path in sorted((ROOT / "fixtures" / "stream").glob("*.xml")):
        seeds.add("stanza_parse", f"fixture-stream-{path.stem}", CUT + path.read_bytes())
    for path in sorted((ROOT / "scenarios").rglob("*.toml")):
        name = "scenario-" + str(path.relative_to(ROOT / "scenarios").with_suffix(""))
        seeds.add("scenario_file", name, path.read_bytes())


def noise_ops(chunks):
    """The noise_frames encoding: op 1 (`send`) for each chunk of at most 255 bytes."""
    out = bytearray()
    for chunk in chunks:
        for i in range(0, len(chunk), 255):
            part = chunk[i : i + 255]
            out += bytes([1, len(part)]) + part
    return bytes(out)


def noise_fixed(seeds):
    stanza = b"<message to='a@b'><body>hi</body></message>"
    header = (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='gk.gatecheck.test' version='1.0'>"
    )
    seeds.add("noise_frames", "sealed-stream", noise_ops([header, stanza]))
    # Each frame mode of send_framed (op 2 + 4 * mode index).
    for index, mode in enumerate(["split", "corrupt", "replay", "reorder", "truncate", "empty"]):
        op = bytes([2 + 4 * index, len(stanza)]) + stanza
        seeds.add("noise_frames", f"mode-{mode}", noise_ops([header]) + op)
    # Raw bytes: a length field announcing more than follows; a zero length.
    seeds.add("noise_frames", "raw-long-length", noise_ops([header]) + bytes([3, 4, 0xFF, 0xF0, 1, 2]))
    seeds.add("noise_frames", "raw-zero-length", noise_ops([header]) + bytes([3, 2, 0, 0]))


def e2ee(seeds):
    """e2ee_envelope: envelopes, bundles and device lists made by the E2EE layer itself from the
    target's fixed devices (gatecheck::fuzzing::e2ee_seeds), written out by the corpus test."""
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            ["cargo", "test", "-q", "-p", "gatecheck", "--test", "fuzz_corpus", "--",
             "e2ee_seeds_are_the_layers_own_and_decrypt"],
            cwd=ROOT, check=True, env={**os.environ, "GATECHECK_E2EE_SEEDS_OUT": out},
            stdout=subprocess.DEVNULL,
        )
        for path in sorted(Path(out).iterdir()):
            seeds.add("e2ee_envelope", path.name, path.read_bytes())


def transcripts(seeds, reports):
    streams, stanzas = [], []
    for report in reports:
        doc = json.loads(Path(report).read_text())
        for scenario in doc.get("scenarios", []):
            entries = scenario.get("transcript") or []
            for direction in ["from-iut", "to-iut"]:
                parts = [e["data"].encode() for e in entries if e.get("dir") == direction]
                if parts:
                    streams.append((f"run-{scenario['id']}-{direction}", parts))
                for part in parts:
                    text = part.strip()
                    if text.startswith(b"<") and not text.startswith((b"<?xml", b"<stream:stream", b"</stream")):
                        stanzas.append((f"run-{scenario['id']}", text))
    for name, parts in streams[:CAP]:
        seeds.add("stanza_parse", name, CUT + b"".join(parts))
        seeds.add("noise_frames", name, noise_ops(parts))
    # Stanzas: a few of each root element name, so the seeds are varied.
    per_root = {}
    for name, text in stanzas:
        root = re.match(rb"<([^\s/>]+)", text)
        key = root.group(1) if root else b""
        if per_root.get(key, 0) < 6 and len(seeds.files["stanza_differential"]) < 2 * CAP:
            before = len(seeds.files["stanza_differential"])
            seeds.add("stanza_differential", name, text)
            if len(seeds.files["stanza_differential"]) > before:
                per_root[key] = per_root.get(key, 0) + 1
                seeds.add("stanza_tree", name, text)


def main(argv):
    seeds = Seeds()
    fixtures(seeds)
    noise_fixed(seeds)
    e2ee(seeds)
    transcripts(seeds, argv[1:])
    seeds.write()


if __name__ == "__main__":
    main(sys.argv)
