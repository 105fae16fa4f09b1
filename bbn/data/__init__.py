"""Data: from the iNaturalist layout to training batches. Reading the layout (``inat``), finding
unreadable images (``imagecheck``), class statistics and shot groups (``stats``), the train/val split
(``split``), decoding (``decode``), the resized image cache (``prepare``), and images to tensors with
the uniform, reversed and class-balanced samplers (``loading``, ``samplers``)."""
