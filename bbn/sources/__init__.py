"""Sources: every dataset into one layout, the iNaturalist 2019 one (COCO-like train/val/test JSON
plus image files): the embedded digits, iNaturalist 2017/18/19, CIFAR-10/100-LT and ImageFolder
trees, with verified, resumable downloads, safe extraction and the long-tail subsampling profile."""
