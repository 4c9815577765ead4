"""What `sozo evaluate` shares across families: typed options, the context a family measures in,
the table a family describes, and the provenance every eval.json records.

The loop is :func:`sozo.api.evaluate`: for each run it loads the model, rebuilds its config and
data (the run's own split, as training made it), calls ``model.measure(context, options)`` under a
fixed seed, writes RUN/eval.json (atomically) with a ``provenance`` block, and prints one table per
*table kind*. A family supplies only what it measures (``measure``) and its table (``eval_table``);
families whose tables share a kind (every image family: gan, dcgan, vae, conv-vae…) are compared in
one league table, a family adding its own rows (the VAE's ELBO).

This module imports neither torch nor the families, so the report and the gallery read provenance
with it.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import SozoError, did_you_mean
from .viz.table import text_table

_FROM_DATA: Any = object()  # use_reference's split_seed when not given: the loop reads it from the data

# measures of image eval.json files written before provenance existed: all depend on the extractor
LEGACY_EXTRACTOR_MEASURES = ("fd", "kid", "precision", "recall", "mode_entropy", "top_class_share")


# ------------------------------------------------------------------------------------------------
# options


@dataclass(frozen=True)
class EvalOptions:
    """The options of ``sozo evaluate`` (``sozo.evaluate(runs, n=…, seed=…)``), typed.

    ``n`` counts what a family generates or scores; None is the family's default:

    - image families (gan, dcgan, wgan…, ae, vae, conv-vae…): generated samples (10000);
    - musegan: generated phrases (at most 1000);
    - music-lstm: composed 8-bar pieces (32, at most 64: sampling is sequential);
    - seq2seq: at most this many sentence pairs of ``split`` (all of them);
    - qa: at most this many held-out questions (all of them);
    - text-lstm, text-gpt, pix2pix, cyclegan: not used (the whole held-out part is scored).
    """

    n: int | None = None
    seed: int = 0  # the sampling seed: the same seed gives the same samples and figures
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    inception_weights: str | None = None  # image families: Inception-v3 weights for the standard FID
    k: int = 100  # autoencoders: importance samples per held-out image for the NLL
    split: str | None = None  # seq2seq: the corpus split to translate and score (None: dev)
    beam: int = 1  # seq2seq: beam size (1: greedy)
    length_penalty: float = 0.6  # seq2seq: beam length penalty alpha
    bleu_tokenize: str = "none"  # seq2seq: sacrebleu's tokenizer (none: the corpus's own tokens)
    raw: bool = False  # measure the live weights even when the run kept an EMA of them
    steps: int | None = None  # ddpm, ebm: sampler steps (None: the run's sample_steps)
    # other real data to measure against: qa, a held-out file to score instead of the run's held-out articles;
    # image families, an image source (the run's own: the images it was not given, after its data.limit)
    data: str | None = None
    episodes: int | None = None  # world-model: episodes played in the real game (None: 100)

    def __post_init__(self) -> None:
        def whole(name: str, low: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise SozoError(f"evaluate option '{name}' must be a whole number at least {low}, got {v!r}")
        whole("n", 1, optional=True)
        whole("k", 1)
        whole("beam", 1)
        whole("steps", 1, optional=True)
        whole("episodes", 1, optional=True)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise SozoError(f"evaluate option 'seed' must be a whole number, got {self.seed!r}")
        if not isinstance(self.length_penalty, (int, float)) or isinstance(self.length_penalty, bool):
            raise SozoError(f"evaluate option 'length_penalty' must be a number, got {self.length_penalty!r}")
        if not isinstance(self.device, str):
            raise SozoError(f"evaluate option 'device' must be a string such as auto, cpu or cuda, got {self.device!r}")

    @classmethod
    def build(cls, options: EvalOptions | None = None, **keywords: Any) -> EvalOptions:
        """``options`` with ``keywords`` replacing its fields (None values are left out, as the CLI
        passes every flag); an unknown keyword is a SozoError naming the closest option."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in keywords:
            if key not in names:
                raise SozoError(f"unknown evaluate option '{key}'", hint=did_you_mean(key, names))
        given = {k: v for k, v in keywords.items() if v is not None}
        base = options if options is not None else cls()
        if not isinstance(base, EvalOptions):
            raise SozoError(f"options must be a sozo.evaluation.EvalOptions, got {type(base).__name__}",
                            hint="pass keywords instead, e.g. sozo.evaluate(run, n=1000)")
        return dataclasses.replace(base, **given) if given else base

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------
# the context a family measures in


