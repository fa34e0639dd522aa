#!/usr/bin/env python3
"""The CL-MAE iteration written as a PyTorch program: the baselines that
clmae-bench-engine is compared with (same model config, batch, synthetic data,
thread count and step structure: phase A updates the MAE with the masker
frozen, phase B updates the masker with the MAE frozen).

    pytorch_baseline.py --preset tiny --batch 64 --steps 20 --threads 2 [--mode both] [--compile]

Eager (default): the loop as a plain PyTorch script writes it, reading each
loss with .item() and stepping a per-parameter AdamW.
--compile: the strongest PyTorch setup for the same step: both phases' forward
and loss under torch.compile (TorchInductor), fused AdamW, and no host read of
the losses until the end. Compilation happens in the warm-up iterations and is
reported apart (compile_seconds); the timed iterations come after it.

Prints one human line and one JSON line per mode, like clmae-bench-engine.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    # img, chans, patch, D, depth, heads, Ddec, dec depth, dec heads, masker depth, masker heads
    "tiny": (28, 1, 4, 192, 6, 3, 128, 2, 4, 2, 4),
    "small": (32, 3, 4, 384, 8, 6, 256, 4, 8, 3, 4),
    "mae_vit_base_patch16": (224, 3, 16, 768, 12, 12, 512, 8, 16, 5, 4),
}


def sincos_2d(dim, grid):
    def one_d(d, pos):
        omega = torch.arange(d // 2, dtype=torch.float64) / (d / 2.0)
        omega = 1.0 / 10000 ** omega
        out = torch.outer(pos.reshape(-1).double(), omega)
        return torch.cat([out.sin(), out.cos()], 1)
    rows = torch.arange(grid).unsqueeze(1).expand(grid, grid)
    cols = torch.arange(grid).unsqueeze(0).expand(grid, grid)
    emb = torch.cat([one_d(dim // 2, cols), one_d(dim // 2, rows)], 1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb]).float().unsqueeze(0)


class Block(nn.Module):
    def __init__(self, dim, heads, eps):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(a.transpose(1, 2).reshape(n, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Mae(nn.Module):
    def __init__(self, img, chans, patch, d, depth, heads, dd, ddepth, dheads):
        super().__init__()
        self.patch, self.chans, self.grid = patch, chans, img // patch
        self.proj = nn.Conv2d(chans, d, patch, patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.register_buffer("pos_embed", sincos_2d(d, self.grid))
        self.blocks = nn.ModuleList([Block(d, heads, 1e-6) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dd) * 0.02)
        self.register_buffer("decoder_pos_embed", sincos_2d(dd, self.grid))
        self.decoder_blocks = nn.ModuleList([Block(dd, dheads, 1e-6) for _ in range(ddepth)])
        self.decoder_norm = nn.LayerNorm(dd, eps=1e-6)
        self.decoder_pred = nn.Linear(dd, patch * patch * chans)

    def embed(self, imgs):
        return self.proj(imgs).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]

    def encode(self, x, ids_shuffle, keep):
        n, l, d = x.shape
        ids_restore = torch.argsort(ids_shuffle, 1)
        kept = torch.gather(x, 1, ids_shuffle[:, :keep].unsqueeze(-1).expand(-1, -1, d))
        mask = torch.ones(n, l, device=x.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        h = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1), kept], 1)
        for b in self.blocks:
            h = b(h)
        return self.norm(h), mask, ids_restore

    def decode(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        n, l = ids_restore.shape
        tokens = x[:, 1:]
        if l > tokens.shape[1]:
            tokens = torch.cat([tokens, self.mask_token.expand(n, l - tokens.shape[1], -1)], 1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], tokens], 1) + self.decoder_pos_embed
        for b in self.decoder_blocks:
            x = b(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def per_patch_error(self, imgs, pred):
        n, c, hh, ww = imgs.shape
        p, g = self.patch, self.grid
        target = imgs.reshape(n, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(n, g * g, p * p * c)
        return ((pred - target) ** 2).mean(-1)


class Masker(nn.Module):
    def __init__(self, d, l, depth, heads):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, heads, 1e-5) for _ in range(depth)])
        self.head_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, l)

    def forward(self, x):
        h = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)
        for b in self.blocks:
            h = b(h)
        return torch.sigmoid(self.head(self.head_norm(h[:, 0])))


def masker_loss(e, m, lam, k=0.25):
    rec = (e * (1 - m)).sum() / (1 - m).sum()
    alpha, beta = -1 / (2 * 0.12 ** 2), 1 / (0.12 * math.sqrt(2 * math.pi))
    gauss = (torch.exp(alpha * (m - 0.5) ** 2) / beta).mean()
    p = m.mean(1)
    kl = 0.1 * (p * torch.log(p / k) + (1 - p) * torch.log((1 - p) / (1 - k))).sum()
    i, j = torch.triu_indices(m.shape[0], m.shape[0], 1)
    div = 2.0 * torch.exp(-0.1 * (m[i] - m[j]).norm(dim=1)).mean()
    return lam * rec + gauss + kl + div


def adamw(module, fused):
    decay = [p for n, p in module.named_parameters() if p.ndim > 1 and not n.endswith(".bias")]
    rest = [p for n, p in module.named_parameters() if not (p.ndim > 1 and not n.endswith(".bias"))]
    groups = [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}]
    if fused:
        return torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), fused=True)
    return torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), foreach=False)


def run(args, plain):
    img, chans, patch, d, depth, heads, dd, ddepth, dheads, mdepth, mheads = PRESETS[args.preset]
    dev = torch.device(args.device)
    torch.manual_seed(0)
    mae = Mae(img, chans, patch, d, depth, heads, dd, ddepth, dheads).to(dev)
    l = (img // patch) ** 2
    keep = int(l * 0.25)
    masker = None if plain else Masker(d, l, mdepth, mheads).to(dev)
    opt_a = adamw(mae, args.compile)
    opt_b = None if plain else adamw(masker, args.compile)
    pool = [torch.randn(args.batch, chans, img, img) for _ in range(4)]
    if dev.type == "cuda":
        pool = [t.pin_memory() for t in pool]
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    ac = lambda: torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bf16)

    def phase_a_loss(imgs):  # the MAE, masker frozen
        with ac():
            x = mae.embed(imgs)
            if plain:
                ids = torch.argsort(torch.rand(x.shape[0], l, device=imgs.device), 1)
            else:
                with torch.no_grad():
                    ids = torch.argsort(masker(x.detach()), 1, descending=True)
            latent, mask, restore = mae.encode(x, ids, keep)
            pred = mae.decode(latent, restore)
            e = mae.per_patch_error(imgs, pred.float())
            return (e * mask).sum() / mask.sum()

    def phase_b_loss(imgs):  # the masker, MAE frozen (no weight gradients)
        with ac():
            x = mae.embed(imgs)
            m = masker(x)
            ids = torch.argsort(m.detach(), 1, descending=True)
            latent, _, restore = mae.encode(x * m.unsqueeze(-1).to(x.dtype), ids, l)
            e = mae.per_patch_error(imgs, mae.decode(latent, restore).float())
            return masker_loss(e, m.float(), 0.5)

    if args.compile:
        phase_a_loss = torch.compile(phase_a_loss)
        phase_b_loss = torch.compile(phase_b_loss)
    totals = dict(data=0.0, a=0.0, b=0.0, total=0.0)
    losses = []
    warm_start = time.perf_counter()
    compile_seconds = 0.0
    for it in range(args.warmup + args.steps):
        if it == args.warmup:
            sync()
            compile_seconds = time.perf_counter() - warm_start
        t0 = time.perf_counter()
        imgs = pool[it % 4].to(dev, non_blocking=True)
        if not args.compile:
            sync()
        t1 = time.perf_counter()
        loss = phase_a_loss(imgs)
        if args.compile:
            losses.append(loss.detach())
        else:
            loss.item()
        loss.backward()
        opt_a.step()
        opt_a.zero_grad(set_to_none=True)
        if not args.compile:
            sync()
        t2 = time.perf_counter()
        if not plain:
            for p in mae.parameters():
                p.requires_grad_(False)
            lb = phase_b_loss(imgs)
            if args.compile:
                losses.append(lb.detach())
            else:
                lb.item()
            lb.backward()
            opt_b.step()
            opt_b.zero_grad(set_to_none=True)
            for p in mae.parameters():
                p.requires_grad_(True)
            if not args.compile:
                sync()
        t3 = time.perf_counter()
        if it >= args.warmup:
            totals["data"] += t1 - t0
            totals["a"] += t2 - t1
            totals["b"] += t3 - t2
            totals["total"] += t3 - t0
    if args.compile:
        # One read of every loss at the end: the only wait for the device
        # (so the total covers all queued work).
        t = time.perf_counter()
        finite = bool(torch.isfinite(torch.stack(losses)).all().item())
        totals["total"] += time.perf_counter() - t
        if not finite:
            raise SystemExit("pytorch_baseline: a loss was not finite")
    graphs = ""
    if args.compile:
        from torch._dynamo.utils import counters
        graphs = (f" | {counters['stats']['unique_graphs']} graphs, "
                  f"{sum(counters['graph_break'].values())} graph breaks, "
                  f"{counters['stats']['calls_captured']} ops captured")
    ips = args.batch * args.steps / totals["total"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev)
    name = "plain_mae" if plain else "clmae"
    variant = "compiled" if args.compile else "eager"
    if args.compile:
        split = "phases queued without waiting (no per-phase split)"
    else:
        split = (f"per step: data {1e3 * totals['data'] / args.steps:.1f} ms, "
                 f"phase A+opt {1e3 * totals['a'] / args.steps:.1f} ms, phase B+opt {1e3 * totals['b'] / args.steps:.1f} ms")
    print(f"{name:9s} {ips:8.1f} img/s | {variant} | peak {peak / 2**20:.1f} MiB | {split}"
          + (f" | compile + warm-up {compile_seconds:.1f} s" if args.compile else "") + graphs)
    print(json.dumps({"mode": name, "variant": variant, "preset": args.preset, "batch": args.batch,
                      "device": args.device, "images_per_second": ips, "peak_bytes": peak,
                      "compile_seconds": compile_seconds if args.compile else 0.0}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--mode", default="both", choices=["clmae", "plain", "both"])
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile both phases, fused AdamW, losses read once at the end")
    args = ap.parse_args()
    if args.compile and args.warmup < 3:
        ap.error("--compile needs --warmup >= 3 (compilation happens in the warm-up)")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    variant = "torch.compile" if args.compile else "eager"
    print(f"PyTorch {torch.__version__} {variant} baseline: preset {args.preset}, batch {args.batch}, "
          f"{args.steps} steps, device {args.device}, {torch.get_num_threads()} threads")
    if args.mode != "plain":
        run(args, False)
    if args.mode != "clmae":
        run(args, True)


if __name__ == "__main__":
    main()
