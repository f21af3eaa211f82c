"""Datasets for weakly supervised object localization: synthetic, CUB, ImageNet, OpenImages."""

from satlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_crop_boxes, resize_boxes_wsoleval
