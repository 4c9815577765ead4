"""Fuzzers over what a stranger's files reach (issue 21): config files, the run folder's JSON and
JSONL readers, and the archive extractor. Each may only succeed or raise a SozoError, never anything
else, and the extractor never writes outside its target. In the slow set (`make test-slow`)."""
from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sozo.config import build_run_config, load_yaml
from sozo.data.download import extract
from sozo.errors import SozoError
from sozo.registry import get_model
from sozo.runs import Run, read_model_json

pytestmark = pytest.mark.slow
FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

yaml_atoms = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                       st.none(), st.text(max_size=12))
yaml_keys = st.sampled_from(["model", "data", "train", "epochs", "batch_size", "width", "latent_dim", "image_size",
                             "lr_g", "seed", "source", "limit", "ema", "bogus", "preset"])
yaml_docs = st.recursive(yaml_atoms, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                              st.dictionaries(yaml_keys, inner, max_size=5)),
                         max_leaves=20)


@FUZZ
@given(doc=yaml_docs, noise=st.text(max_size=40))
def test_config_files_fail_only_with_clear_errors(tmp_path_factory, doc, noise):
    import yaml
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    text = yaml.safe_dump(doc) if noise == "" else yaml.safe_dump(doc) + noise
    path.write_text(text, encoding="utf-8")
    try:
        data = load_yaml(path)
        build_run_config("dcgan", get_model("dcgan"), data)
    except SozoError as e:
        assert e.message


json_values = st.recursive(st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=8), st.booleans(),
                                     st.none()),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=15)


@FUZZ
@given(value=json_values, raw=st.binary(max_size=60), depth=st.integers(0, 3000))
def test_run_folder_json_readers_fail_only_with_clear_errors(tmp_path_factory, value, raw, depth):
    run = Run(tmp_path_factory.mktemp("run"))
    (run.path / "model").mkdir()
    docs = (json.dumps(value).encode(), raw, b"[" * depth, json.dumps({"family": "dcgan", "config": value}).encode())
    for doc in docs:
        (run.model_dir / "config.json").write_bytes(doc)
        try:
            read_model_json(run)
        except SozoError as e:
            assert e.message
        try:
            import sozo
            sozo.load(run.path)
        except SozoError as e:
            assert e.message
    run.metrics_file.write_bytes(b"\n".join([json.dumps(value).encode(), raw, b"{" * depth, b'{"step": 1}']))
    records, bad = run.read_metrics()
    assert all(isinstance(r, dict) and isinstance(r.get("step", 0), int) for r in records)
    assert {"step": 1} in records and bad >= 0


member_names = st.one_of(st.sampled_from(["a.txt", "d/b.txt", "../up.txt", "/abs.txt", "d/../../x", "C:/win.txt",
                                          "./ok.txt", "d/", "..", "a\\..\\b"]),
                         st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12))


@FUZZ
@given(members=st.lists(st.tuples(member_names, st.binary(max_size=50),
                                  st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"])),
                        min_size=1, max_size=6),
       kind=st.sampled_from(["zip", "tar", "tar.gz"]), truncate=st.integers(0, 400))
def test_archive_extractor_never_writes_outside_its_target(tmp_path_factory, members, kind, truncate):
    root = tmp_path_factory.mktemp("arc")
    archive = root / f"a.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for name, data, what in members:
                info = zipfile.ZipInfo(name + ("/" if what == "dir" and not name.endswith("/") else ""))
                if what == "symlink":
                    info.external_attr = (0o120777 << 16)
                zf.writestr(info, data)
    else:
        with tarfile.open(archive, "w:gz" if kind == "tar.gz" else "w") as tf:
            for name, data, what in members:
                info = tarfile.TarInfo(name)
                info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                             "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[what]
                info.linkname = "../../etc/passwd" if what in ("symlink", "hardlink") else ""
                info.size = len(data) if what == "file" else 0
                tf.addfile(info, io.BytesIO(data) if what == "file" else None)
    if truncate:
        archive.write_bytes(archive.read_bytes()[:-truncate])
    target = root / "inside" / "target"
    before = {p for p in root.rglob("*")}
    try:
        extract(archive, target)
    except SozoError as e:
        assert e.message
    after = {p for p in root.rglob("*")} - before
    for p in after:
        assert p in (target, target.parent) or target in p.parents, f"{p} is outside {target}"
        assert not p.is_symlink()
    assert not Path("/abs.txt").exists()
