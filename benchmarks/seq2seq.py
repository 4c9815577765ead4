"""Seq2seq training speed: sozo's batched trainer vs the PyTorch tutorial's one-pair-per-step loop.

The tutorial ("NLP From Scratch: Translation with a Sequence to Sequence Network and Attention")
trains an EncoderRNN (GRU) and an AttnDecoderRNN one sentence pair at a time: the encoder is called
once per source token, the decoder once per target token, SGD (lr 0.01), NLLLoss, and a coin per
pair chooses teacher forcing with probability 0.5 (free running stops at the first EOS guessed).
It is re-typed below and run in the same process, on the same sentence pairs and vocabularies,
with the same hidden size, as sozo's trainer with ``preset=article`` (GRU, one-way encoder,
attention, SGD lr 0.01, 50% teacher forcing) in batches of 64. A third case times sozo's default
model (bidirectional encoder, Adam, teacher forcing 1.0). Pairs per second count training pairs.

    python -m benchmarks.seq2seq [--data ../shared/data/small_parallel_enja] [--threads 1]

Prints one JSON line per case and a final JSON line with the ratios. Skips (prints a note) when the
data folder is absent.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sozo.api import prepare_data
from sozo.config import TrainConfig, build_run_config, merge_overrides, parse_set
from sozo.data.text import BOS, EOS
from sozo.registry import get_model
from sozo.runs import Run
from sozo.training import Trainer

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "small_parallel_enja"


# --- the tutorial, re-typed (one pair per step) ------------------------------------------------

class EncoderRNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size)

    def forward(self, input, hidden):
        embedded = self.embedding(input).view(1, 1, -1)
        output, hidden = self.gru(embedded, hidden)
        return output, hidden

    def init_hidden(self):
        return torch.zeros(1, 1, self.hidden_size)


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size: int, output_size: int, dropout_p: float = 0.1, max_length: int = 10):
        super().__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attn = nn.Linear(hidden_size * 2, max_length)
        self.attn_combine = nn.Linear(hidden_size * 2, hidden_size)
        self.dropout = nn.Dropout(dropout_p)
        self.gru = nn.GRU(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, output_size)

    def forward(self, input, hidden, encoder_outputs):
        embedded = self.dropout(self.embedding(input).view(1, 1, -1))
        attn_weights = F.softmax(self.attn(torch.cat((embedded[0], hidden[0]), 1)), dim=1)
        attn_applied = torch.bmm(attn_weights.unsqueeze(0), encoder_outputs.unsqueeze(0))
        output = torch.cat((embedded[0], attn_applied[0]), 1)
        output = F.relu(self.attn_combine(output).unsqueeze(0))
        output, hidden = self.gru(output, hidden)
        output = F.log_softmax(self.out(output[0]), dim=1)
        return output, hidden, attn_weights


def tutorial_train(input_tensor, target_tensor, encoder, decoder, encoder_optimizer, decoder_optimizer, criterion,
                   max_length, teacher_forcing_ratio=0.5):
    encoder_hidden = encoder.init_hidden()
    encoder_optimizer.zero_grad()
    decoder_optimizer.zero_grad()
    input_length, target_length = input_tensor.size(0), target_tensor.size(0)
    encoder_outputs = torch.zeros(max_length, encoder.hidden_size)
    loss = 0
    for ei in range(input_length):
        encoder_output, encoder_hidden = encoder(input_tensor[ei], encoder_hidden)
        encoder_outputs[ei] = encoder_output[0, 0]
    decoder_input = torch.tensor([[BOS]])
    decoder_hidden = encoder_hidden
    if random.random() < teacher_forcing_ratio:
        for di in range(target_length):
            decoder_output, decoder_hidden, _ = decoder(decoder_input, decoder_hidden, encoder_outputs)
            loss += criterion(decoder_output, target_tensor[di])
            decoder_input = target_tensor[di]
    else:
        for di in range(target_length):
            decoder_output, decoder_hidden, _ = decoder(decoder_input, decoder_hidden, encoder_outputs)
            topv, topi = decoder_output.topk(1)
            decoder_input = topi.squeeze().detach()
            loss += criterion(decoder_output, target_tensor[di])
            if decoder_input.item() == EOS:
                break
    loss.backward()
    encoder_optimizer.step()
    decoder_optimizer.step()
    return loss.item() / target_length


def tutorial_loop(train: dict[str, torch.Tensor], src_vocab: int, tgt_vocab: int, hidden: int, pairs: int,
                  seed: int) -> dict:
    """The tutorial's trainIters: random pairs, one SGD step each, loss read every step."""
    torch.manual_seed(seed)
    random.seed(seed)
    max_length = int(train["src_len"].max()) + 1  # the tutorial's MAX_LENGTH covers sentence + EOS
    encoder = EncoderRNN(src_vocab, hidden)
    decoder = AttnDecoderRNN(hidden, tgt_vocab, 0.1, max_length)
    enc_opt = torch.optim.SGD(encoder.parameters(), lr=0.01)
    dec_opt = torch.optim.SGD(decoder.parameters(), lr=0.01)
    criterion = nn.NLLLoss()
    n = train["src"].size(0)
    # tensorFromSentence: ids + EOS, shape (L, 1)
    examples = []
    for i in random.sample(range(n), pairs):
        s = train["src"][i, :int(train["src_len"][i])].tolist() + [EOS]
        t = train["tgt"][i, 1:int(train["tgt_len"][i])]  # y + EOS (drop <s>)
        examples.append((torch.tensor(s).view(-1, 1), t.clone().view(-1, 1)))
    t0 = time.perf_counter()
    total = 0.0
    for inp, tgt in examples:
        total += tutorial_train(inp, tgt, encoder, decoder, enc_opt, dec_opt, criterion, max_length)
    dt = time.perf_counter() - t0
    return {"case": "tutorial-loop", "pairs": pairs, "seconds": round(dt, 3), "pairs_per_s": round(pairs / dt, 1),
            "mean_loss": round(total / pairs, 3)}