@dataclass
class DataSplit:
    """A run's data as training made it: the family's data object, the resolved run config, the
    training and held-out tensors, and every example before the split (in the data's own order)."""

    data: Any
    config: Any
    train: dict[str, Any]
    heldout: dict[str, Any]
    examples: dict[str, Any]


class EvalContext:
    """What ``measure`` works with: the run, its rebuilt config, its data (loaded on first use, so a
    family that reads its corpus its own way does not pay twice), things shared across the runs of
    one ``evaluate`` call, and what the family records of the evaluation's provenance."""

    def __init__(self, run: Any, config: Any, device: Any, open_data: Callable[[], DataSplit],
                 shared: dict[Any, Any] | None = None, log: Callable[[str], Any] | None = None,
                 on_extractor: Callable[[dict[str, Any]], None] | None = None):
        self.run = run  # sozo.runs.Run
        self.config = config  # the RunConfig rebuilt from RUN/config.yaml
        self.device = device  # torch.device the model was loaded on
        self.log: Callable[[str], Any] = log or (lambda message: None)
        self._open = open_data
        self._split: DataSplit | None = None
        self._shared = shared if shared is not None else {}
        self._on_extractor = on_extractor
        self.extractor: dict[str, Any] | None = None
        self.reference: dict[str, Any] | None = None
        self.generated: dict[str, Any] | None = None

    # --- the run's data ----------------------------------------------------------------------
    @property
    def split(self) -> DataSplit:
        if self._split is None:
            self._split = self._open()
        return self._split

    @property
    def data(self) -> Any:
        """The family's data object (name, vocabularies, its own held-out part…)."""
        return self.split.data

    @property
    def heldout(self) -> dict[str, Any]:
        """The held-out tensors: the run's own split, as training made it."""
        return self.split.heldout

    @property
    def train(self) -> dict[str, Any]:
        return self.split.train

    @property
    def examples(self) -> dict[str, Any]:
        """Every example's tensors before the split, in the data's own order (train and held-out)."""
        return self.split.examples

    @property
    def data_loaded(self) -> bool:
        return self._split is not None

    # --- shared across runs ------------------------------------------------------------------
    def shared(self, key: Any, build: Callable[[], Any]) -> Any:
        """One ``build()`` per ``key`` for all the runs of this ``evaluate`` call (an image feature
        extractor and the real data's reference statistics, built once per dataset)."""
        if key not in self._shared:
            self._shared[key] = build()
        return self._shared[key]

    # --- provenance --------------------------------------------------------------------------
    def use_extractor(self, name: str, digest: str, measures: list[str] | tuple[str, ...]) -> None:
        """Record the feature extractor ``measures`` were computed with (``digest``: a hash of its
        definition and weights). ``evaluate`` refuses to put runs measured with different
        extractors into one table; it checks here, before the samples are drawn."""
        self.extractor = {"name": name, "hash": digest, "measures": list(measures)}
        if self._on_extractor is not None:
            self._on_extractor(self.extractor)

    def use_reference(self, split: str, count: int, split_by: str | None = None,
                      split_seed: int | None = _FROM_DATA) -> None:
        """Record what the measures compare with: ``split`` (heldout, all, dev, test…), how many real
        examples, and how the split was made (``split_by``, and ``split_seed``: the seed of a seeded
        split, None for a split without one). What is not given the loop reads from the data: its
        own held-out part, or the seeded shuffle of ``data.holdout`` (``sozo.loading.HOLDOUT_SEED``)."""
        self.reference = {"split": split, "count": int(count)}
        if split_by:
            self.reference["split_by"] = split_by
        if split_seed is not _FROM_DATA:
            self.reference["split_seed"] = split_seed

    def count_generated(self, count: int, what: str = "samples") -> None:
        """Record how many things the model made for the measures (samples, phrases, pieces, translations)."""
        self.generated = {"count": int(count), "what": what}


# ------------------------------------------------------------------------------------------------
# tables


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


