"""Which exposure does a discriminator prefer, photo by photo? (diagnostic behind ``--gan-loss``)

Builds an unpaired toy set from a folder of well-exposed photos: every other photo 1.5 EV too dark,
the rest 1.5 EV too bright (the right answer is +1.5 EV for the first and -1.5 EV for the second),
the untouched photos are the targets. Trains only the discriminator (policy frozen, learning rate 0)
against the policy's outputs, then scores every input re-exposed by -2.5..+2.5 EV and reports the
best-scoring exposure for the dark and the bright half.

    python scripts/collect_photos.py --out /work/photos
    python scripts/critic_shape.py /work/photos --loss logistic --steps 200 --lr-disc 2e-4 --disc-batch 32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from deepexposure.agents.deepexposure import DeepExposureAgent, DeepExposureConfig
from deepexposure.data import ThumbnailDataset
from deepexposure.filters import global_exposure
from deepexposure.train import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", type=Path)
    ap.add_argument("--loss", default="logistic", choices=["wgan-gp", "logistic"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr-disc", type=float, default=2e-4)
    ap.add_argument("--disc-batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run-dir", type=Path, default=Path("/tmp/critic_shape"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    targets = ThumbnailDataset(sorted(a.photos.iterdir()), 64, min_images=2, name=str(a.photos)).images
    answer = torch.tensor([1.5 if i % 2 == 0 else -1.5 for i in range(len(targets))])
    inputs = global_exposure(targets, -answer[:, None])
    tcfg = TrainConfig(steps=0, p_steps=a.steps, lr_disc=a.lr_disc, lr_disc_final=1.0, disc_batch=a.disc_batch,
                       gan_loss=a.loss, seed=a.seed, sample_every=0, ckpt_every=10**9)
    torch.manual_seed(a.seed)
    agent = DeepExposureAgent(DeepExposureConfig(lr_policy=0.0), tcfg.batch_size)
    tr = Trainer(agent, tcfg, inputs, targets, a.run_dir)
    agent.prepare(inputs)
    evs = torch.linspace(-2.5, 2.5, 21)
    for _ in range(4):
        for _ in range(a.steps // 4):
            tr.train_one()
        with torch.no_grad():
            scores = torch.stack(
                [tr.disc(global_exposure(inputs, torch.full((len(inputs), 1), float(e)))).squeeze(1) for e in evs], 1
            )
        best = evs[scores.argmax(1)].numpy()
        ans = answer.numpy()
        print(f"{a.loss} step {tr.step}: preferred EV, dark inputs (answer +1.5) {best[ans > 0].mean():+.2f}, "
              f"bright inputs (answer -1.5) {best[ans < 0].mean():+.2f}", flush=True)


if __name__ == "__main__":
    main()
