"""The ``sozo`` command: parses, calls the API, prints. No model logic lives here.

User mistakes (SozoError) print one clear message and exit with status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from .errors import SozoError

EPILOG = """examples:
  sozo models
  sozo train dcgan --epochs 20 --seed 7
  sozo train wgan-gp --data path/to/images/ --epochs 50 --out runs/faces
  sozo train dcgan --resume runs/faces
  sozo sample runs/faces --n 64 --seed 1 --out grid.png
  sozo interpolate runs/faces --steps 10 --out walk.gif
  sozo train vae --epochs 30 && sozo reconstruct runs/vae-mnist-sample --out recon.png
  sozo latent-arith runs/vae-mnist-sample --add label=8 --subtract label=3 --out arith.png
  sozo evaluate runs/a runs/b
  sozo train seq2seq --data ../shared/data/small_parallel_enja --src ja --tgt en --epochs 15 --out runs/enja
  sozo translate runs/enja --beam 5 "海外に旅行に行きたい。"
  sozo evaluate runs/enja --split dev --beam 5
  sozo train text-lstm --data ../shared/data/aesop/aesop_fables.txt --epochs 20 --out runs/aesop
  sozo write runs/aesop --prompt "The Fox and the" --words 80 --temperature 0.5 --seed 1
  sozo evaluate runs/aesop
  sozo train music-lstm --out runs/bach
  sozo compose runs/bach --bars 16 --temperature 0.5 --seed 3 --out piece.mid   # or .musicxml, .wav, .png
  sozo report runs/faces
  sozo gallery runs/ --port 8765
  sozo stylize content.jpg style.jpg --out result.png --size 512 --steps 300
  sozo train pix2pix                          # bundled demo: digit sketch -> digit
  sozo train cyclegan --data path/to/apple2orange --batch-size 1
  sozo apply runs/cyclegan-apple2orange photo.jpg --out orange.jpg