@dataclass(frozen=True)
class Row:
    """One measure of a table: its key in eval.json, its label, how a value shows.

    ``label`` may be a function of the results in the table (e.g. the FD's name, FD-LeNet or FID);
    ``get`` reads the value from a column's dict (default: ``d[key]``).
    """

    key: str
    label: str | Callable[[list[dict[str, Any]]], str]
    fmt: str | Callable[[Any], str] = "{:.3f}"
    get: Callable[[dict[str, Any]], Any] | None = None

    def value(self, d: dict[str, Any] | None) -> Any:
        if d is None:
            return None
        return self.get(d) if self.get is not None else d.get(self.key)

    def cell(self, d: dict[str, Any] | None) -> str:
        v = self.value(d)
        if _missing(v):
            return "-"
        return self.fmt(v) if callable(self.fmt) else self.fmt.format(v)

    def title(self, results: list[dict[str, Any]]) -> str:
        return self.label(results) if callable(self.label) else self.label


@dataclass(frozen=True)
class Reference:
    """A column beside the runs: ``view`` gives, from a run's result, the dict its rows read
    (the real floor of the image measures, held-out music, random notes…); None: no such column."""

    name: str
    view: Callable[[dict[str, Any]], dict[str, Any] | None]


def _same(d: dict[str, Any]) -> dict[str, Any]:
    return d


@dataclass(frozen=True)
class Table:
    """How a family's results show in `sozo evaluate`'s table.

    Runs of families whose tables have the same ``kind`` go into one table (the league table of
    the image families); its rows are the union of their rows. ``headline`` names the measure a run
    is ranked by (``lower_is_better`` says which way). ``column`` gives what a run's column reads of
    its result; ``references`` add columns beside the runs; ``notes`` give lines under the table.
    """

    kind: str
    rows: tuple[Row, ...]
    headline: str | None = None
    lower_is_better: bool = True
    corner: str = "measure"
    column: Callable[[dict[str, Any]], dict[str, Any]] = _same
    references: tuple[Reference, ...] = ()
    notes: tuple[Callable[[list[dict[str, Any]]], list[str]], ...] = ()

    def with_rows(self, *rows: Row, notes: Callable[[list[dict[str, Any]]], list[str]] | None = None) -> Table:
        """This table with more rows (and notes): a family that measures more than its kind's measures."""
        return dataclasses.replace(self, rows=self.rows + rows, notes=self.notes + ((notes,) if notes else ()))


@dataclass
class Entry:
    """One measured run in a table: its name (column header), result, table, and reference key."""

    name: str
    result: dict[str, Any]
    table: Table
    reference: str = ""
    reference_name: str = ""


def render_table(entries: list[Entry]) -> str:
    """The text table of runs sharing one table kind, reference columns last, notes under it."""
    if not entries:
        return ""
    base = entries[0].table
    rows: list[Row] = []
    seen: set[str] = set()
    for e in entries:
        for r in e.table.rows:
            if r.key not in seen:
                seen.add(r.key)
                rows.append(r)
    results = [e.result for e in entries]
    columns: list[tuple[str, dict[str, Any] | None]] = [(e.name, base.column(e.result)) for e in entries]
    refs: dict[str, Entry] = {}
    for e in entries:  # reference columns once per reference data (several: named after their data)
        refs.setdefault(e.reference, e)
    for key, e in refs.items():
        suffix = f" ({e.reference_name or key})" if len(refs) > 1 else ""
        for ref in base.references:
            view = ref.view(e.result)
            if view is not None:
                columns.append((ref.name + suffix, view))
    cells = [[base.corner] + [name for name, _ in columns]]
    for row in rows:
        line = [row.cell(d) for _, d in columns]
        if all(c == "-" for c in line):
            continue
        cells.append([row.title(results)] + line)
    out = text_table(cells)
    notes: list[str] = []
    done: list[Callable] = []
    for e in entries:
        for fn in e.table.notes:
            if fn in done:
                continue
            done.append(fn)
            for note in fn([x.result for x in entries if fn in x.table.notes]):
                if note not in notes:
                    notes.append(note)
    best = _best_line(base, rows, entries)
    return "\n".join(out + notes + ([best] if best else []))


def _best_line(table: Table, rows: list[Row], entries: list[Entry]) -> str:
    """'best FD-LeNet: runs/b (12.345)' when two or more runs have the headline measure."""
    row = next((r for r in rows if r.key == table.headline), None)
    if row is None:
        return ""
    scored = [(row.value(table.column(e.result)), e) for e in entries]
    scored = [(v, e) for v, e in scored if isinstance(v, (int, float)) and not _missing(v)]
    if len(scored) < 2:
        return ""
    v, e = (min if table.lower_is_better else max)(scored, key=lambda t: t[0])
    way = "lower" if table.lower_is_better else "higher"
    title, cell = row.title([x.result for x in entries]), row.cell(table.column(e.result))
    return f"best {title}: {e.name} ({cell}; {way} is better)"


