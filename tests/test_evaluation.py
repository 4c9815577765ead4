"""The one evaluation loop (sozo.api.evaluate): typed options, provenance in eval.json, the league
table of the image families, the refusal to rank runs measured with different feature extractors,
and how the report and the gallery flag provenance."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import sozo
from sozo.cli import main
from sozo.errors import SozoError
from sozo.evaluation import Entry, EvalOptions, Row, Table, comparison_problem, provenance_note, render_table

from .helpers import tiny_options

SRC = Path(__file__).resolve().parents[1] / "src" / "sozo"
GAN = ["width=8", "latent_dim=16", "limit=400", "threads=1"]
VAE = ["hidden=[32]", "latent_dim=4", "limit=400", "threads=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A dcgan and a vae on the same 400 digits, and a gan on sklearn's 8x8 digits (other data)."""
    root = tmp_path_factory.mktemp("evaluation")
    quiet = dict(log=lambda m: None, **tiny_options(batch_size=32))
    return {"dcgan": sozo.train("dcgan", out=root / "dcgan", set=GAN, **quiet),
            "vae": sozo.train("vae", out=root / "vae", set=VAE, **quiet),
            "other": sozo.train("gan", "digits", out=root / "other", set=["g_hidden=[16]", "d_hidden=[16]",
                                                                           "limit=400", "threads=1"], **quiet)}