"""


def _positive(name: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got '{text}'") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {value}")
        return value
    return parse


def cmd_models(args: argparse.Namespace) -> None:
    from .api import list_models
    items = list_models()
    width = max(map(len, items))
    for name, desc in items.items():
        print(f"{name:<{width}}  {desc}")


def cmd_train(args: argparse.Namespace) -> None:
    from .api import train
    from .training import distributed
    if args.nproc and args.nproc > 1:  # start torchrun with this same command, less --nproc
        if distributed.world_size() > 1:
            raise SozoError("--nproc starts torchrun itself, and this process already is one of a torchrun job",
                            hint="leave out --nproc under torchrun (--nproc-per-node sets the processes)")
        code = distributed.launch(args.nproc, distributed.without_nproc(args.argv)[0])
        if code:
            raise SystemExit(code)
        return
    run = train(args.model, args.data, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                out=args.out, resume=args.resume, config=args.config, set=args.set, device=args.device,
                progress=False if args.no_progress else None, log=lambda m: print(m, file=sys.stderr),
                src=args.src, tgt=args.tgt)
    if not distributed.is_main():
        return
    print(f"run folder: {run.path}")
    latest = sorted(run.samples_dir.glob("epoch-*")) if run.samples_dir.exists() else []
    if latest:
        print(f"latest samples: {latest[-1]}")


def cmd_sample(args: argparse.Namespace) -> None:
    from .api import load
    from .viz.grid import save_grid
    model = load(args.run, device=args.device)
    images = model.sample(args.n, seed=args.seed, labels=args.label)
    out = Path(args.out)
    _check_suffix(out, (".png", ".jpg", ".jpeg"))
    nrow = args.nrow
    if nrow is None and args.label is None and getattr(model.config, "conditional", False):
        nrow = model.config.num_classes
    save_grid(images, out, nrow=nrow)
    print(f"wrote {out} ({args.n} samples, seed {args.seed})")


def cmd_interpolate(args: argparse.Namespace) -> None:
    from .api import load
    model = load(args.run, device=args.device)
    out = Path(args.out)
    _check_suffix(out, (".gif", ".png"))
    if args.from_ is not None or args.to is not None:  # between two real images (autoencoders)
        if args.from_ is None or args.to is None:
            raise SozoError("--from and --to go together: the two held-out images to walk between",
                            hint="e.g. --from 3 --to 8 (indices of held-out images) or --from label=3 --to label=8")
        if not hasattr(model, "encode"):
            raise SozoError(f"'{model.family}' has no encoder, so --from/--to do not apply",
                            hint="without --from/--to, sozo interpolate walks between random latents; "
                                 "--from/--to work on ae, vae, conv-vae, beta-vae, cvae runs")
        if args.label is not None:
            raise SozoError("--label does not apply with --from/--to: the walk takes the two images' own labels")
        from .models.vae.tools import interpolate_between
        res = interpolate_between(args.run, args.from_, args.to, steps=args.steps, out=out, device=args.device)
        print(f"wrote {out} ({res['description']}, {args.steps} steps)")
        return
    if not hasattr(model, "write_interpolation"):
        raise SozoError(f"'{model.family}' models do not support interpolation")
    model.write_interpolation(out, steps=args.steps, paths=args.paths, seed=args.seed, labels=args.label)
    print(f"wrote {out} ({args.paths} walks of {args.steps} steps, seed {args.seed})")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .api import evaluate
    results, table = evaluate(args.runs, n=args.n, seed=args.seed, device=args.device,
                              inception_weights=args.inception_weights, k=args.k, split=args.split,
                              beam=args.beam, length_penalty=args.length_penalty, bleu_tokenize=args.bleu_tokenize,
                              log=lambda m: print(m, file=sys.stderr))
    print(table)
    for path in results:
        extra = " and modes.png" if "modes" in results[path] else ""
        print(f"wrote {Path(path) / 'eval.json'}{extra}")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from .models.vae.tools import reconstruct_grid
    out = Path(args.out)
    _check_suffix(out, (".png", ".jpg", ".jpeg"))
    res = reconstruct_grid(args.run, out, n=args.n, split=args.split, nrow=args.nrow, device=args.device)
    print(f"wrote {out} ({res['n']} {args.split} images, originals above their reconstructions; "
          f"mean BCE {res['bce']:.1f} nats per image)")


def cmd_latent_map(args: argparse.Namespace) -> None:
    from .models.vae.tools import latent_map
    out = Path(args.out)
    _check_suffix(out, (".png",))
    res = latent_map(args.run, out, n=args.n, split=args.split, grid=args.grid, device=args.device)
    how = " (PCA to 2-D)" if res["pca"] else ""
    print(f"wrote {out} ({res['n']} codes{how}{', with decoded codes beside' if res['manifold'] else ''})")


def cmd_latent_arith(args: argparse.Namespace) -> None:
    from .models.vae.tools import latent_arithmetic
    out = Path(args.out)
    _check_suffix(out, (".png", ".gif"))
    res = latent_arithmetic(args.run, add=args.add, subtract=args.subtract, out=out, attributes=args.attributes,
                            images=args.images, n=args.n, steps=args.steps, strength=args.strength,
                            seed=args.seed, device=args.device)
    print(f"wrote {out} ({res['n']} images, a row each: the original, then code + s * vector "
          f"for s = {', '.join(map(str, res['scales']))})")


def cmd_translate(args: argparse.Namespace) -> None:
    from .api import load
    texts = list(args.text)
    if args.file is not None:
        if texts:
            raise SozoError("give sentences as arguments or --file, not both")
        texts = _read_sentences(args.file)
    if not texts:
        raise SozoError("nothing to translate", hint='sozo translate RUN "海外に旅行に行きたい。" (or --file input.txt)')
    if args.file is None and any(not t.strip() for t in texts):
        raise SozoError("nothing to translate: an argument is empty", hint='quote the sentence: sozo translate RUN "…"')
    if args.attention_map:
        _check_suffix(Path(args.attention_map), (".png", ".pdf", ".svg"))
    model = load(args.run, device=args.device)
    if not hasattr(model, "translate"):
        raise SozoError(f"{args.run} is a '{model.family}' run; translate needs a seq2seq run",
                        hint="train one with sozo train seq2seq --data …")
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    keep = [i for i, t in enumerate(texts) if t.strip()]  # blank lines of a file stay blank in the output
    done = model.translate([texts[i] for i in keep], beam=args.beam, length_penalty=args.length_penalty,
                           max_len=args.max_len, log=log) if keep else []
    out = [""] * len(texts)
    for i, tr in zip(keep, done):
        out[i] = tr.text
        if args.show_tokens:
            unk = f"  (unknown: {' '.join(tr.unknown)})" if tr.unknown else ""
            log(f"{' '.join(tr.source_tokens)}  ->  {' '.join(tr.tokens)}  [log p {tr.score:.2f}]{unk}")
    for line in out:
        print(line)
    if args.attention_map:
        from .models.seq2seq.plot import save_attention_map
        base = Path(args.attention_map)
        for n, tr in enumerate(done, 1):
            if tr.attention is None:
                raise SozoError("this model has no attention (attention=none), so there is no map to draw")
            path = base if len(done) == 1 else base.with_name(f"{base.stem}-{n}{base.suffix}")
            rows = tr.tokens + (["</s>"] if tr.finished else [])
            save_attention_map(tr.source_tokens, rows, tr.attention, path, title=tr.text)
            log(f"wrote {path}")


def cmd_write(args: argparse.Namespace) -> None:
    from .api import load
    model = load(args.run, device=args.device)
    if not hasattr(model, "write"):
        raise SozoError(f"{args.run} is a '{model.family}' run; write needs a language-model run",
                        hint="train one with sozo train text-lstm --data book.txt")
    if args.interactive:
        return _write_interactive(model, args)
    temps = args.temperature or [1.0]
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    for i, t in enumerate(temps):
        text = model.write(args.prompt, tokens=args.words, temperature=t, top_k=args.top_k, top_p=args.top_p,
                           seed=args.seed, log=log if i == 0 else (lambda m: None))
        if len(temps) > 1:  # one line each, paragraph breaks shown as ¶
            print(f"[temperature {t:g}] " + text.replace("\n\n", " ¶ ").replace("\n", " "))
        else:
            print(text)


def _write_interactive(model, args: argparse.Namespace) -> None:  # model: a LanguageModel
    """Human-led writing: the model offers its likeliest next tokens, the person picks (a number,
    Enter for the first, or a typed word), 'u' takes the last pick back, 'q' (or end of input) ends.
    The exchange goes to standard error, the finished text to standard output."""
    say = lambda m="": print(m, file=sys.stderr, flush=True)  # noqa: E731
    ids = model.encode_prompt(args.prompt, say)
    start, marks = len(ids), []  # marks: lengths before each pick (for 'u')
    shown = {"\n": "¶ (new paragraph)", " ": "␣ (space)", "''": '"'}
    say("Pick the next word: its number, Enter for 1, or type your own; u takes the last pick back, q ends.")
    fresh = True
    while True:
        if fresh:  # the text so far (a paragraph break just chosen shows as ¶) and the choices after it
            text = model.text_of(ids) + (" ¶" if model.vocab.itos[ids[-1]] == "\n" and len(ids) > start else "")
            say("\n" + (text if len(text) <= 400 else "…" + text[-400:]))
            choices = model.next_word_choices(ids, args.choices)
            for n, (tok, p) in enumerate(choices, 1):
                say(f"  {n:>2}  {shown.get(tok, tok):<18} {p:6.1%}")
        fresh = False
        print(f"[1-{len(choices)} / word / Enter / u / q] ", end="", file=sys.stderr, flush=True)
        try:
            raw = input()
        except (EOFError, KeyboardInterrupt):
            break
        answer = raw.strip()
        if answer.lower() in ("q", "quit"):
            break
        if answer.lower() == "u":
            ids, fresh = (ids[:marks.pop()], True) if marks else (ids, False)
            continue
        if not answer or answer.isdigit():
            n = int(answer or 1)
            if not 1 <= n <= len(choices):
                say(f"  no choice {n}: pick 1-{len(choices)}")
                continue
            new = [model.vocab.stoi[choices[n - 1][0]]]
        else:
            try:
                new = model.typed_ids(raw)
            except SozoError as e:
                say(f"  {e.message}" + (f"; {e.hint}" if e.hint else ""))
                continue
            if not new:
                continue
        marks.append(len(ids))
        ids, fresh = ids + new, True
    say(f"\n({len(ids) - start} tokens added)")
    print(model.text_of(ids))


def cmd_compose(args: argparse.Namespace) -> None:
    from .api import compose
    controls = {k: getattr(args, k) for k in ("chords", "style", "melody", "groove")}
    given = {k: v for k, v in controls.items() if v is not None}
    piece = compose(args.run, args.out, bars=args.bars, seed=args.seed, temperature=args.temperature,
                    duration_temperature=args.duration_temperature, controls=controls if given else None,
                    device=args.device)
    extra = "".join(f", {k} {v}" for k, v in given.items())
    print(f"wrote {args.out} ({args.bars} bars, {len(piece.notes)} notes, {len(piece.parts)} "
          f"part{'s' if len(piece.parts) != 1 else ''}, seed {args.seed}{extra})")


def _read_sentences(name: str) -> list[str]:
    if name == "-":
        return sys.stdin.read().splitlines()
    path = Path(name)
    if not path.is_file():
        raise SozoError(f"no such file: {path}")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise SozoError(f"{path} is not UTF-8 text") from None


def cmd_data(args: argparse.Namespace) -> None:
    raise SozoError("which action?", hint="sozo data download tatoeba-jpn (or aesop)")


def cmd_data_download(args: argparse.Namespace) -> None:
    from .data.text import fetch_corpus
    path = fetch_corpus(args.name, url=args.url, sha256=args.sha256, force=args.force,
                        progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr))
    print(path)


def cmd_apply(args: argparse.Namespace) -> None:
    from .api import apply
    written = apply(args.run, args.images, out=args.out, folder=args.folder, reverse=args.reverse, size=args.size,
                    device=args.device, log=lambda m: print(m, file=sys.stderr))
    if len(written) == 1:
        print(f"wrote {written[0]}")
    else:
        print(f"wrote {len(written)} images to {args.out}")


def cmd_stylize(args: argparse.Namespace) -> None:
    from .api import stylize
    _check_suffix(Path(args.out), (".png", ".jpg", ".jpeg"))
    res = stylize(args.content, args.style, out=args.out, size=args.size, steps=args.steps, optimizer=args.optimizer,
                  lr=args.lr, content_weight=args.content_weight, style_weight=args.style_weight,
                  tv_weight=args.tv_weight, content_layer=args.content_layer, style_layers=args.style_layers,
                  init=args.init, pool=args.pool, preserve_colors=args.preserve_colors, style_scale=args.style_scale,
                  features=args.features, weights=args.weights, device=args.device, seed=args.seed,
                  threads=args.threads, progress_gif=args.progress_gif, log=lambda m: print(m, file=sys.stderr))
    for key in ("image", "before_after", "plot", "csv", "json", "gif"):
        if key in res.files:
            print(f"wrote {res.files[key]}")
    print(f"{res.features} features, {len(res.records)} steps, {res.seconds_per_step:.3f} s/step")
    if res.interrupted:
        raise KeyboardInterrupt


def cmd_report(args: argparse.Namespace) -> None:
    from .viz.report import write_report
    if args.out is not None and len(args.runs) > 1:
        raise SozoError("--out takes one run; each run's report goes into its own folder without it")
    for run in args.runs:
        print(write_report(run, args.out, embed=not args.link))


def cmd_gallery(args: argparse.Namespace) -> None:
    from .gallery import serve
    serve(args.root, host=args.host, port=args.port, device=args.device, open_browser=args.open,
          log=lambda m: print(m, file=sys.stderr))


def _check_suffix(path: Path, allowed: tuple[str, ...]) -> None:
    if path.suffix.lower() not in allowed:
        raise SozoError(f"cannot write '{path}': unsupported file type '{path.suffix or '(none)'}'",
                        hint="use one of " + ", ".join(allowed))
    if path.exists() and path.is_dir():
        raise SozoError(f"'{path}' is a folder", hint="give a file name such as grid.png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sozo", description="Train, sample and evaluate generative models.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from ._version import __version__
    p.add_argument("--version", action="version", version=f"sozo {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("models", help="list every model with a one-line description")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("train", help="train a model into a run folder",
                       description="Train a model. Options not listed here: --set key=value (see config.yaml of any run).")
    s.add_argument("model", nargs="?", help="model name (sozo models lists them); optional with --resume")
    s.add_argument("--data", help="what to train on (default: the model's bundled data, where it has one). Images: mnist-sample, "
                                  "digits, a folder of images, a .npy or MNIST IDX file. pix2pix/cyclegan: a folder "
                                  "(A|B pairs, A/ B/, or trainA/ trainB/). seq2seq: a parallel folder, a TSV or "
                                  "tatoeba-jpn. text-lstm/text-gpt: a .txt file or folder, or aesop. music-lstm/musegan: "
                                  "chorales, a folder of MIDI/MusicXML, or (musegan) a JSB .json")
    s.add_argument("--epochs", type=_positive("--epochs"))
    s.add_argument("--batch-size", type=_positive("--batch-size"))
    s.add_argument("--seed", type=int)
    s.add_argument("--out", help="run folder to create (default runs/MODEL-DATA)")
    s.add_argument("--resume", metavar="RUN", help="continue a run exactly where its last checkpoint stopped")
    s.add_argument("--config", metavar="FILE.yaml", help="a config file (sections model, data, train)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any option; repeatable")
    s.add_argument("--device", help="auto (default: cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--src", metavar="LANG", help="seq2seq: source language (file suffix, e.g. ja)")
    s.add_argument("--tgt", metavar="LANG", help="seq2seq: target language (e.g. en)")
    s.add_argument("--nproc", type=_positive("--nproc"), metavar="N",
                   help="train with N processes on this machine (starts torchrun; --batch-size is the global batch)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="write a grid of samples from a trained run")
    s.add_argument("run", help="a run folder")
    s.add_argument("--n", type=_positive("--n"), default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--label", help="class id or name (conditional models)")
    s.add_argument("--nrow", type=_positive("--nrow"), help="images per row")
    s.add_argument("--out", default="samples.png")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("evaluate", help="FD, KID, precision/recall and mode coverage beside the real-data floor")
    s.add_argument("runs", nargs="+", metavar="RUN", help="one or more run folders (compared side by side)")
    s.add_argument("--n", type=_positive("--n"), default=10000, help="generated samples (default 10000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--inception-weights", metavar="PATH",
                   help="Inception-v3 weights file for the standard FID (needs torch-fidelity); "
                        "default: a LeNet trained on the data ($SOZO_INCEPTION_WEIGHTS also works)")
    s.add_argument("--k", type=_positive("--k"), default=100,
                   help="autoencoders: importance samples per held-out image for the NLL (default 100)")
    s.add_argument("--split", help="seq2seq: the corpus split to translate and score (dev, test, train; default dev)")
    s.add_argument("--beam", type=_positive("--beam"), default=1, help="seq2seq: beam size (default 1: greedy)")
    s.add_argument("--length-penalty", type=float, default=0.6, help="seq2seq: beam length penalty alpha (default 0.6)")
    s.add_argument("--bleu-tokenize", default="none",
                   help="seq2seq: sacrebleu tokenizer (default none: the corpus's own tokens; 13a for raw text)")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("interpolate", help="a latent walk as an animated GIF or a PNG strip")
    s.add_argument("run", help="a run folder")
    s.add_argument("--steps", type=_positive("--steps"), default=10)
    s.add_argument("--paths", type=_positive("--paths"), default=8, help="how many walks side by side")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--label", help="class id or name (conditional models)")
    s.add_argument("--out", default="walk.gif", help=".gif (animated) or .png (a strip, a row per walk)")
    s.add_argument("--from", dest="from_", metavar="IMAGE",
                   help="autoencoders: walk from this held-out image (its index, or label=C for the first of class C)")
    s.add_argument("--to", metavar="IMAGE", help="autoencoders: ... to this held-out image")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_interpolate)

    s = sub.add_parser("reconstruct", help="autoencoders: real images with their reconstructions below them")
    s.add_argument("run", help="a run folder (ae, vae, conv-vae, beta-vae, cvae)")
    s.add_argument("--n", type=_positive("--n"), default=16, help="images (the first of the split)")
    s.add_argument("--split", choices=["heldout", "train"], default="heldout")
    s.add_argument("--nrow", type=_positive("--nrow"), help="images per row (default up to 16)")
    s.add_argument("--out", default="recon.png")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_reconstruct)

    s = sub.add_parser("latent-map", help="autoencoders: a 2-D scatter of codes coloured by label (PCA when larger)")
    s.add_argument("run", help="a run folder (ae, vae, conv-vae, beta-vae, cvae)")
    s.add_argument("--n", type=_positive("--n"), default=5000, help="images to encode (default 5000)")
    s.add_argument("--split", choices=["all", "heldout", "train"], default="all")
    s.add_argument("--grid", type=int, default=15,
                   help="2-D latents: decoded codes on a GRID x GRID lattice beside the scatter (0: none)")
    s.add_argument("--out", default="latent.png")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_latent_map)

    s = sub.add_parser("latent-arith",
                       help="autoencoders: add and subtract attribute vectors (labels or an attributes file)")
    s.add_argument("run", help="a run folder (ae, vae, conv-vae, beta-vae, cvae)")
    s.add_argument("--add", action="append", default=[], metavar="TERM",
                   help="label=C (a class) or an attribute name from --attributes; repeatable")
    s.add_argument("--subtract", action="append", default=[], metavar="TERM", help="as --add; repeatable")
    s.add_argument("--attributes", metavar="FILE",
                   help="binary attributes per image file (CelebA's list_attr_celeba.txt format, "
                        "or a CSV with a header)")
    s.add_argument("--images", metavar="DIR",
                   help="the folder of the files --attributes names (default: the run's data)")
    s.add_argument("--n", type=_positive("--n"), default=8, help="starting images, a row each")
    s.add_argument("--steps", type=_positive("--steps"), default=5, help="columns from s=0 to s=--strength")
    s.add_argument("--strength", type=float, default=1.5, help="the largest multiple of the vector (default 1.5)")
    s.add_argument("--seed", type=int, default=0, help="which images the vectors are averaged over")
    s.add_argument("--out", default="arith.png", help=".png (a row per image) or .gif")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_latent_arith)

    s = sub.add_parser("translate", help="seq2seq: translate sentences with a trained run",
                       description="Translate sentences (raw Japanese is segmented with fugashi). "
                                   "One output line per sentence; warnings go to standard error.")
    s.add_argument("run", help="a seq2seq run folder")
    s.add_argument("text", nargs="*", help="sentences, one an argument (quote each)")
    s.add_argument("--file", metavar="FILE", help="one sentence a line ('-': standard input); blank lines stay blank")
    s.add_argument("--beam", type=_positive("--beam"), default=1, help="beam size (default 1: greedy)")
    s.add_argument("--length-penalty", type=float, default=0.6, help="beam length penalty alpha (default 0.6)")
    s.add_argument("--max-len", type=_positive("--max-len"), help="most output tokens (default: from the source length)")
    s.add_argument("--attention-map", metavar="FILE.png", help="draw the attention weights (one file a sentence)")
    s.add_argument("--show-tokens", action="store_true", help="print the segmentation and unknown words to stderr")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_translate)

    s = sub.add_parser("write", help="language models: continue a prompt in the style of the training text",
                       description="Generate text with a text-lstm or text-gpt run. Repeat --temperature for "
                                   "one line per temperature (same seed). Warnings go to standard error.")
    s.add_argument("run", help="a text-lstm or text-gpt run folder")
    s.add_argument("--prompt", default="", help="text to continue (default: a new paragraph)")
    s.add_argument("--words", type=_positive("--words"), default=60,
                   help="tokens to generate: words, or characters for a level=char model (default 60)")
    s.add_argument("--temperature", type=float, action="append", metavar="T",
                   help="sampling temperature (default 1.0; 0: greedy); repeatable")
    s.add_argument("--top-k", type=int, default=0, help="sample only among the k most likely tokens (0: all)")
    s.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: the smallest set with this mass (1: all)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--interactive", "-i", action="store_true",
                   help="human-led: show the likeliest next words with their probabilities and let you pick each one")
    s.add_argument("--choices", type=_positive("--choices"), default=10,
                   help="words offered at each step with --interactive (default 10)")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_write)

    s = sub.add_parser("compose", help="music: compose a piece with a music-lstm or musegan run",
                       description="Compose a piece and write it by the suffix of --out: .mid (MIDI), .musicxml/.mxl "
                                   "(MuseScore and other notation programs), .wav (audio, rendered by sozo itself), "
                                   ".png (a piano roll).")
    s.add_argument("run", help="a music-lstm or musegan run folder")
    s.add_argument("--bars", type=_positive("--bars"), default=16, help="4/4 bars to compose (default 16)")
    s.add_argument("--temperature", type=float, metavar="T",
                   help="pitch sampling temperature (default: the run's, 0.5 for music-lstm; 0: always the likeliest)")
    s.add_argument("--duration-temperature", type=float, metavar="T",
                   help="music-lstm: duration sampling temperature (default: the run's, 0.5)")
    s.add_argument("--seed", type=int, default=0)
    for control, what in (("chords", "the chords (shared by all tracks, changes bar to bar)"),
                          ("style", "the style (shared by all tracks, fixed for the piece)"),
                          ("melody", "each track's line (per track, changes bar to bar)"),
                          ("groove", "each track's rhythmic feel (per track, fixed for the piece)")):
        s.add_argument(f"--{control}", type=int, metavar="SEED", help=f"musegan: a seed for {what}")
    s.add_argument("--out", default="piece.mid", help="piece.mid (default), .musicxml, .mxl, .wav or .png")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_compose)

    s = sub.add_parser("data", help="datasets: download a public corpus into the cache")
    data_sub = s.add_subparsers(dest="data_command", metavar="ACTION")
    d = data_sub.add_parser("download", help="download and check a named corpus (e.g. tatoeba-jpn)")
    d.add_argument("name", help="tatoeba-jpn (Japanese-English pairs from manythings.org) or aesop "
                                "(Aesop's Fables from Project Gutenberg, for text-lstm / text-gpt: --data aesop)")
    d.add_argument("--url", help="another address for the same file (a mirror)")
    d.add_argument("--sha256", help="the expected SHA-256 of the download (checked before anything is kept)")
    d.add_argument("--force", action="store_true", help="download again even when cached")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_data_download)
    s.set_defaults(func=cmd_data)

    s = sub.add_parser("apply", help="image-to-image: translate image files with a pix2pix or cyclegan run",
                       description="Translate images A -> B (--reverse: B -> A, cyclegan only). Each output has "
                                   "its source's size.")
    s.add_argument("run", help="a pix2pix or cyclegan run folder")
    s.add_argument("images", nargs="*", help="image files")
    s.add_argument("--folder", metavar="DIR", help="translate every image under DIR (then --out is a folder)")
    s.add_argument("--out", required=True, help="the output file (one image) or folder (several, or --folder)")
    s.add_argument("--reverse", action="store_true", help="cyclegan: translate B -> A")
    s.add_argument("--size", type=_positive("--size"),
                   help="shorter side the model sees (default: the run's training size); output keeps the source size")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_apply)

    s = sub.add_parser("stylize", help="neural style transfer: a photo painted in the style of another image",
                       description="Gatys et al. style transfer. With no images, a bundled demo (scikit-image photos). "
                                   "Features: VGG-19 from --weights or torchvision's cache file; otherwise random "
                                   "multi-scale features (said so). Beside --out goes OUT-stylize/ with the loss "
                                   "curves (losses.png, .csv, .json) and before-after.png.")
    s.add_argument("content", nargs="?", help="the content image (default: the bundled demo)")
    s.add_argument("style", nargs="?", help="the style image")
    s.add_argument("--out", default="stylized.png", help="the result, .png or .jpg (default stylized.png)")
    s.add_argument("--size", type=_positive("--size"), default=512, help="longer side of the result in px (default 512)")
    s.add_argument("--steps", type=_positive("--steps"), default=300, help="optimisation steps (default 300)")
    s.add_argument("--optimizer", default="lbfgs", help="lbfgs (default) or adam")
    s.add_argument("--lr", type=float, help="step size (default: 1 for lbfgs, 0.02 for adam)")
    s.add_argument("--content-weight", type=float, default=1.0)
    s.add_argument("--style-weight", type=float, help="default 3 (losses are relative: see the README)")
    s.add_argument("--tv-weight", type=float, help="total-variation weight (default 10)")
    s.add_argument("--content-layer", help="default relu4_2 (VGG-19) or scale2 (random features)")
    s.add_argument("--style-layers", metavar="L1,L2:W,...",
                   help="layers and optional weights (default relu1_1,…,relu5_1; random: colour,scale1,…,scale5)")
    s.add_argument("--init", default="content", help="start from the content image (default) or noise")
    s.add_argument("--pool", default="avg", help="VGG-19 pooling: avg (default, smoother) or max")
    s.add_argument("--preserve-colors", default="none", metavar="MODE",
                   help="none (default), luminance (transfer brightness only) or histogram (style recoloured first)")
    s.add_argument("--style-scale", type=float, default=1.0, help="style image size relative to --size (default 1)")
    s.add_argument("--features", default="auto", help="auto (default: VGG-19 if a weights file is found), vgg19, random")
    s.add_argument("--weights", metavar="PATH", help="VGG-19 weights in torchvision's format (vgg19-dcbb9e9d.pth)")
    s.add_argument("--progress-gif", metavar="FILE.gif", help="also write the optimisation as an animation")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=_positive("--threads"), help="CPU threads for torch")
    s.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    s.set_defaults(func=cmd_stylize)

    s = sub.add_parser("report", help="write RUN/report.html: samples by epoch, curves, measures, config",
                       description="Write a self-contained HTML page per run (pictures embedded; no network) "
                                   "and print its path.")
    s.add_argument("runs", nargs="+", metavar="RUN", help="one or more run folders")
    s.add_argument("--out", metavar="FILE.html", help="where to write (default RUN/report.html; one run only)")
    s.add_argument("--link", action="store_true",
                   help="link the pictures by relative paths instead of embedding them (a smaller file)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("gallery", help="a local web page over a folder of runs: cards, compare, sample now")
    s.add_argument("root", nargs="?", default="runs", help="the folder of runs (default runs)")
    s.add_argument("--port", type=int, default=8765, help="default 8765 (0: any free port)")
    s.add_argument("--host", default="127.0.0.1",
                   help="default 127.0.0.1 (this machine only); anything else is reachable from the network")
    s.add_argument("--device", default="cpu", help="where 'sample now' runs the models (default cpu)")
    s.add_argument("--open", action="store_true", help="open the page in the default browser")
    s.set_defaults(func=cmd_gallery)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed (sozo train --nproc relaunches it)
    if extra and getattr(args, "command", None) == "translate" and not any(e.startswith("-") for e in extra):
        args.text += extra  # sentences after options (argparse gives a '*' positional only the first run of words)
    elif extra:
        parser.error("unrecognized arguments: " + " ".join(extra))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except SozoError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
