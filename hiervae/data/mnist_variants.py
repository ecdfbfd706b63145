"""Fashion-MNIST (Zalando) and KMNIST (Kuzushiji): MNIST's format, their own files.

Both are checked against the md5 of their published files (the values torchvision pins).
"""

from __future__ import annotations

from hiervae.data.idx import IdxDataset, published

FASHION_MNIST = IdxDataset("fashion_mnist", published(
    ("https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
     "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
    {"train_images": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
     "train_labels": ("25c81989df183df01b3e8a0aad5dffbe", 29515),
     "test_images": ("bef4ecab320f06d8554ea6380940ec79", 4422102),
     "test_labels": ("bb300cfdad3c16e7a12a480ee83cd310", 5148)}, algorithm="md5"),
    what="the four Fashion-MNIST .gz files")
FASHION_MNIST.register("Fashion-MNIST 28x28 grey-scale clothing (60000 train, 10000 test), intensities in [0, 1]")

KMNIST = IdxDataset("kmnist", published(
    ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    {"train_images": ("bdb82020997e1d708af4cf47b453dcf7", 0),
     "train_labels": ("e144d726b3acfaa3e44228e80efcd344", 0),
     "test_images": ("5c965bf0a639b31b8f53240b1b52f4d7", 0),
     "test_labels": ("7320c461ea6c1c855c0b718fb2a4b134", 0)}, algorithm="md5"),
    what="the four KMNIST .gz files")
KMNIST.register("KMNIST 28x28 grey-scale Kuzushiji characters (60000 train, 10000 test), intensities in [0, 1]")