def test_two_image_families_share_one_table_and_eval_json_records_provenance(runs, capsys):
    dcgan, vae = runs["dcgan"], runs["vae"]
    assert main(["evaluate", str(dcgan.path), str(vae.path), "--n", "300", "--k", "5", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("measure"))
    assert str(dcgan.path) in header and str(vae.path) in header and "real floor" in header  # one table
    assert out.count("real floor") == 1 and "negative ELBO" in out and "FD-LeNet" in out
    elbo = next(line for line in out.splitlines() if line.startswith("negative ELBO"))
    assert elbo.split()[3] == "-" and re.match(r"^\d+\.\d\d$", elbo.split()[4])  # the gan has no ELBO: '-'
    assert re.search(r"best FD-LeNet: .*(dcgan|vae) \(", out)
    docs = {name: json.loads((r.path / "eval.json").read_text()) for name, r in (("dcgan", dcgan), ("vae", vae))}
    for name, ev in docs.items():
        p = ev["provenance"]
        assert p["sozo_version"] == sozo.__version__ and p["family"] == name and p["table"] == "images"
        assert p["seed"] == 2 and p["step"] == runs[name].trained_step() == ev["step"]
        ex = p["extractor"]
        assert ex["name"] == "LeNet-mnist-sample" and re.fullmatch(r"[0-9a-f]{16}", ex["hash"])
        assert {"fd", "kid", "precision", "recall"} <= set(ex["measures"])
        assert p["generated"] == {"count": 300, "what": "samples"} and ev["n_generated"] == 300
        ref = p["reference"]
        assert ref["split"] == "all" and ref["count"] == 400 == ev["n_real"]
        assert ref["data"] == "mnist-sample" and ref["holdout"] == 0.1
        assert ref["split_seed"] == 0 and ref["limit"] == 400
        assert p["options"]["n"] == 300 and p["options"]["raw"] is False and p["weights"] == "live"
        assert p["headline"] == {"key": "fd", "label": "FD-LeNet", "lower_is_better": True}
    assert docs["dcgan"]["provenance"]["extractor"]["hash"] == docs["vae"]["provenance"]["extractor"]["hash"]
    assert docs["vae"]["k"] == 5 and "neg_elbo" in docs["vae"] and "neg_elbo" not in docs["dcgan"]
    # the hash is the extractor's: the same weights give the same digest, other weights another
    import torch

    from sozo.metrics.features import LeNetExtractor, extractor_digest
    torch.manual_seed(0)
    a = LeNetExtractor(10)
    torch.manual_seed(0)
    b = LeNetExtractor(10)
    assert extractor_digest(a) == extractor_digest(b)
    with torch.no_grad():
        b.head[-1].bias[0] += 1
    b._sozo_digest = ""
    assert extractor_digest(a) != extractor_digest(b)


def test_runs_measured_with_different_extractors_are_refused(runs):
    dcgan, other = runs["dcgan"], runs["other"]
    (dcgan.path / "eval.json").unlink(missing_ok=True)
    with pytest.raises(SozoError, match="different feature extractors") as e:
        sozo.evaluate([dcgan.path, other.path], n=300, log=None)
    assert "LeNet-mnist-sample" in e.value.message and "LeNet-digits" in e.value.message
    assert "--inception-weights" in e.value.hint
    assert not (dcgan.path / "eval.json").exists()  # refused before anything is written
    # one at a time, each is measured (and its own eval.json says with what)
    res, _ = sozo.evaluate(other.path, n=300, log=None)
    assert res[str(other.path)]["provenance"]["extractor"]["name"] == "LeNet-digits"


def test_typed_options_reject_unknown_and_bad_values(runs):
    with pytest.raises(SozoError, match="unknown evaluate option 'smaples'") as e:
        sozo.evaluate(runs["dcgan"].path, smaples=10, log=None)
    assert "valid:" in e.value.hint and "inception_weights" in e.value.hint
    with pytest.raises(SozoError, match="unknown evaluate option 'bem'") as e:
        EvalOptions.build(bem=3)
    assert "did you mean 'beam'" in e.value.hint
    for bad in ({"n": 0}, {"k": "many"}, {"beam": 0}, {"seed": 1.5}):
        with pytest.raises(SozoError, match=list(bad)[0]):
            EvalOptions(**bad)
    opts = EvalOptions.build(EvalOptions(n=5, beam=2), n=None, seed=3)  # None: keep (the CLI passes every flag)
    assert (opts.n, opts.beam, opts.seed) == (5, 2, 3)
    with pytest.raises(SozoError, match="EvalOptions"):
        EvalOptions.build({"n": 3})  # type: ignore[arg-type]


def test_render_table_merges_rows_of_one_kind_and_names_the_best():
    base = Table("demo", rows=(Row("a", "A", "{:.1f}"),), headline="a", lower_is_better=False)
    more = base.with_rows(Row("b", "B", "{}"), notes=lambda rs: ["b: a family's own row"])
    text = render_table([Entry("r1", {"a": 1.0}, base), Entry("r2", {"a": 3.0, "b": 7}, more)])
    lines = text.splitlines()
    assert lines[0].split() == ["measure", "r1", "r2"]
    assert lines[2].split() == ["A", "1.0", "3.0"] and lines[3].split() == ["B", "-", "7"]
    assert "b: a family's own row" in text and "best A: r2 (3.0; higher is better)" in text


def _ev(name: str | None, digest: str | None) -> dict:
    ev = {"fd": 3.0, "measure": "FD-LeNet", "extractor": name}
    if digest is not None:
        ev["provenance"] = {"extractor": {"name": name, "hash": digest, "measures": ["fd"]}, "sozo_version": "x",
                            "seed": 0, "step": 1, "reference": {"split": "all", "count": 10, "data": "d"}}
    return ev


def test_comparison_problem_and_notes():
    assert comparison_problem({"a": _ev("L", "1" * 16), "b": _ev("L", "1" * 16)}) is None
    msg, keys = comparison_problem({"a": _ev("L", "1" * 16), "b": _ev("M", "2" * 16)})
    assert "different feature extractors" in msg and keys == {"fd"}
    msg, keys = comparison_problem({"a": _ev("L", "1" * 16), "b": _ev("L", None)})  # b: written by an older sozo
    assert "unknown provenance" in msg and msg.startswith("b:")
    assert comparison_problem({"a": _ev("L", "1" * 16), "b": {"bleu": 3.0}}) is None  # nothing to compare
    assert "Provenance unknown" in provenance_note(_ev("L", None))
    note = provenance_note(_ev("L", "1" * 16))
    assert "LeNet" not in note and "hash 111111111111" in note


def test_report_and_gallery_flag_provenance(runs, tmp_path):
    pytest.importorskip("flask")
    from sozo.gallery import Gallery, compare_context
    from sozo.viz.report import render_report

    dcgan, vae = runs["dcgan"], runs["vae"]
    sozo.evaluate([dcgan.path, vae.path], n=300, k=5, log=None)
    text = render_report(dcgan.path)
    assert "Provenance unknown" not in text and "hash " in text and "300 generated samples" in text
    old = json.loads((vae.path / "eval.json").read_text())
    old.pop("provenance")  # as the current main writes it
    (vae.path / "eval.json").write_text(json.dumps(old))
    text = render_report(vae.path)
    assert 'id="eval-provenance"' in text and "Provenance unknown" in text and "FD-LeNet" in text
    ctx = compare_context(Gallery(dcgan.path.parent), [dcgan.path, vae.path])
    fd = next(r for r in ctx["rows"] if r["label"] == "FD-LeNet")
    assert fd["unranked"] and not any(c and c["best"] for c in fd["cells"])  # shown, not ranked
    assert "unknown provenance" in ctx["comparison_note"]
    sozo.evaluate([dcgan.path, vae.path], n=300, k=5, log=None)  # measured again: ranked again
    ctx = compare_context(Gallery(dcgan.path.parent), [dcgan.path, vae.path])
    fd = next(r for r in ctx["rows"] if r["label"] == "FD-LeNet")
    assert not fd["unranked"] and sum(bool(c and c["best"]) for c in fd["cells"]) == 1 and not ctx["comparison_note"]


def _imports(path: Path) -> list[str]:
    """Every module a file imports (also inside functions), relative imports resolved against sozo."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    package = list(parts[:-1])  # a module's package; for __init__.py, the package itself
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out += [mod] + [f"{mod}.{a.name}" for a in node.names]
    return out


def test_no_family_or_measure_imports_the_api():
    offenders = [str(p.relative_to(SRC)) for folder in ("models", "metrics") for p in (SRC / folder).rglob("*.py")
                 if any(m == "sozo.api" or m.startswith("sozo.api.") for m in _imports(p))]
    assert offenders == []
    # and the modules the loop is made of do not import the API back
    for name in ("evaluation.py", "loading.py"):
        assert not any(m == "sozo.api" or m.startswith("sozo.api.") for m in _imports(SRC / name)), name


@pytest.mark.slow  # 21 s here: every image family trained and measured
def test_every_image_family_new_and_old_shares_the_league_table(runs, tmp_path, capsys):
    """ddpm, realnvp, pixelcnn and ebm join the GANs' and VAEs' one table: each run a column, each
    family's own rows beside the shared measures, '-' where a family has no such figure."""
    quiet = dict(log=lambda m: None, **tiny_options(batch_size=32))
    data = ["limit=400", "threads=1"]
    new = {"ddpm": ["base=8", "mults=[1,2]", "attn_levels=[]", "timesteps=20", "sample_steps=3", "ema=0",
                    "sample_every=0"],
           "realnvp": ["width=8", "couplings=1", "sample_every=0"],
           "pixelcnn": ["width=4", "layers=1", "head=8", "binarize=true", "sample_every=0"],
           "ebm": ["widths=[4,8]", "hidden=8", "steps=3", "sample_steps=3", "buffer_size=64", "sample_every=0"]}
    paths = [str(runs["dcgan"].path)] + [str(sozo.train(f, out=tmp_path / f, set=s + data, **quiet).path)
                                         for f, s in new.items()]
    assert main(["evaluate", *paths, "--n", "150", "--steps", "2"]) == 0  # FD needs more samples than 128 features
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("measure"))
    assert all(p in header for p in paths) and out.count("real floor") == 1  # one table, a column per run
    table = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines()]  # label, a cell per run, floor
    cells = {row[0]: row[1:] for row in table if len(row) == 7}
    assert cells["FD-LeNet"][:5] != ["-"] * 5 and len(cells) >= 9  # five runs and the real floor, one table
    nll = cells["NLL, exact (nats)"]  # pixelcnn's exact likelihood; the others have none
    assert nll[3] != "-" and [nll[i] for i in (0, 1, 2, 4)] == ["-"] * 4
    assert cells["sampler steps"][1] == "2" and cells["Langevin steps per sample"][4] == "2"  # --steps reached both
    assert cells["NLL, 8-bit dequantised (nats)"][2] != "-"  # realnvp's
    for p in paths:
        assert json.loads((Path(p) / "eval.json").read_text())["provenance"]["table"] == "images"
