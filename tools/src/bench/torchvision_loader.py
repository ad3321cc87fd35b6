"""torchvision's data loading for `kd-bench --sections jpeg`, on the folder kd-bench generated.

    torchvision_loader.py --dir DIR --mode train|fkd|decode --workers W --batch B [--crops C]

train: `ImageFolder` + `DataLoader` (PIL, `num_workers=W`, persistent workers) with the ImageNet
training transform (`RandomResizedCrop(224)`, `RandomHorizontalFlip()`, `ToTensor()`,
`Normalize`); one epoch to warm up, the second timed; prints images/s.
fkd: FKD's multi-crop read: each image decoded once, C random-resized crops cut from it
(`F.resized_crop` + flip + `ToTensor` + `Normalize`, as FKD's `ImageFolder_FKD_MIX`); crops/s.
decode: `Image.open(path).convert("RGB")` of every file on one thread, after one warm-up pass;
images/s.
"""
import argparse
import json
import random
import time

import torch
import torchvision
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as F

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class MultiCrop(torchvision.datasets.ImageFolder):
    """One decode, `crops` random-resized crops of it, stacked."""

    def __init__(self, root, crops):
        super().__init__(root)
        self.crops = crops
        self.normalise = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def __getitem__(self, index):
        path, target = self.samples[index]
        image = self.loader(path)
        out = []
        for _ in range(self.crops):
            i, j, h, w = transforms.RandomResizedCrop.get_params(image, (0.08, 1.0), (3 / 4, 4 / 3))
            crop = F.resized_crop(image, i, j, h, w, [224, 224])
            if random.random() < 0.5:
                crop = F.hflip(crop)
            out.append(self.normalise(crop))
        return torch.stack(out), target


def timed_epochs(loader):
    for _ in loader:
        pass
    started = time.perf_counter()
    rows = 0
    for images, _ in loader:
        rows += images.shape[0] * (images.shape[1] if images.dim() == 5 else 1)
    return rows / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--mode", choices=["train", "fkd", "decode"], required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--crops", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.mode == "decode":
        paths = [p for p, _ in torchvision.datasets.ImageFolder(args.dir).samples]
        for path in paths:
            Image.open(path).convert("RGB")
        started = time.perf_counter()
        for path in paths:
            Image.open(path).convert("RGB")
        rate = len(paths) / (time.perf_counter() - started)
    else:
        if args.mode == "train":
            train = transforms.Compose(
                [
                    transforms.RandomResizedCrop(224),
                    transforms.RandomHorizontalFlip(),
                    transforms.ToTensor(),
                    transforms.Normalize(MEAN, STD),
                ]
            )
            dataset, batch = torchvision.datasets.ImageFolder(args.dir, transform=train), args.batch
        else:
            dataset, batch = MultiCrop(args.dir, args.crops), args.batch // args.crops
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=args.workers, persistent_workers=args.workers > 0
        )
        rate = timed_epochs(loader)
    print(json.dumps({"rate": rate}))


if __name__ == "__main__":
    main()
