"""PyTorch eager training throughput of kd-bench's models, for kd-bench's side-by-side table.

kd-bench runs this script (embedded in its binary) with the Python it was given and reads one JSON
line from stdout:

    python3 pytorch_train.py --arch resnet20 --batch 64 --threads 2 --steps 10 --warmup 3 [--teacher resnet56] [--device cuda:0]
    {"arch": "resnet20", "batch": 64, "threads": 2, "teacher": null, "images_per_s": ..., "torch": "..."}

On a CUDA device (`--device cuda:N`, what kd-bench passes when it times kdkit on CUDA) the model
and the batch live on the GPU, cuDNN picks its convolution algorithms by timing them
(`cudnn.benchmark`, as kdkit autotunes its kernels) during the warm-up steps, and the timer reads
the clock after `torch.cuda.synchronize()`, so that queued kernels are counted.

With `--size 224` the model is torchvision's (`resnet18`, `resnet50`, `mobilenet_v2`, 1000
classes) on random 3x224x224 inputs, trained the same way (`--mode train`) or run in eval mode
without gradients (`--mode infer`: what packing FKD labels costs).

The CIFAR model is kdkit's CIFAR ResNet-(6n+2) (He et al., CVPR 2016, section 4.2: 16/32/64 channels,
option-A shortcuts, bias-free 3x3 convolutions, batch norm), trained as kd-bench trains it:
cross-entropy, SGD with Nesterov momentum 0.9, weight decay 5e-4, on random 3x32x32 inputs held
in memory (no data loading is timed, which favours PyTorch).
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.pad = c_out - c_in

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.pad:
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


class CifarResNet(nn.Module):
    def __init__(self, blocks, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, c_in = [], 16
        for c_out, stride in zip([16, 32, 64], [1, 2, 2]):
            for i in range(blocks):
                layers.append(BasicBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        return self.fc(self.layers(x).mean(dim=(2, 3)))


BLOCKS = {"resnet8": 1, "resnet14": 2, "resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}
IMAGENET = {"resnet18", "resnet34", "resnet50", "mobilenet-v2", "mobilenet-v3-large", "efficientnet-b0"}


def imagenet_model(arch):
    import torchvision

    return getattr(torchvision.models, arch.replace("-", "_"))(num_classes=1000)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", required=True, choices=sorted(set(BLOCKS) | IMAGENET))
    parser.add_argument("--size", type=int, default=32, help="224: torchvision's ImageNet models")
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--teacher", choices=sorted(BLOCKS), help="online KD from this (random) teacher")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: this torch ({torch.__version__}) sees no CUDA device")
        torch.backends.cudnn.benchmark = True
    if args.arch in IMAGENET:
        model, classes = imagenet_model(args.arch), 1000
    else:
        model, classes = CifarResNet(BLOCKS[args.arch]), 10
    model = (model.train() if args.mode == "train" else model.eval()).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    images = torch.randn(args.batch, 3, args.size, args.size).to(device)
    labels = torch.randint(0, classes, (args.batch,)).to(device)
    teacher = CifarResNet(BLOCKS[args.teacher]).eval().to(device) if args.teacher else None

    def wait():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step():
        if args.mode == "infer":
            with torch.no_grad():
                model(images)
            return
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        if teacher is not None:
            # Hinton et al. 2015: 0.9 * T^2 KL(teacher_T || student_T) + 0.1 * CE, T = 4
            with torch.no_grad():
                soft = F.softmax(teacher(images) / 4.0, dim=1)
            kl = F.kl_div(F.log_softmax(logits / 4.0, dim=1), soft, reduction="batchmean")
            loss = 0.9 * 16.0 * kl + 0.1 * loss
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    wait()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    wait()
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "arch": args.arch,
        "batch": args.batch,
        "threads": args.threads,
        "teacher": args.teacher,
        "size": args.size,
        "mode": args.mode,
        "device": str(device),
        "images_per_s": args.steps * args.batch / elapsed,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
