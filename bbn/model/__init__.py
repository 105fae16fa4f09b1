"""Model: the bilateral-branch network on a ResNet-32 or ResNet-50 trunk (``network``), Zhang's
anti-aliasing (``blurpool``), ImageNet/pretrained initialisation (``pretrained``), the checkpoint
format (``checkpoint``), and inference: device, test-time branch weight, predictions (``inference``).
Importing it never imports the training loop."""