# --- sozo -------------------------------------------------------------------------------------

def sozo_case(name: str, sets: list[str], data_path: str, pairs: int, batch_size: int, seed: int, threads: int,
              precision: str = "fp32") -> dict:
    cls = get_model("seq2seq")
    rc = build_run_config("seq2seq", cls,
                          merge_overrides({}, parse_set([f"source={data_path}", "bleu_every=0"] + sets), cls))
    data, rc, train, _ = prepare_data(rc, log=lambda m: None)
    n = train["src"].size(0)
    steps = -(-pairs // batch_size)
    epochs = -(-steps // (n // batch_size))
    cfg = TrainConfig(epochs=epochs, max_steps=steps, batch_size=batch_size, seed=seed, device="cpu", progress=False,
                      sample_every=0, log_every=max(1, steps // 4), threads=threads, precision=precision)
    torch.manual_seed(seed)
    model = cls(rc.model)
    model.use_data(data)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, train, cfg, Run(tmp), {"family": "seq2seq"}, log=lambda m: None)
        t0 = time.perf_counter()
        trainer.fit()  # includes the one-batch check, checkpoints and model/ writes
        dt = time.perf_counter() - t0
        losses = [r["loss"] for r in Run(tmp).metrics() if r.get("kind") == "step"]
    seen = trainer.pos.step * batch_size
    return {"case": name, "pairs": seen, "steps": trainer.pos.step, "seconds": round(dt, 3),
            "pairs_per_s": round(seen / dt, 1), "last_loss": losses[-1] if losses else None,
            "settings": sets, "precision": precision}


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="a parallel folder (default ../shared/data/small_parallel_enja)")
    p.add_argument("--src", default="ja")
    p.add_argument("--tgt", default="en")
    p.add_argument("--tutorial-pairs", type=int, default=600, help="pairs the one-at-a-time loop trains on")
    p.add_argument("--sozo-pairs", type=int, default=12800, help="pairs each sozo case trains on")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for every case (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="alternate the cases this many times (best kept)")
    p.add_argument("--bf16", action="store_true", help="also time sozo's article case with bf16 autocast")
    args = p.parse_args(argv)
    if not Path(args.data).is_dir():
        print(json.dumps({"bench": "seq2seq-train", "skipped": f"no data folder {args.data}"}))
        return None
    torch.set_num_threads(args.threads)
    base = [f"src={args.src}", f"tgt={args.tgt}", f"hidden={args.hidden}", f"embed_dim={args.hidden}"]
    cls = get_model("seq2seq")
    rc = build_run_config("seq2seq", cls, merge_overrides({}, parse_set([f"source={args.data}"] + base), cls))
    data, rc, train, _ = prepare_data(rc, log=lambda m: None)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(),
           "hidden": args.hidden, "src_vocab": len(data.src_vocab), "tgt_vocab": len(data.tgt_vocab),
           "train_pairs": train["src"].size(0)}
    cases = {
        "tutorial-loop": lambda: tutorial_loop(train, len(data.src_vocab), len(data.tgt_vocab), args.hidden,
                                               args.tutorial_pairs, args.seed),
        "sozo-article": lambda: sozo_case("sozo-article", base + ["preset=article"], args.data, args.sozo_pairs,
                                          args.batch_size, args.seed, args.threads),
        "sozo-default": lambda: sozo_case("sozo-default", base, args.data, args.sozo_pairs, args.batch_size,
                                          args.seed, args.threads),
    }
    if args.bf16:
        cases["sozo-article-bf16"] = lambda: sozo_case("sozo-article-bf16", base + ["preset=article"], args.data,
                                                       args.sozo_pairs, args.batch_size, args.seed, args.threads,
                                                       "bf16")
    best: dict[str, dict] = {}
    for r in range(args.repeats):
        for name, case in cases.items():
            res = case()
            res.update(bench="seq2seq-train", batch_size=args.batch_size, repeat=r, **env)
            print(json.dumps(res, ensure_ascii=False), flush=True)
            if name not in best or res["pairs_per_s"] > best[name]["pairs_per_s"]:
                best[name] = res
    ref = best["tutorial-loop"]["pairs_per_s"]
    summary = {"bench": "seq2seq-train", "summary": True, **env, "batch_size": args.batch_size,
               **{f"{k}_pairs_per_s": v["pairs_per_s"] for k, v in best.items()},
               **{f"ratio_{k}": round(v["pairs_per_s"] / ref, 1) for k, v in best.items() if k != "tutorial-loop"}}
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
