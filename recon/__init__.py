"""The core of faceset: morphable models, camera, lighting, renderer, R-Net,
preprocessing, losses and file formats. Never imports fitting, aggregation or faceset."""