# ------------------------------------------------------------------------------------------------
# provenance, as the report and the gallery read it (any eval.json, old or new)


def provenance(ev: dict[str, Any] | None) -> dict[str, Any] | None:
    """The provenance block of an eval.json, or None (written before sozo recorded it)."""
    p = (ev or {}).get("provenance")
    return p if isinstance(p, dict) else None


def extractor_of(ev: dict[str, Any] | None) -> dict[str, Any] | None:
    """{name, hash, measures} of the feature extractor an eval.json's measures depend on; ``hash``
    None when the file predates provenance (an image eval.json naming only its extractor). None when
    its measures need no extractor (BLEU, perplexity, the music measures)."""
    if not ev:
        return None
    p = provenance(ev)
    if p is not None:
        ex = p.get("extractor")
        if isinstance(ex, dict) and ex.get("name"):
            return {"name": str(ex["name"]), "hash": ex.get("hash") or None, "measures": list(ex.get("measures") or [])}
        return None
    if isinstance(ev.get("extractor"), str):
        return {"name": ev["extractor"], "hash": None, "measures": [k for k in LEGACY_EXTRACTOR_MEASURES if k in ev]}
    return None


def short_hash(digest: str | None) -> str:
    return digest[:12] if digest else "unknown"


def comparison_problem(evals: dict[str, dict[str, Any] | None]) -> tuple[str, set[str]] | None:
    """Why the extractor-based measures of these runs ({name: eval.json}) cannot be ranked together,
    and which measures that concerns; None when they can (or at most one run has such measures)."""
    found = {name: ex for name, ex in ((n, extractor_of(ev)) for n, ev in evals.items()) if ex is not None}
    if len(found) < 2:
        return None
    keys = {k for ex in found.values() for k in ex["measures"]}
    unknown = [n for n, ex in found.items() if not ex["hash"]]
    if unknown:
        return (f"{', '.join(unknown)}: eval.json of unknown provenance (written by an older sozo: no "
                "feature-extractor hash), so its feature-based measures are not ranked against other runs; "
                "run `sozo evaluate` on it again to record it", keys)
    if len({ex["hash"] for ex in found.values()}) > 1:
        which = "; ".join(f"{n}: {ex['name']} {short_hash(ex['hash'])}" for n, ex in found.items())
        return (f"measured with different feature extractors ({which}): their feature-based measures "
                "cannot be compared", keys)
    return None


def provenance_note(ev: dict[str, Any] | None) -> str:
    """One sentence saying how an eval.json was measured (or that this is unknown)."""
    if not ev:
        return ""
    p = provenance(ev)
    if p is None:
        return ("Provenance unknown: this eval.json was written by an older sozo and records no "
                "feature-extractor hash or reference split; run `sozo evaluate` again to record them.")
    parts = []
    ex = p.get("extractor")
    if isinstance(ex, dict) and ex.get("name"):
        parts.append(f"features: {ex['name']} (hash {short_hash(ex.get('hash'))})")
    gen, ref = p.get("generated") or {}, p.get("reference") or {}
    if gen.get("count") is not None:
        parts.append(f"{gen['count']} generated {gen.get('what', 'samples')}")
    if ref:
        where = f"{ref.get('split', '?')} of {ref.get('data') or ref.get('source') or '?'}"
        if ref.get("count") is not None:
            where = f"{ref['count']} real examples ({where}"
            how = ref.get("split_by") or ""
            where += f"; {how})" if how else ")"
        parts.append(f"reference: {where}")
    weights = p.get("weights")
    if weights and weights != "live":
        parts.append(f"{weights} weights")
    parts.append(f"sozo {p.get('sozo_version', '?')}, seed {p.get('seed', '?')}, step {p.get('step', '?')}")
    return "Measured with " + "; ".join(parts) + "."


__all__ = ["EvalOptions", "EvalContext", "DataSplit", "Row", "Reference", "Table", "Entry", "render_table",
           "provenance", "extractor_of", "comparison_problem", "provenance_note", "short_hash"]
